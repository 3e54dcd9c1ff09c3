"""Hand a profile between launchd and the console, one owner at every moment.

Take over: boot launchd's job out (so launchd will not respawn it), wait until its process is
really gone and the profile lock is free; the caller then starts its gateway. Hand back: the
caller has stopped its gateway; load/start the job and wait until launchd's process holds the
lock and its Feishu connection is up. Messages sent meanwhile are not lost: Feishu redelivers
what was not acknowledged to whichever gateway connects next.

Every step is reported as one human line; a failure raises HandoverError whose text says what
state the profile is in and how to recover.
"""

from __future__ import annotations

from pathlib import Path

from gateway_core.config import Home
from gateway_core.ownership import read_owner
from gateway_core.states import FeishuState

from .agents import POLL_INTERVAL, AgentSettings, Report, pid_alive, poll, unload_timeout, wait_until_unloaded
from .launchctl import IN_PROGRESS, IO_ERROR, NOT_FOUND, Launchctl, LaunchctlError, find_job
from .plist import stderr_path

HANDBACK_TIMEOUT = 20.0


class HandoverError(Exception):
    """The hand-over stopped; one line: the profile's state now and how to recover."""


def take_over(
    home: Home,
    profile: str,
    report: Report,
    timeout: float | None = None,
    settings: AgentSettings | None = None,
) -> None:
    """Boot launchd's job out and wait until its process is gone and the profile is free."""
    settings = settings or AgentSettings.default()
    label = settings.label(profile)
    lock = home.lock_file(profile)
    try:
        launchctl, job = find_job(label)
    except LaunchctlError as error:
        raise HandoverError(f"cannot ask launchd about {label}: {error}; nothing was changed") from None
    if job is None:
        owner = read_owner(lock)
        if owner is not None:
            raise HandoverError(
                f"profile '{profile}' is served by {owner.describe()}, not by launchd job {label}; "
                "stop that gateway first (gatewatch never kills it)"
            )
        report(f"{label} is not loaded; profile '{profile}' is free")
        return

    old_pid = job.pid
    timeout = unload_timeout(job) if timeout is None else timeout
    report(f"booting out {launchctl.target(label)}" + (f" (PID {old_pid})" if old_pid else ""))
    try:
        launchctl.bootout(label)
    except LaunchctlError as error:
        raise HandoverError(
            f"could not boot out {label}: {error}; nothing was changed, launchd still runs it"
        ) from None
    if old_pid:
        report(f"waiting for PID {old_pid} to exit (up to {timeout:.0f}s)…")
    if not wait_until_unloaded(launchctl, label, old_pid, timeout):
        if pid_alive(old_pid):
            raise HandoverError(
                f"{label} is booted out (launchd will not respawn it) but PID {old_pid} is still running after "
                f"{timeout:.0f}s and may still hold profile '{profile}'; wait for it to drain, or stop it with "
                f"'kill {old_pid}', then take over again (or hand back with: gatewatch launchd handback --profile {profile})"
            )
        raise HandoverError(
            f"launchd still lists {label} {timeout:.0f}s after the bootout (teardown not finished); "
            f"check with 'gatewatch launchd status --profile {profile}' and take over again"
        )
    if old_pid:
        report(f"PID {old_pid} has exited; {label} is unloaded")
    if not poll(lambda: read_owner(lock) is None, max(1.0, timeout / 4)):
        owner = read_owner(lock)
        raise HandoverError(
            f"{label} is unloaded, but profile '{profile}' is still served by "
            f"{owner.describe() if owner else 'another process'}; stop that gateway first"
        )
    report(f"lock free: profile '{profile}' can be taken")


