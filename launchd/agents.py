"""Install, uninstall and inspect the LaunchAgent of one profile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import psutil

from gateway_core.config import Home, Profile, load_profile
from gateway_core.ownership import OwnerInfo, read_owner

from .launchctl import (
    GATEWAY_EXIT_MEANINGS,
    IN_PROGRESS,
    IO_ERROR,
    NOT_FOUND,
    JobState,
    Launchctl,
    LaunchctlError,
    find_job,
)
from .plist import (
    DEFAULT_PREFIX,
    DEFAULT_THROTTLE_INTERVAL,
    PlistError,
    agents_dir_default,
    job_label,
    plist_path,
    read_plist,
    render_agent,
    stderr_path,
    write_plist,
)
from .service import JobView, Report

POLL_INTERVAL = 0.05
UNLOAD_MARGIN = 5.0  # on top of ExitTimeOut: launchd's own teardown after the SIGKILL
DEFAULT_UNLOAD_TIMEOUT = 30.0


class AgentError(Exception):
    """An agent operation cannot go on; one line saying what state things are in and what to do."""


@dataclass(frozen=True)
class AgentSettings:
    agents_dir: Path
    prefix: str = DEFAULT_PREFIX
    throttle_interval: int = DEFAULT_THROTTLE_INTERVAL

    @classmethod
    def default(cls) -> "AgentSettings":
        return cls(agents_dir=agents_dir_default())

    def label(self, profile: str) -> str:
        return job_label(profile, self.prefix)

    def plist(self, profile: str) -> Path:
        return plist_path(self.agents_dir, profile, self.prefix)


def poll(condition: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL) -> bool:
    """True as soon as `condition()` holds; False when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def unload_timeout(job: JobState | None) -> float:
    """How long a bootout may take: the job's ExitTimeOut (from its plist) plus launchd's margin."""
    if job is not None and job.path:
        try:
            value = read_plist(Path(job.path)).get("ExitTimeOut")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value) + UNLOAD_MARGIN
        except PlistError:
            pass
    return DEFAULT_UNLOAD_TIMEOUT


def wait_until_unloaded(launchctl: Launchctl, label: str, pid: int | None, timeout: float) -> bool:
    """launchd finishes a bootout in the background: wait until it no longer knows the job and its
    last process is gone, so a bootstrap that follows does not hit "still tearing down"."""
    return poll(lambda: launchctl.print_job(label) is None and not pid_alive(pid), timeout)


def check_installable(home: Home, profile: str, label: str, manager: str, refused: str) -> Profile:
    """The profile as the manager's gateway would load it, or AgentError saying why it would fail:
    a broken profile (it would exit 2), secrets from the environment (no manager passes the shell's),
    or another gateway holding the profile (`refused`: what the manager then does about exit 3)."""
    checked = load_profile(home, profile)
    from_env = [key for key in checked.secret_sources if key.endswith("_env")]
    if from_env:
        raise AgentError(
            f"profile '{profile}' reads {', '.join(from_env)} from an environment variable, which {manager} does "
            f"not pass to its jobs; use the *_file form (a file with mode 0600) in {home.profile_file(profile)}"
        )
    owner = read_owner(home.lock_file(profile))
    if owner is not None and owner.launchd_label != label:
        raise AgentError(
            f"profile '{profile}' is served by {owner.describe()}; {manager}'s gateway would be refused (exit 3) and "
            f"{refused} — hand it back with 'h' in the console, or stop it, then install"
        )
    return checked


