"""The service manager's side of the console's fleet view: each profile's job, and what the doctor finds.

Per profile: is its LaunchAgent (or systemd unit) installed, loaded, running, what was its last
exit — and is the manager restarting it in a loop. One look cannot tell a loop from a single
failure, so `ServiceWatch` keeps the last few samples of each job and calls it a loop only when
they agree: the manager says so twice running, or the job came back with a new PID and is down
again, its last exit failed.
The doctor's findings come with the files it scans: ours attach to their profile's row, and
another gateway's job (the incident's `ai.hermes.gateway-*.plist`) becomes a row of its own.

Everything here blocks (files, launchctl/systemctl): the console calls it from a worker thread.
Nothing is asked of the manager for a profile that has no job file: an idle fleet spawns nothing.
"""

from __future__ import annotations

import functools
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gateway_core.config import Home

from . import doctor, systemd_doctor
from .agents import AgentSettings
from .service import JobView, Report, ServiceError, ServiceManager, choose_manager
from .systemd import UnitSettings

SAMPLES = 4  # per job: a loop is judged from these, never from one
SAMPLE_INTERVAL = 5.0  # seconds between samples (the console's worker sleeps this long)


@dataclass(frozen=True)
class JobSample:
    pid: int | None
    running: bool
    looping: bool
    last_exit: int | None

    @property
    def failed(self) -> bool:
        return self.last_exit not in (None, 0)


@dataclass(frozen=True)
class DoctorFile:
    """One job file the doctor looked at, and what it found wrong."""

    path: Path
    label: str
    ours: bool
    profile: str
    findings: tuple[str, ...]
    fixable: bool
    fix: Callable[[Home, Report], bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class ServiceView:
    """What the fleet view shows of one profile's job."""

    state: str  # not installed | not loaded | loaded | running | exited N | restarting in a loop (…)
    installed: bool = False
    running: bool = False
    findings: tuple[str, ...] = ()
    fixable: bool = False


@dataclass(frozen=True)
class ForeignJob:
    """Another gateway's job the doctor knows (not a gatewatch profile): a row with its findings."""

    label: str
    path: Path
    profile: str
    state: str
    findings: tuple[str, ...]
    fixable: bool


class ServiceWatch:
    """Samples this machine's service manager for the fleet; one instance per console."""

    def __init__(self, manager: ServiceManager | None = None):
        self.manager = manager or choose_manager()
        self._samples: dict[str, deque[JobSample]] = {}
        self._doctor: list[DoctorFile] = []

    @property
    def name(self) -> str:
        return str(self.manager.name)

    def sample(self, profiles: list[str]) -> tuple[dict[str, ServiceView], list[ForeignJob]]:
        """One look at every profile's job and the doctor's files (blocking)."""
        self._doctor = doctor_files(self.manager)
        ours = {f.profile: f for f in self._doctor if f.ours}
        views = {}
        for profile in sorted(set(profiles) | set(ours)):
            views[profile] = self._view(profile, ours.get(profile))
        foreign = [
            ForeignJob(f.label, f.path, f.profile, self._foreign_state(f.label), f.findings, f.fixable)
            for f in self._doctor
            if not f.ours
        ]
        return views, foreign

    def _view(self, profile: str, doctor: DoctorFile | None) -> ServiceView:
        findings = doctor.findings if doctor else ()
        fixable = bool(doctor and doctor.fixable)
        try:
            installed = self.manager.definition(profile).exists()
        except Exception:  # a name the manager cannot use: nothing of it can be installed
            return ServiceView("not installed")
        if not installed:
            self._samples.pop(profile, None)
            return ServiceView("not installed", findings=findings, fixable=fixable)
        try:
            job = self.manager.job(profile)
        except (ServiceError, OSError) as error:
            return ServiceView(f"unknown: {error}", installed=True, findings=findings, fixable=fixable)
        samples = self._samples.setdefault(profile, deque(maxlen=SAMPLES))
        if job is None:
            samples.clear()
            return ServiceView("not loaded", installed=True, findings=findings, fixable=fixable)
        samples.append(_sample(job))
        return ServiceView(judge(samples), True, job.running, findings, fixable)

    def _foreign_state(self, label: str) -> str:
        # A foreign job is named by its own label, which our manager's per-profile calls do not take.
        if self.manager.name != "launchd" or shutil.which("launchctl") is None:
            return "found"
        from .launchctl import LaunchctlError, find_job

        try:
            _, job = find_job(label)
        except LaunchctlError:
            return "found"
        return "not loaded" if job is None else ("running" if job.running else "loaded")

    def doctor_file(self, label_or_profile: str) -> DoctorFile | None:
        """The doctor's file for a row (as last sampled): ours by profile, a foreign one by label."""
        for found in self._doctor:
            if (found.ours and found.profile == label_or_profile) or (
                not found.ours and found.label == label_or_profile
            ):
                return found
        return None


def judge(samples: deque[JobSample]) -> str:
    """The job's state in words, the loop judged from more than one sample."""
    last = samples[-1]
    if len(samples) >= 2 and last.failed:
        twice = samples[-2].looping and last.looping
        pids = {s.pid for s in samples if s.pid}
        # A new PID and down again with a failed exit; one crash that was restarted and runs is no loop.
        if twice or (len(pids) >= 2 and not last.running):
            return f"restarting in a loop (exit {last.last_exit})"
    if last.running:
        return "running"
    if last.last_exit is None:
        return "loaded"
    return f"exited {last.last_exit}"


def _sample(job: JobView) -> JobSample:
    return JobSample(job.pid, job.running, job.looping, job.last_exit_code)


def doctor_files(manager: ServiceManager) -> list[DoctorFile]:
    """The doctor's scan of the manager's job files, without asking the manager (that is sampled)."""
    if manager.name == "launchd":
        agents_dir = getattr(manager, "settings", AgentSettings.default()).agents_dir
        return [
            DoctorFile(
                agent.path,
                agent.label,
                agent.ours,
                doctor.profile_of(agent)[1] if agent.data is not None else agent.path.stem,
                tuple(f.problem for f in agent.findings),
                any(f.fixable for f in agent.findings),
                functools.partial(_fix_agent, agent),
            )
            for agent in doctor.scan(agents_dir, probe_launchd=False)
        ]
    unit_dir = getattr(manager, "settings", UnitSettings.default()).unit_dir
    return [
        DoctorFile(
            unit.path,
            unit.path.name,
            unit.ours,
            unit.profile,
            tuple(f.problem for f in unit.findings),
            any(f.fixable for f in unit.findings),
            functools.partial(_fix_unit, unit),
        )
        for unit in systemd_doctor.scan(unit_dir, probe_systemd=False)
    ]


def _fix_agent(agent: doctor.AgentFile, home: Home, report: Report) -> bool:
    return bool(doctor.fix(agent, home, report))


def _fix_unit(unit: systemd_doctor.UnitFile, home: Home, report: Report) -> bool:
    fixed = bool(systemd_doctor.fix(unit, home, report))
    if fixed:
        systemd_doctor.reload_units([unit], report)  # systemd runs what the file now says
    return fixed