def hand_back(
    home: Home,
    profile: str,
    report: Report,
    timeout: float | None = None,
    settings: AgentSettings | None = None,
) -> int:
    """Start launchd's job and wait until it serves the profile; returns its PID.

    Precondition: the caller has stopped its own gateway for the profile (drained, lock released).
    """
    settings = settings or AgentSettings.default()
    timeout = HANDBACK_TIMEOUT if timeout is None else timeout
    label = settings.label(profile)
    lock = home.lock_file(profile)
    path = settings.plist(profile)
    owner = read_owner(lock)
    if owner is not None and owner.launchd_label != label:
        raise HandoverError(
            f"profile '{profile}' is still served by {owner.describe()}; stop that gateway first, then hand back"
        )
    if not path.exists():
        raise HandoverError(
            f"no LaunchAgent for profile '{profile}' at {path}; install it with: gatewatch launchd install --profile {profile}"
        )
    try:
        launchctl, _ = find_job(label)
        report(f"enabling {launchctl.target(label)}")
        launchctl.enable(label)
    except LaunchctlError as error:
        raise HandoverError(f"cannot enable {label}: {error}; nothing was changed") from None
    progress = _HandBack(home, profile, launchctl, label, path, report)
    try:
        done = poll(progress.step, timeout, POLL_INTERVAL * 2)
    except LaunchctlError as error:
        raise HandoverError(
            f"launchd did not start {label}: {error}; no gateway serves profile '{profile}' now — "
            f"retry with: gatewatch launchd handback --profile {profile}"
        ) from None
    if not done:
        raise HandoverError(progress.failure(timeout))
    report(f"handed back: launchd's gateway PID {progress.pid} serves profile '{profile}', Feishu connected")
    return progress.pid


class _HandBack:
    """One hand-back, advanced by `step()` until launchd's gateway serves.

    Each step re-reads launchd's view, so every turn of events is followed rather than assumed:
    the job not loaded -> bootstrap (launchd answers 5/36/37 while an earlier bootout is still
    tearing down: try again next step); loaded but idle (it exited 0 earlier) -> one kickstart,
    never right after our own bootstrap where RunAtLoad already starts it; running -> wait until
    that PID holds the profile lock, then until it reports Feishu connected. A crash and respawn
    changes the PID; the steps follow launchd's.
    """

    def __init__(self, home: Home, profile: str, launchctl: Launchctl, label: str, path: Path, report: Report):
        self.home, self.profile, self.launchctl = home, profile, launchctl
        self.label, self.path, self.report = label, path, report
        self.bootstrapped = self.kicked = False
        self.pid: int | None = None
        self.holding = False

    def step(self) -> bool:
        job = self.launchctl.print_job(self.label)
        if job is None:
            self._tolerating_teardown(self._bootstrap)
            return False
        if not job.running:
            if not self.bootstrapped and not self.kicked:
                self._tolerating_teardown(self._kickstart)
            return False
        if job.pid != self.pid:
            self.pid, self.holding = job.pid, False
            self.report(f"launchd runs PID {job.pid}; waiting for it to take the profile lock…")
        holder = read_owner(self.home.lock_file(self.profile))
        if holder is None or holder.pid != job.pid:
            return False
        if not self.holding:
            self.holding = True
            self.report(f"PID {job.pid} holds the profile; waiting for its Feishu connection…")
        return headless_feishu_connected(self.home, self.profile, job.pid)

    def _bootstrap(self) -> None:
        if not self.bootstrapped:
            self.report(f"bootstrapping {self.path.name} into {self.launchctl.domain}…")
        self.launchctl.bootstrap(self.path)
        self.bootstrapped = True

    def _kickstart(self) -> None:
        self.report(f"{self.label} is loaded but not running; kickstarting it")
        self.launchctl.kickstart(self.label)
        self.kicked = True

    @staticmethod
    def _tolerating_teardown(action) -> None:
        """Run a bootstrap/kickstart; the answers a teardown in progress gives mean "next step"
        (5/36/37: still tearing down; 113: the job vanished between our print and this call)."""
        try:
            action()
        except LaunchctlError as error:
            if error.code not in (IO_ERROR, NOT_FOUND, *IN_PROGRESS):
                raise

    def failure(self, timeout: float) -> str:
        """What state the profile is in after the bound, and where to look."""
        job = self.launchctl.print_job(self.label)
        holder = read_owner(self.home.lock_file(self.profile))
        log = stderr_path(self.home, self.profile)
        if self.holding and self.pid is not None:
            return (
                f"launchd's gateway PID {self.pid} holds profile '{self.profile}' but has not connected to Feishu "
                f"within {timeout:.0f}s (it keeps retrying); read {log}"
            )
        state = job.describe() if job else f"{self.label} is not loaded"
        return (
            f"launchd's gateway did not take profile '{self.profile}' within {timeout:.0f}s ({state}; held by "
            f"{holder.describe() if holder else 'nobody'}); read {log}, then: gatewatch launchd status --profile {self.profile}"
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