def install(home: Home, profile: str, settings: AgentSettings, report: Report) -> Path:
    """Write the plist and load it; re-installing a changed plist reloads the job."""
    label = settings.label(profile)
    checked = check_installable(home, profile, label, "launchd", f"restarted every {settings.throttle_interval}s")
    home.ensure_dirs()
    data = render_agent(
        home,
        profile,
        drain_timeout=checked.drain_timeout,
        prefix=settings.prefix,
        throttle_interval=settings.throttle_interval,
    )
    path = settings.plist(profile)
    launchctl, job = find_job(label)
    current = _read_if_valid(path)
    if job is not None and current == data:
        report(f"{label} is already installed and loaded ({job.describe()})")
        if not job.running:
            pid = launchctl.kickstart(label)
            report(f"started it: PID {pid}")
        return path
    if job is not None:
        report(f"plist changed: booting out {launchctl.target(label)} to reload it")
        launchctl.bootout(label)
        if not wait_until_unloaded(launchctl, label, job.pid, unload_timeout(job)):
            raise AgentError(
                f"{label} was booted out but has not gone yet (PID {job.pid}); retry the install in a moment"
            )
    write_plist(path, data)
    report(f"wrote {path}")
    launchctl.bootstrap(path)
    report(f"loaded {launchctl.target(label)}; logs: {data['StandardErrorPath']}")
    return path


def _read_if_valid(path: Path) -> dict[str, Any] | None:
    try:
        return read_plist(path)
    except PlistError:
        return None


def uninstall(home: Home, profile: str, settings: AgentSettings, report: Report) -> None:
    label = settings.label(profile)
    launchctl, job = find_job(label)
    if job is not None:
        report(f"booting out {launchctl.target(label)}" + (f" (PID {job.pid})" if job.pid else ""))
        launchctl.bootout(label)
        if not wait_until_unloaded(launchctl, label, job.pid, unload_timeout(job)):
            raise AgentError(
                f"{label} was booted out but PID {job.pid} is still running; the plist was kept — "
                f"wait for it to drain (or: kill {job.pid}), then uninstall again"
            )
    else:
        report(f"{label} is not loaded")
    path = settings.plist(profile)
    if path.exists():
        path.unlink()
        report(f"removed {path}")
    else:
        report(f"no plist at {path}")


@dataclass(frozen=True)
class AgentStatus:
    profile: str
    label: str
    plist: Path
    installed: bool
    job: JobState | None
    owner: OwnerInfo | None
    throttle_interval: int | None

    @property
    def trouble(self) -> bool:
        return bool(self.job and self.job.looping) or self.split_owner

    @property
    def split_owner(self) -> bool:
        """launchd runs a process for the profile that is not the one holding it."""
        return bool(self.job and self.job.running and self.owner and self.owner.pid != self.job.pid)

    def lines(self) -> list[str]:
        out = [
            f"profile '{self.profile}': {self.label} — "
            + (f"plist {self.plist}" if self.installed else "not installed")
        ]
        out.append(self.job.describe() if self.job else "launchd: not loaded")
        out.append(f"served by {self.owner.describe()}" if self.owner else "no gateway holds the profile")
        if self.job and self.job.looping:
            every = f"every {self.throttle_interval}s" if self.throttle_interval else "repeatedly"
            if self.job.last_exit_code == 3:
                holder = self.owner.describe() if self.owner else "another gateway"
                out.append(
                    f"launchd restarts it {every} and it exits 3 because {holder} holds the profile; "
                    f"stop the loop with: gatewatch launchd takeover --profile {self.profile}, or hand the profile back"
                )
            else:
                meaning = GATEWAY_EXIT_MEANINGS.get(self.job.last_exit_code or -1, "see the log")
                out.append(
                    f"launchd restarts it {every} and it fails ({self.job.describe_last_exit()}: {meaning}); "
                    f"read its log, fix, then: gatewatch launchd install --profile {self.profile}"
                )
        if self.split_owner and self.job and self.owner:
            out.append(
                f"warning: launchd's PID {self.job.pid} does not hold the profile — {self.owner.describe()} does"
            )
        return out


def status(home: Home, profile: str, settings: AgentSettings) -> AgentStatus:
    label = settings.label(profile)
    _, job = find_job(label)
    path = settings.plist(profile)
    data = _read_if_valid(path)
    throttle = data.get("ThrottleInterval") if data else None
    return AgentStatus(
        profile=profile,
        label=label,
        plist=path,
        installed=path.exists(),
        job=job,
        owner=read_owner(home.lock_file(profile)),
        throttle_interval=throttle if isinstance(throttle, int) else None,
    )


