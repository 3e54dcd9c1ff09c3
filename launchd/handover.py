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
from gateway_core.control import ControlError, request
from gateway_core.ownership import read_owner

from .agents import POLL_INTERVAL, AgentSettings, Report, pid_alive, poll, unload_timeout, wait_until_unloaded
from .launchctl import IN_PROGRESS, IO_ERROR, Launchctl, LaunchctlError, find_job
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
        raise HandoverError(f"could not boot out {label}: {error}; nothing was changed, launchd still runs it") from None
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
        pid = _start_job(launchctl, label, path, timeout, report)
    except LaunchctlError as error:
        raise HandoverError(
            f"launchd did not start {label}: {error}; no gateway serves profile '{profile}' now — "
            f"retry with: gatewatch launchd handback --profile {profile}"
        ) from None

    report(f"waiting for PID {pid} to take the profile lock…")

    def launchd_owns_it() -> bool:
        nonlocal pid
        current = launchctl.print_job(label)
        if current is None or not current.running:
            return False
        pid = current.pid  # a crash and respawn changes it; follow launchd's view
        holder = read_owner(lock)
        return holder is not None and holder.pid == pid

    if not poll(launchd_owns_it, timeout):
        current = launchctl.print_job(label)
        state = current.describe() if current else f"{label} is not loaded"
        holder = read_owner(lock)
        raise HandoverError(
            f"launchd's gateway did not take profile '{profile}' within {timeout:.0f}s ({state}; "
            f"held by {holder.describe() if holder else 'nobody'}); read {stderr_path(home, profile)}, "
            f"then: gatewatch launchd status --profile {profile}"
        )
    report(f"PID {pid} holds the profile; waiting for its Feishu connection…")
    if not poll(lambda: headless_feishu_connected(home, profile, pid), timeout):
        raise HandoverError(
            f"launchd's gateway PID {pid} holds profile '{profile}' but has not connected to Feishu within "
            f"{timeout:.0f}s (it keeps retrying); read {stderr_path(home, profile)}"
        )
    report(f"handed back: launchd's gateway PID {pid} serves profile '{profile}', Feishu connected")
    return pid


def _start_job(launchctl: Launchctl, label: str, path: Path, timeout: float, report: Report) -> int:
    """bootstrap (polling through launchd's "still tearing down" 5/36/37), or kickstart a job that
    is loaded but not running; returns the PID launchd reports."""
    bootstrapped = kicked = False
    pid: int | None = None

    def started() -> bool:
        nonlocal bootstrapped, kicked, pid
        current = launchctl.print_job(label)
        if current is not None and current.running:
            pid = current.pid
            return True
        try:
            if current is None:
                if not bootstrapped:
                    report(f"bootstrapping {path.name} into {launchctl.domain}…")
                launchctl.bootstrap(path)
                bootstrapped = True
            elif not bootstrapped and not kicked:
                # Loaded but not running (it exited 0 earlier): start it. Not right after our own
                # bootstrap, where RunAtLoad already starts it and a kickstart would race.
                report(f"{label} is loaded but not running; kickstarting it")
                launchctl.kickstart(label)
                kicked = True
        except LaunchctlError as error:
            if error.code != IO_ERROR and error.code not in IN_PROGRESS:
                raise
        return False

    if not poll(started, timeout, POLL_INTERVAL * 2):
        current = launchctl.print_job(label)
        raise LaunchctlError(
            0,
            f"{label} is not running {timeout:.0f}s later ({current.describe() if current else 'not loaded'})",
        )
    report(f"launchd started PID {pid}")
    return pid


STATUS_TIMEOUT = 2.0


def headless_feishu_connected(home: Home, profile: str, pid: int) -> bool:
    """Whether launchd's gateway `pid` says, over its control socket, that Feishu is connected.

    Asked of the gateway itself rather than read from its log: the socket answers for the process
    that owns the profile now, so an old "connected" line from a previous run cannot count.
    """
    try:
        status = request(home.socket_file(profile), "status", timeout=STATUS_TIMEOUT)["status"]
    except ControlError:
        return False
    owner = status.get("owner") or {}
    return owner.get("pid") == pid and (status.get("feishu") or {}).get("state") == "connected"
