"""systemd --user: install, uninstall and inspect the unit of one profile, and the ServiceManager.

The same contracts as launchd (agents.py): the unit runs the gateway itself, restarts it only after
a failure, is stopped for a take-over so systemd does not restart it, and is started again for a
hand-back. `systemctl stop` waits until the process is gone (launchd's bootout does not), but the
hand-over still checks the PID and the lock itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway_core.config import Home
from gateway_core.ownership import OwnerInfo, read_owner

from .agents import AgentError, check_installable, pid_alive
from .launchctl import GATEWAY_EXIT_MEANINGS
from .service import JobView, Report
from .systemctl import Systemctl, UnitState, linger_enabled
from .unit import (
    DEFAULT_RESTART_SEC,
    UNIT_PREFIX,
    UnitError,
    format_unit,
    read_unit,
    render_unit,
    unit_dir_default,
    unit_from_raw,
    unit_name,
    unit_path,
    write_unit,
)

STOP_MARGIN = 5.0  # on top of TimeoutStopSec: systemd's own bookkeeping after the SIGKILL
DEFAULT_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class UnitSettings:
    unit_dir: Path
    restart_sec: int = DEFAULT_RESTART_SEC

    @classmethod
    def default(cls) -> "UnitSettings":
        return cls(unit_dir=unit_dir_default())


def journal_hint(profile: str) -> str:
    return f"'journalctl --user -u {unit_name(profile)}'"


def _current_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def install(home: Home, profile: str, settings: UnitSettings, report: Report) -> Path:
    """Write the unit, reload systemd, enable it (start at login/boot) and (re)start it."""
    name = unit_name(profile)
    checked = check_installable(home, profile, name, "systemd", "marked failed (it is not restarted on exit 3)")
    home.ensure_dirs()
    unit = render_unit(home, profile, drain_timeout=checked.drain_timeout, restart_sec=settings.restart_sec)
    path = unit_path(settings.unit_dir, profile)
    systemctl = Systemctl()
    changed = _current_text(path) != format_unit(unit)
    if changed:
        write_unit(path, unit)
        report(f"wrote {path}")
    systemctl.daemon_reload()
    systemctl.enable(name)
    state = systemctl.show(name)
    if state is not None and state.running and not changed:
        report(f"{name} is already installed and running ({state.describe()})")
        return path
    systemctl.reset_failed(name)
    if state is not None and state.running:
        report(f"unit changed: restarting {name}")
        systemctl.restart(name)
    else:
        systemctl.start(name)
    report(f"started {name}; logs: {journal_hint(profile)} and {home.log_file(profile)}")
    if linger_enabled() is False:
        report(
            "note: linger is off, so systemd stops the gateway when you log out; keep it with: loginctl enable-linger"
        )
    return path


def uninstall(home: Home, profile: str, settings: UnitSettings, report: Report) -> None:
    name = unit_name(profile)
    systemctl = Systemctl()
    state = systemctl.show(name)
    if state is not None and state.active_state not in ("inactive", "failed"):
        report(f"stopping {name}" + (f" (PID {state.pid})" if state.pid else ""))
        systemctl.stop(name)
        if state.pid and pid_alive(state.pid):
            raise AgentError(
                f"{name} was stopped but PID {state.pid} is still running; the unit was kept — "
                f"wait for it to drain (or: kill {state.pid}), then uninstall again"
            )
    else:
        report(f"{name} is not running")
    path = unit_path(settings.unit_dir, profile)
    if path.exists():
        systemctl.disable(name)
        path.unlink()
        report(f"removed {path}")
        systemctl.daemon_reload()
        if state is not None and state.active_state == "failed":
            systemctl.reset_failed(name)  # else systemd keeps listing the removed unit as failed
    else:
        report(f"no unit at {path}")


@dataclass(frozen=True)
class UnitStatus:
    profile: str
    unit: str
    path: Path
    installed: bool
    job: UnitState | None
    owner: OwnerInfo | None
    linger: bool | None

    @property
    def split_owner(self) -> bool:
        """systemd runs a process for the profile that is not the one holding it."""
        return bool(self.job and self.job.running and self.owner and self.owner.pid != self.job.pid)

    @property
    def trouble(self) -> bool:
        failed = bool(self.job and self.job.active_state == "failed")
        return failed or bool(self.job and self.job.looping) or self.split_owner

    def lines(self) -> list[str]:
        out = [
            f"profile '{self.profile}': {self.unit} — " + (f"unit {self.path}" if self.installed else "not installed")
        ]
        out.append(self.job.describe() if self.job else "systemd: not loaded")
        out.append(f"served by {self.owner.describe()}" if self.owner else "no gateway holds the profile")
        job = self.job
        if job is not None and job.active_state == "failed":
            if job.exit_code == 3:
                holder = self.owner.describe() if self.owner else "another gateway"
                out.append(
                    f"it exited 3 because {holder} holds the profile (systemd does not restart that); "
                    f"hand the profile back, or: gatewatch systemd takeover --profile {self.profile}"
                )
            else:
                meaning = GATEWAY_EXIT_MEANINGS.get(job.exit_code or -1, "see the journal")
                out.append(
                    f"it failed ({job.describe_last_exit()}: {meaning}); read {journal_hint(self.profile)}, fix, "
                    f"then: gatewatch systemd install --profile {self.profile}"
                )
        elif job is not None and job.looping:
            out.append(f"systemd keeps restarting it; read {journal_hint(self.profile)}")
        if self.split_owner and job is not None and self.owner is not None:
            out.append(f"warning: systemd's PID {job.pid} does not hold the profile — {self.owner.describe()} does")
        if self.installed and self.linger is False:
            out.append("linger is off: systemd stops the gateway when you log out (fix: loginctl enable-linger)")
        return out


def status(home: Home, profile: str, settings: UnitSettings) -> UnitStatus:
    name = unit_name(profile)
    path = unit_path(settings.unit_dir, profile)
    return UnitStatus(
        profile=profile,
        unit=name,
        path=path,
        installed=path.exists(),
        job=Systemctl().show(name),
        owner=read_owner(home.lock_file(profile)),
        linger=linger_enabled(),
    )


def installed_profiles(settings: UnitSettings) -> list[str]:
    if not settings.unit_dir.is_dir():
        return []
    return sorted(
        p.name[len(UNIT_PREFIX) : -len(".service")] for p in settings.unit_dir.glob(f"{UNIT_PREFIX}*.service")
    )


def stop_timeout_of(path: Path | None) -> float:
    """How long a stop may take: the unit's TimeoutStopSec plus a margin."""
    if path is not None:
        try:
            raw = read_unit(path)
        except UnitError:
            return DEFAULT_STOP_TIMEOUT
        value = unit_from_raw(raw, {"Service": {"TimeoutStopSec": 0}})["Service"].get("TimeoutStopSec")
        if isinstance(value, int):
            return value + STOP_MARGIN
    return DEFAULT_STOP_TIMEOUT