def installed_profiles(settings: AgentSettings) -> list[str]:
    """Profiles that have one of our plists in the agents dir (for --all)."""
    prefix = settings.prefix + "."
    if not settings.agents_dir.is_dir():
        return []
    return sorted(p.stem[len(prefix) :] for p in settings.agents_dir.glob(f"{prefix}*.plist"))


class LaunchdManager:
    """The ServiceManager for launchd: LaunchAgents, `launchctl` with an explicit domain."""

    name = "launchd"
    kind = "LaunchAgent"
    stopped_word = "unloaded"

    def __init__(self, settings: AgentSettings):
        self.settings = settings
        # The domain each label was last found in (gui/ or user/): later calls go to the same one.
        self._launchctl: dict[str, Launchctl] = {}

    def label(self, profile: str) -> str:
        return self.settings.label(profile)

    def definition(self, profile: str) -> Path:
        return self.settings.plist(profile)

    def installed_profiles(self) -> list[str]:
        return installed_profiles(self.settings)

    def launchctl(self, profile: str) -> Launchctl:
        label = self.label(profile)
        if label not in self._launchctl:
            self._launchctl[label], _ = find_job(label)
        return self._launchctl[label]

    def job(self, profile: str) -> JobState | None:
        label = self.label(profile)
        if label in self._launchctl:
            return self._launchctl[label].print_job(label)
        self._launchctl[label], job = find_job(label)
        return job

    def stop(self, profile: str, job: JobView, report: Report) -> None:
        launchctl, label = self.launchctl(profile), self.label(profile)
        report(f"booting out {launchctl.target(label)}" + (f" (PID {job.pid})" if job.pid else ""))
        launchctl.bootout(label)

    def stop_timeout(self, job: JobView) -> float:
        return unload_timeout(cast(JobState, job))

    def stopped(self, profile: str, pid: int | None) -> bool:
        """launchd finishes a bootout in the background: gone from `print` and the process dead."""
        return self.launchctl(profile).print_job(self.label(profile)) is None and not pid_alive(pid)

    def prepare_start(self, profile: str, report: Report) -> None:
        launchctl, label = self.launchctl(profile), self.label(profile)
        report(f"enabling {launchctl.target(label)}")
        launchctl.enable(label)

    def starter(self, profile: str, report: Report) -> "_LaunchdStart":
        return _LaunchdStart(self.launchctl(profile), self.label(profile), self.definition(profile), report)

    def log_hint(self, home: Home, profile: str) -> str:
        return str(stderr_path(home, profile))

    def install(self, home: Home, profile: str, report: Report) -> Path:
        return install(home, profile, self.settings, report)

    def uninstall(self, home: Home, profile: str, report: Report) -> None:
        uninstall(home, profile, self.settings, report)

    def status(self, home: Home, profile: str) -> "AgentStatus":
        return status(home, profile, self.settings)

    def doctor(self, home: Home, apply_fix: bool, report: Report) -> int:
        from .doctor import run_doctor

        return run_doctor(home, self.settings, apply_fix=apply_fix, report=report)


class _LaunchdStart:
    """launchd's way to get a job running during a hand-back: not loaded -> bootstrap (launchd
    answers 5/36/37 while an earlier bootout is still tearing down: try again next step); loaded but
    idle (it exited 0 earlier) -> one kickstart, never right after our own bootstrap, where RunAtLoad
    already starts it."""

    def __init__(self, launchctl: Launchctl, label: str, path: Path, report: Report):
        self.launchctl, self.label, self.path, self.report = launchctl, label, path, report
        self.bootstrapped = self.kicked = False

    def __call__(self, job: JobView | None) -> None:
        if job is None:
            self._tolerating_teardown(self._bootstrap)
        elif not self.bootstrapped and not self.kicked:
            self._tolerating_teardown(self._kickstart)

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
    def _tolerating_teardown(action: Callable[[], None]) -> None:
        """The answers a teardown in progress gives mean "next step" (5/36/37: still tearing down;
        113: the job vanished between our print and this call)."""
        try:
            action()
        except LaunchctlError as error:
            if error.code not in (IO_ERROR, NOT_FOUND, *IN_PROGRESS):
                raise
