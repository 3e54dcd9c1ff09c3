"""What the hand-over tests (launchd and systemd) share: the profile they use, a watcher that
fails the moment two gateways own it, and waiting until the service manager's PID serves it."""

from __future__ import annotations

import os
import threading
from typing import Callable

import pytest

from gateway_core.config import Home
from gateway_core.ownership import read_owner
from launchd.agents import (
    pid_alive,
    poll,
)
from launchd.handover import headless_feishu_connected
from launchd.launchctl import Launchctl
from launchd.service import JobView

from .sim.launchctl_harness import LaunchctlSim
from .sim.systemctl_harness import SystemctlSim

pytestmark = pytest.mark.process  # launchd jobs are real child processes under the launchctl simulator

PROFILE = "p"


class OwnershipWatch:
    """Samples, every 20 ms, the live gateways for the profile: launchd's jobs and ours."""

    def __init__(self, home: Home, launchctl_sim: LaunchctlSim | SystemctlSim) -> None:
        self.home, self.sim = home, launchctl_sim
        self.console_serving = threading.Event()  # set while our in-process gateway may serve
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "OwnershipWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            serving = [pid for pid in self.sim.spawned("job") if pid_alive(pid)]
            if self.console_serving.is_set():
                serving.append(os.getpid())
            owner = read_owner(self.home.lock_file(PROFILE))
            self.samples += 1
            if len(serving) > 1:
                self.violations.append(f"two gateways alive: {serving}")
            if owner is not None and owner.pid not in serving and not self._recorded(owner.pid):
                self.violations.append(f"lock held by {owner.pid}, not a known gateway {serving}")

    def _recorded(self, pid: int) -> bool:
        """Whether the simulator records `pid` as its job within a moment: a gateway that starts
        fast (the lean SDK load) can hold the lock before its simulator has written it down."""
        return poll(lambda: pid in self.sim.spawned("job"), 2.0)


def pid_serving(
    home: Home, job: Callable[[], JobView | None], manager: str, other_than: int | None = None, timeout: float = 20
) -> int:
    """The service manager's PID for the profile's job once it holds the profile and says Feishu
    is connected (`job` asks the manager: launchctl print, systemctl show)."""
    found: dict[str, int] = {}

    def ready() -> bool:
        state = job()
        if not state or not state.running or state.pid is None or state.pid == other_than:
            return False
        owner = read_owner(home.lock_file(PROFILE))
        if owner and owner.pid == state.pid and headless_feishu_connected(home, PROFILE, state.pid):
            found["pid"] = state.pid
            return True
        return False

    assert poll(ready, timeout), f"{manager}'s gateway is not serving: {job()}"
    return found["pid"]


def launchd_pid_serving(
    home: Home, lc: Launchctl, label: str, other_than: int | None = None, timeout: float = 20
) -> int:
    return pid_serving(home, lambda: lc.print_job(label), "launchd", other_than, timeout)