class SystemdManager:
    """The ServiceManager for systemd --user: one unit per profile, `systemctl --user`."""

    name = "systemd"
    kind = "systemd unit"
    stopped_word = "stopped"

    def __init__(self, settings: UnitSettings):
        self.settings = settings
        self.systemctl = Systemctl()

    def label(self, profile: str) -> str:
        return unit_name(profile)

    def definition(self, profile: str) -> Path:
        return unit_path(self.settings.unit_dir, profile)

    def installed_profiles(self) -> list[str]:
        return installed_profiles(self.settings)

    def job(self, profile: str) -> UnitState | None:
        return self.systemctl.show(unit_name(profile))

    def stop(self, profile: str, job: JobView, report: Report) -> None:
        report(f"stopping {unit_name(profile)}" + (f" (PID {job.pid})" if job.pid else ""))
        self.systemctl.stop(unit_name(profile))

    def stop_timeout(self, job: JobView) -> float:
        path = getattr(job, "path", None)
        return stop_timeout_of(Path(path) if path else None)

    def stopped(self, profile: str, pid: int | None) -> bool:
        state = self.systemctl.show(unit_name(profile))
        return (state is None or not state.running) and not pid_alive(pid)

    def prepare_start(self, profile: str, report: Report) -> None:
        """A unit that failed earlier (start limit, exit 3) would refuse or be refused: forget that."""
        name = unit_name(profile)
        report(f"resetting {name}'s failed state")
        self.systemctl.reset_failed(name)

    def starter(self, profile: str, report: Report) -> "_SystemdStart":
        return _SystemdStart(self.systemctl, unit_name(profile), report)

    def log_hint(self, home: Home, profile: str) -> str:
        return f"{journal_hint(profile)} and {home.log_file(profile)}"

    def install(self, home: Home, profile: str, report: Report) -> Path:
        return install(home, profile, self.settings, report)

    def uninstall(self, home: Home, profile: str, report: Report) -> None:
        uninstall(home, profile, self.settings, report)

    def status(self, home: Home, profile: str) -> UnitStatus:
        return status(home, profile, self.settings)

    def doctor(self, home: Home, apply_fix: bool, report: Report) -> int:
        from .systemd_doctor import run_doctor

        return run_doctor(home, self.settings, apply_fix=apply_fix, report=report)


class _SystemdStart:
    """systemd's way to get the unit running during a hand-back: one `start` (it loads the unit if
    needed and returns once the program runs); while systemd is already bringing it up (activating,
    a restart pending) there is nothing to do but wait."""

    def __init__(self, systemctl: Systemctl, unit: str, report: Report):
        self.systemctl, self.unit, self.report = systemctl, unit, report
        self.started = False

    def __call__(self, job: JobView | None) -> None:
        if self.started or (isinstance(job, UnitState) and job.active_state == "activating"):
            return
        self.report(f"starting {self.unit}…")
        self.systemctl.start(self.unit)
        self.started = True
