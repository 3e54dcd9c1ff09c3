"""Install, uninstall and inspect the LaunchAgent of one profile."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from gateway_core.config import Home, load_profile
from gateway_core.ownership import OwnerInfo, read_owner

from .launchctl import GATEWAY_EXIT_MEANINGS, JobState, Launchctl, find_job
from .plist import (
    DEFAULT_PREFIX,
    DEFAULT_THROTTLE_INTERVAL,
    PlistError,
    agents_dir_default,
    job_label,
    plist_path,
    read_plist,
    render_agent,
    write_plist,
)

Report = Callable[[str], None]
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
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
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


def secrets_from_environment(home: Home, profile: str) -> list[str]:
    """Profile keys that name an environment variable: launchd does not pass the shell's environment."""
    try:
        data = tomllib.loads(home.profile_file(profile).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [
        f"{section}.{key}" for section in ("feishu", "llm") for key in (data.get(section) or {}) if key.endswith("_env")
    ]


def install(home: Home, profile: str, settings: AgentSettings, report: Report) -> Path:
    """Write the plist and load it; re-installing a changed plist reloads the job."""
    checked = load_profile(home, profile)  # a broken profile would make launchd loop on exit 2
    from_env = secrets_from_environment(home, profile)
    if from_env:
        raise AgentError(
            f"profile '{profile}' reads {', '.join(from_env)} from an environment variable, which launchd does "
            f"not pass to its jobs; use the *_file form (a file with mode 0600) in {home.profile_file(profile)}"
        )
    label = settings.label(profile)
    owner = read_owner(home.lock_file(profile))
    if owner is not None and owner.launchd_label != label:
        raise AgentError(
            f"profile '{profile}' is served by {owner.describe()}; launchd's gateway would be refused (exit 3) and "
            f"restarted every {settings.throttle_interval}s — hand it back with 'h' in the console, or stop it, then install"
        )
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


def _read_if_valid(path: Path) -> dict | None:
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
        if self.split_owner:
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
