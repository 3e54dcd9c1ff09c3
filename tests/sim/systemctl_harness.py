"""SystemctlSim: temp `bin/systemctl` and `bin/loginctl` shims for the simulator, and cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .launchctl_harness import REPOSITORY, stop_recorded
from .launchctl_sim import read_state

SHIM = """#!/bin/sh
# {name} simulator shim (gatewatch tests): state in $SYSTEMCTL_SIM_STATE.
SYSTEMCTL_SIM_STATE="${{SYSTEMCTL_SIM_STATE:-{state}}}"
PYTHONPATH="{repository}${{PYTHONPATH:+:$PYTHONPATH}}"  # the simulator lives in tests/, not installed
export SYSTEMCTL_SIM_STATE PYTHONPATH
exec "{python}" -m tests.sim.systemctl_sim {flag}"$@"
"""


class SystemctlSim:
    """Shims plus a state dir and the user unit dir; `cleanup()` stops every process it started."""

    def __init__(self, root: Path, linger: bool = True) -> None:
        self.root = root
        self.bin_dir = root / "bin"
        self.state_dir = root / "systemctl-state"
        self.unit_dir = root / "systemd-user"
        self.linger = linger
        for directory in (self.bin_dir, self.state_dir, self.unit_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for name, flag in (("systemctl", ""), ("loginctl", "--loginctl ")):
            shim = self.bin_dir / name
            shim.write_text(
                SHIM.format(
                    name=name,
                    state=self.state_dir,
                    python=os.path.abspath(sys.executable),
                    repository=REPOSITORY,
                    flag=flag,
                )
            )
            shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.started_at = time.time()

    def environment(self) -> dict[str, str]:
        """Variables to set (e.g. with monkeypatch.setenv) so `systemctl`/`loginctl` are the simulator."""
        return {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "SYSTEMCTL_SIM_STATE": str(self.state_dir),
            "SYSTEMCTL_SIM_UNIT_DIR": str(self.unit_dir),
            "SYSTEMCTL_SIM_LINGER": "yes" if self.linger else "no",
            "GATEWATCH_SYSTEMD_UNIT_DIR": str(self.unit_dir),
            "GATEWATCH_SERVICE_MANAGER": "systemd",
        }

    def state(self) -> dict[str, Any]:
        state = read_state(self.state_dir)
        state.setdefault("units", {})
        return state

    def unit(self, name: str) -> dict[str, Any] | None:
        unit: dict[str, Any] | None = self.state()["units"].get(name)
        return unit

    def calls(self) -> list[dict[str, Any]]:
        path = self.state_dir / "calls.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def spawned(self, role: str = "job") -> list[int]:
        """Every PID the simulator started in that role ("job" or "monitor"), oldest first."""
        return [pid for pid, r, _ in self.state()["spawned"] if r == role]

    def journal(self, name: str) -> str:
        path = self.state_dir / "journal" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self, timeout: float = 10.0) -> None:
        stop_recorded(self.state()["spawned"], self.started_at, timeout)


@contextlib.contextmanager
def simulated_systemctl(root: Path, setenv: Callable[[str, str], None], **options: Any) -> Iterator[SystemctlSim]:
    """The simulator first on PATH for the duration (setenv: e.g. pytest's monkeypatch.setenv)."""
    sim = SystemctlSim(root, **options)
    for name, value in sim.environment().items():
        setenv(name, value)
    try:
        yield sim
    finally:
        sim.cleanup()
