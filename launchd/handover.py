"""Hand a profile between the service manager and the console, one owner at every moment.

Take over: stop the manager's job (so it will not restart it), wait until its process is really
gone and the profile lock is free; the caller then starts its gateway. Hand back: the caller has
stopped its gateway; get the job running and wait until the manager's process holds the lock and
its Feishu connection is up. Messages sent meanwhile are not lost: Feishu redelivers what was not
acknowledged to whichever gateway connects next.

The protocol is written once, here; launchd and systemd differ only in the primitives of their
ServiceManager (service.py). Every step is reported as one human line; a failure raises
HandoverError whose text says what state the profile is in and how to recover.
"""

from __future__ import annotations

from gateway_core.config import Home
from gateway_core.ownership import read_owner
from gateway_core.states import FeishuState

from .agents import POLL_INTERVAL, pid_alive, poll
from .service import JobView, Report, ServiceError, ServiceManager, Starter, choose_manager

HANDBACK_TIMEOUT = 20.0


class HandoverError(Exception):
    """The hand-over stopped; one line: the profile's state now and how to recover."""


def take_over(
    home: Home,
    profile: str,
    report: Report,
    timeout: float | None = None,
    manager: ServiceManager | None = None,
) -> None:
    """Stop the manager's job and wait until its process is gone and the profile is free."""
    manager = manager or choose_manager()
    label = manager.label(profile)
    lock = home.lock_file(profile)
    name = manager.name
    try:
        job = manager.job(profile)
    except ServiceError as error:
        raise HandoverError(f"cannot ask {name} about {label}: {error}; nothing was changed") from None
    if job is None:
        owner = read_owner(lock)
        if owner is not None:
            raise HandoverError(
                f"profile '{profile}' is served by {owner.describe()}, not by {name}'s {label}; "
                "stop that gateway first (gatewatch never kills it)"
            )
        report(f"{label} is not {'loaded' if name == 'launchd' else 'known to systemd'}; profile '{profile}' is free")
        return

    old_pid = job.pid
    timeout = manager.stop_timeout(job) if timeout is None else timeout
    try:
        manager.stop(profile, job, report)
    except ServiceError as error:
        raise HandoverError(f"could not stop {label}: {error}; nothing was changed, {name} still runs it") from None
    if old_pid:
        report(f"waiting for PID {old_pid} to exit (up to {timeout:.0f}s)…")
    if not poll(lambda: manager.stopped(profile, old_pid), timeout):
        if pid_alive(old_pid):
            raise HandoverError(
                f"{label} is {manager.stopped_word} ({name} will not restart it) but PID {old_pid} is still running "
                f"after {timeout:.0f}s and may still hold profile '{profile}'; wait for it to drain, or stop it with "
                f"'kill {old_pid}', then take over again (or hand back with: gatewatch {name} handback --profile {profile})"
            )
        raise HandoverError(
            f"{name} still lists {label} as running {timeout:.0f}s after stopping it; "
            f"check with 'gatewatch {name} status --profile {profile}' and take over again"
        )
    if old_pid:
        report(f"PID {old_pid} has exited; {label} is {manager.stopped_word}")
    if not poll(lambda: read_owner(lock) is None, max(1.0, timeout / 4)):
        owner = read_owner(lock)
        raise HandoverError(
            f"{label} is {manager.stopped_word}, but profile '{profile}' is still served by "
            f"{owner.describe() if owner else 'another process'}; stop that gateway first"
        )
    report(f"lock free: profile '{profile}' can be taken")


