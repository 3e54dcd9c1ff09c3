"""LaunchctlSim: a temp `bin/launchctl` shim for the simulator, and cleanup of what it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from gateway_core.config import Home
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile
from launchd.agents import poll

from .launchctl_sim import read_state

REPOSITORY = Path(__file__).resolve().parents[2]

SHIM = """#!/bin/sh
# launchctl simulator shim (gatewatch tests): state in $LAUNCHCTL_SIM_STATE.
LAUNCHCTL_SIM_STATE="${{LAUNCHCTL_SIM_STATE:-{state}}}"
PYTHONPATH="{repository}${{PYTHONPATH:+:$PYTHONPATH}}"  # the simulator lives in tests/, not installed
export LAUNCHCTL_SIM_STATE PYTHONPATH
exec "{python}" -m tests.sim.launchctl_sim "$@"
"""


class LaunchctlSim:
    """A temp `bin/launchctl` shim plus its state dir; `cleanup()` stops every process it started.

    Cleanup goes by the PIDs the simulator recorded (and checks each is still the process it
    started, by creation time), never by name.
    """

    def __init__(self, root: Path, gui_session: bool = False, teardown_delay: float = 0.2) -> None:
        self.root = root
        self.bin_dir = root / "bin"
        self.state_dir = root / "launchctl-state"
        self.gui_session = gui_session
        self.teardown_delay = teardown_delay
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shim = self.bin_dir / "launchctl"
        shim.write_text(
            SHIM.format(state=self.state_dir, python=os.path.abspath(sys.executable), repository=REPOSITORY)
        )
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.started_at = time.time()

    def environment(self, domain: str | None = None) -> dict[str, str]:
        """Variables to set (e.g. with monkeypatch.setenv) so `launchctl` is the simulator."""
        return {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LAUNCHCTL_SIM_STATE": str(self.state_dir),
            "LAUNCHCTL_SIM_GUI": "1" if self.gui_session else "0",
            "LAUNCHCTL_SIM_TEARDOWN_DELAY": str(self.teardown_delay),
            "GATEWATCH_LAUNCHD_DOMAIN": domain or f"user/{os.getuid()}",
            "GATEWATCH_SERVICE_MANAGER": "launchd",  # the console's `t`/`h` pick it even on Linux
        }

    def state(self) -> dict[str, Any]:
        os.environ.setdefault("LAUNCHCTL_SIM_STATE", str(self.state_dir))
        return read_state(self.state_dir)

    def job(self, label: str) -> dict[str, Any] | None:
        return next((j for j in self.state()["jobs"].values() if j["label"] == label), None)

    def calls(self) -> list[dict[str, Any]]:
        path = self.state_dir / "calls.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def spawned(self, role: str = "job") -> list[int]:
        """Every PID the simulator started in that role ("job" or "monitor"), oldest first."""
        return [pid for pid, r, _ in self.state()["spawned"] if r == role]

    def cleanup(self, timeout: float = 10.0) -> None:
        stop_recorded(self.state()["spawned"], self.started_at, timeout)


def stop_recorded(recorded: list[list[Any]], started_at: float, timeout: float = 10.0) -> None:
    """Ask every monitor a simulator recorded to stop its job (SIGTERM), then kill what is left, by
    PID — each checked to still be the process the simulator started (by creation time)."""
    processes = []
    for pid, role, _ in recorded:
        try:
            process = psutil.Process(pid)
            if process.create_time() >= started_at - 1:
                processes.append((role, process))
        except psutil.NoSuchProcess:
            continue
    for role, process in processes:
        if role == "monitor":
            _signal(process, signal.SIGTERM)
    if not poll(lambda: not any(_alive(p) for _, p in processes), timeout):
        for _, process in processes:
            if _alive(process):
                _signal(process, signal.SIGKILL)
        poll(lambda: not any(_alive(p) for _, p in processes), 2.0)


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie waiting for a parent (or init) to reap it."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        pass


@contextlib.contextmanager
def simulated_launchctl(root: Path, setenv: Callable[[str, str], None], **options: Any) -> Iterator[LaunchctlSim]:
    """The simulator first on PATH for the duration (setenv: e.g. pytest's monkeypatch.setenv)."""
    sim = LaunchctlSim(root, **options)
    for name, value in sim.environment().items():
        setenv(name, value)
    try:
        yield sim
    finally:
        sim.cleanup()


def write_launchd_sim_profile(home: Home, name: str, sims: Simulators, feishu_secret: str, llm_key: str) -> Path:
    """A profile wired to the simulators with its secrets in 0600 files, as a launchd profile must
    be (launchd passes no shell environment to its jobs)."""
    return write_sim_profile(home, name, sims, secret_files=(feishu_secret, llm_key))
