"""One interface to the machine's service manager: launchd on a Mac, systemd --user on Linux.

The contracts are the manager's business, not the caller's: one owner per profile, a take-over
that stops the manager's gateway so it is not restarted, a hand-back that waits until the
manager's gateway serves, restart only after a failure, and a doctor. handover.py runs the
hand-over protocol once, on top of the few primitives each backend implements here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Protocol

from gateway_core.config import Home

Report = Callable[[str], None]
MANAGER_NAMES = ("launchd", "systemd")
MANAGER_VARIABLE = "GATEWATCH_SERVICE_MANAGER"


class ServiceError(Exception):
    """A service-manager call failed; `str()` is one line saying what it means and what to do."""


class JobView(Protocol):
    """What a manager says about the job (launchd) or unit (systemd) of one profile."""

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def looping(self) -> bool: ...

    @property
    def last_exit_code(self) -> int | None: ...

    def describe(self) -> str: ...


class StatusView(Protocol):
    @property
    def trouble(self) -> bool: ...

    def lines(self) -> list[str]: ...


class Starter(Protocol):
    """One hand-back's way to get the job running, called until it runs (it keeps its own state)."""

    def __call__(self, job: JobView | None) -> None: ...


class ServiceManager(Protocol):
    name: str  # "launchd" | "systemd": also the `gatewatch` command group
    kind: str  # what its per-profile file is called: "LaunchAgent", "systemd unit"
    stopped_word: str  # how a stopped job is said: "unloaded" (launchd), "stopped" (systemd)

    def label(self, profile: str) -> str: ...

    def definition(self, profile: str) -> Path: ...

    def installed_profiles(self) -> list[str]: ...

    def job(self, profile: str) -> JobView | None:
        """None: the manager does not have the profile's job at all."""

    def stop(self, profile: str, job: JobView, report: Report) -> None:
        """Stop the job so the manager does not restart it; may return before it is gone."""

    def stop_timeout(self, job: JobView) -> float: ...

    def stopped(self, profile: str, pid: int | None) -> bool:
        """The manager no longer runs the job and `pid` is gone."""

    def prepare_start(self, profile: str, report: Report) -> None: ...

    def starter(self, profile: str, report: Report) -> Starter: ...

    def log_hint(self, home: Home, profile: str) -> str: ...

    def install(self, home: Home, profile: str, report: Report) -> Path: ...

    def uninstall(self, home: Home, profile: str, report: Report) -> None: ...

    def status(self, home: Home, profile: str) -> StatusView: ...

    def doctor(self, home: Home, apply_fix: bool, report: Report) -> int: ...


def default_manager_name(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """launchd on macOS, systemd elsewhere; GATEWATCH_SERVICE_MANAGER overrides."""
    env = os.environ if environ is None else environ
    chosen = (env.get(MANAGER_VARIABLE) or "").strip()
    if chosen:
        if chosen not in MANAGER_NAMES:
            raise ServiceError(f"{MANAGER_VARIABLE}={chosen!r} is not a service manager; use launchd or systemd")
        return chosen
    return "launchd" if (platform or sys.platform) == "darwin" else "systemd"


def choose_manager(name: str | None = None) -> ServiceManager:
    """The named manager with its default settings, or this machine's."""
    name = name or default_manager_name()
    if name == "launchd":
        from .agents import AgentSettings, LaunchdManager

        return LaunchdManager(AgentSettings.default())
    from .systemd import SystemdManager, UnitSettings

    return SystemdManager(UnitSettings.default())


def manager_for_label(label: str) -> ServiceManager:
    """The manager that runs a job of this name (what a gateway recorded in its lock)."""
    return choose_manager("systemd" if label.endswith(".service") else "launchd")