def hand_back(
    home: Home,
    profile: str,
    report: Report,
    timeout: float | None = None,
    manager: ServiceManager | None = None,
) -> int:
    """Start the manager's job and wait until it serves the profile; returns its PID.

    Precondition: the caller has stopped its own gateway for the profile (drained, lock released).
    """
    manager = manager or choose_manager()
    timeout = HANDBACK_TIMEOUT if timeout is None else timeout
    label = manager.label(profile)
    lock = home.lock_file(profile)
    path = manager.definition(profile)
    owner = read_owner(lock)
    if owner is not None and owner.launchd_label != label:
        raise HandoverError(
            f"profile '{profile}' is still served by {owner.describe()}; stop that gateway first, then hand back"
        )
    if not path.exists():
        raise HandoverError(
            f"no {manager.kind} for profile '{profile}' at {path}; install it with: "
            f"gatewatch {manager.name} install --profile {profile}"
        )
    try:
        manager.prepare_start(profile, report)
    except ServiceError as error:
        raise HandoverError(f"cannot prepare {label}: {error}; nothing was changed") from None
    progress = _HandBack(home, profile, manager, manager.starter(profile, report), report)
    try:
        done = poll(progress.step, timeout, POLL_INTERVAL * 2)
    except ServiceError as error:
        raise HandoverError(
            f"{manager.name} did not start {label}: {error}; no gateway serves profile '{profile}' now — "
            f"retry with: gatewatch {manager.name} handback --profile {profile}"
        ) from None
    if not done:
        raise HandoverError(progress.failure(timeout))
    report(f"handed back: {manager.name}'s gateway PID {progress.pid} serves profile '{profile}', Feishu connected")
    assert progress.pid is not None
    return progress.pid


class _HandBack:
    """One hand-back, advanced by `step()` until the manager's gateway serves.

    Each step re-reads the manager's view, so every turn of events is followed rather than assumed:
    not running -> the backend's starter (which knows what its manager needs: launchd a bootstrap
    or a kickstart, systemd a start); running -> wait until that PID holds the profile lock, then
    until it reports Feishu connected. A crash and restart changes the PID; the steps follow it.
    """

    def __init__(self, home: Home, profile: str, manager: ServiceManager, start: Starter, report: Report):
        self.home, self.profile, self.manager = home, profile, manager
        self.start, self.report = start, report
        self.pid: int | None = None
        self.holding = False

    def step(self) -> bool:
        job = self.manager.job(self.profile)
        if job is None or not job.running:
            self.start(job)
            return False
        if job.pid != self.pid:
            self.pid, self.holding = job.pid, False
            self.report(f"{self.manager.name} runs PID {job.pid}; waiting for it to take the profile lock…")
        holder = read_owner(self.home.lock_file(self.profile))
        if holder is None or holder.pid != job.pid:
            return False
        if not self.holding:
            self.holding = True
            self.report(f"PID {job.pid} holds the profile; waiting for its Feishu connection…")
        assert job.pid is not None
        return headless_feishu_connected(self.home, self.profile, job.pid)

    def failure(self, timeout: float) -> str:
        """What state the profile is in after the bound, and where to look."""
        name, label = self.manager.name, self.manager.label(self.profile)
        job: JobView | None = self.manager.job(self.profile)
        holder = read_owner(self.home.lock_file(self.profile))
        log = self.manager.log_hint(self.home, self.profile)
        if self.holding and self.pid is not None:
            return (
                f"{name}'s gateway PID {self.pid} holds profile '{self.profile}' but has not connected to Feishu "
                f"within {timeout:.0f}s (it keeps retrying); read {log}"
            )
        state = job.describe() if job else f"{label} is not running"
        return (
            f"{name}'s gateway did not take profile '{self.profile}' within {timeout:.0f}s ({state}; held by "
            f"{holder.describe() if holder else 'nobody'}); read {log}, then: gatewatch {name} status --profile {self.profile}"
        )


STATUS_TIMEOUT = 2.0


def headless_feishu_connected(home: Home, profile: str, pid: int) -> bool:
    """Whether launchd's gateway `pid` says, over its control socket, that Feishu is connected.

    Asked of the gateway itself rather than read from its log: the socket answers for the process
    that owns the profile now, so an old "connected" line from a previous run cannot count.
    """
    # Imported here: the control client pulls in the gateway's snapshot types (and httpx), which
    # every `gatewatch` invocation would otherwise pay for when building its parser.
    from gateway_core.control import ControlError, request

    try:
        status = request(home.socket_file(profile), "status", timeout=STATUS_TIMEOUT)["status"]
    except ControlError:
        return False
    owner = status.get("owner") or {}
    return owner.get("pid") == pid and (status.get("feishu") or {}).get("state") == FeishuState.CONNECTED
