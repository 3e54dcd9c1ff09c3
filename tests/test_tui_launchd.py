"""`t` and `h` in the console, end to end under the launchctl and the systemctl simulator.

The manager's job is a real headless gateway process; the console — on whichever manager the
machine has (GATEWATCH_SERVICE_MANAGER here) — takes the profile over from it (`t` on the "owned by
another" screen) and hands it back (`h`, confirmed), and at each step the owner of the profile is
the one that answers Feishu.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import pytest
from textual.message import Message

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators
from launchd.agents import pid_alive, poll
from launchd.service import choose_manager
from tui.app import ConsoleApp
from tui.handover import HandoverProgress
from tui.screens import ChoiceModal
from tui.source import LocalSource

from .console_support import connected, notices
from .sim.launchctl_harness import LaunchctlSim, simulated_launchctl, write_launchd_sim_profile
from .sim.systemctl_harness import SystemctlSim, simulated_systemctl
from .support import FEISHU_SECRET, LLM_KEY, ask, present, until

pytestmark = pytest.mark.process  # the manager's jobs are real child processes under its simulator

PROFILE = "p"
# Each manager's simulator, and the first words of its take-over and its hand-back.
# The simulator's context manager, then the first words of the take-over's and of the hand-back's steps.
SimulatedManager = Callable[[Path, Callable[[str, str], None]], AbstractContextManager[LaunchctlSim | SystemctlSim]]
MANAGERS: dict[str, tuple[SimulatedManager, str, str]] = {
    "launchd": (simulated_launchctl, "booting out", "enabling"),
    "systemd": (simulated_systemctl, "stopping", "resetting"),
}


@pytest.mark.parametrize("manager_name", sorted(MANAGERS))
async def test_take_over_from_the_manager_then_hand_back(
    home: Home, sims: Simulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manager_name: str
) -> None:
    monkeypatch.setenv("GATEWATCH_LAUNCH_AGENTS_DIR", str(tmp_path / "LaunchAgents"))
    simulated, stop_word, start_word = MANAGERS[manager_name]
    lock = home.lock_file(PROFILE)
    steps: list[str] = []
    with simulated(tmp_path / "sim", monkeypatch.setenv) as simulator:
        manager = choose_manager()  # what the console will use: the simulator set the machine's manager
        assert manager.name == manager_name
        label = manager.label(PROFILE)
        write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
        manager.install(home, PROFILE, steps.append)
        try:
            assert poll(lambda: (o := read_owner(lock)) is not None and o.launchd_label == label, 30)
            first = present(read_owner(lock)).pid
            assert (await ask(sims, "to the manager")).text.startswith("[alpha]")

            gateway_made: list[Gateway] = []

            def make_gateway() -> Gateway:
                gateway_made.append(Gateway(load_profile(home, PROFILE), home, owner="console", log_to_file=False))
                return gateway_made[-1]

            app = ConsoleApp(LocalSource(PROFILE, make_gateway), home=home)
            # launchd.handover reports each step from its own thread; each reaches the app as a message.
            progress: list[str] = []

            def hook(message: Message) -> None:
                if isinstance(message, HandoverProgress):
                    progress.append(message.line)

            async with app.run_test(size=(120, 36), notifications=True, message_hook=hook) as pilot:
                await until(
                    lambda: isinstance(app.screen, ChoiceModal), 10, "owned by the manager's gateway", pilot=pilot
                )
                await pilot.press("t")
                # Each step is a notification; they expire after a few seconds, so look right away.
                await until(
                    lambda: any(n.startswith(stop_word) for n in notices(app)),
                    10,
                    "the take-over reporting its first step",
                    pilot=pilot,
                )
                await connected(pilot)
                assert progress[0].startswith(stop_word) and progress[-1].startswith("lock free"), progress
                assert all(line in notices(app) for line in progress)  # every step was shown
                taken = len(progress)
                assert not pid_alive(first) and present(read_owner(lock)).pid == os.getpid()
                assert (await ask(sims, "to the console")).text.startswith("[alpha]")

                await pilot.press("h")
                assert isinstance(app.screen, ChoiceModal)
                await pilot.press("y")
                await until(lambda: app.return_code is not None, 40, "handed back and exited", pilot=pilot)
                assert progress[taken].startswith(start_word), progress  # the hand-back's steps, as messages too
            assert app.return_code == 0 and gateway_made[-1].state == "stopped"
            owner = read_owner(lock)
            assert owner is not None and owner.launchd_label == label and owner.pid not in (first, os.getpid())
            assert (await ask(sims, "to the manager again")).text.startswith("[alpha]")
            assert simulator.spawned("job")[-1] == owner.pid
        finally:
            manager.uninstall(home, PROFILE, steps.append)
