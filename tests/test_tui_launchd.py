"""`t` and `h` in the console, end to end under the launchctl simulator.

launchd's job is a real headless gateway process; the console takes the profile over from it
(`t` on the "owned by another" screen) and hands it back (`h`, confirmed), and at each step the
owner of the profile is the one that answers Feishu.
"""

from __future__ import annotations

import os

import pytest

from gateway_core.config import load_profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import read_owner
from launchd.agents import AgentSettings, install, pid_alive, poll, uninstall
from launchd.plist import job_label
from .sim.launchctl_harness import simulated_launchctl, write_launchd_sim_profile
from tui.app import ConsoleApp
from tui.handover import HandoverProgress
from tui.screens import ChoiceModal
from tui.source import LocalSource

from .support import FEISHU_SECRET, LLM_KEY, ask, until
from .test_tui_console import connected, notices

pytestmark = pytest.mark.process  # launchd jobs are real child processes under the launchctl simulator

PROFILE = "p"


async def test_take_over_from_launchd_then_hand_back(home, sims, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWATCH_LAUNCH_AGENTS_DIR", str(tmp_path / "LaunchAgents"))
    settings = AgentSettings.default()
    label, lock = job_label(PROFILE), home.lock_file(PROFILE)
    steps: list[str] = []
    with simulated_launchctl(tmp_path / "sim", monkeypatch.setenv) as launchctl_sim:
        write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
        install(home, PROFILE, settings, steps.append)
        try:
            assert poll(lambda: (o := read_owner(lock)) is not None and o.launchd_label == label, 30)
            first = read_owner(lock).pid
            assert (await ask(sims, "to launchd")).text.startswith("[alpha]")

            gateway_made: list[Gateway] = []

            def make_gateway() -> Gateway:
                gateway_made.append(Gateway(load_profile(home, PROFILE), home, owner="console", log_to_file=False))
                return gateway_made[-1]

            app = ConsoleApp(LocalSource(PROFILE, make_gateway), home=home)
            # launchd.handover reports each step from its own thread; each reaches the app as a message.
            progress: list[str] = []

            def hook(message) -> None:
                if isinstance(message, HandoverProgress):
                    progress.append(message.line)

            async with app.run_test(size=(120, 36), notifications=True, message_hook=hook) as pilot:
                await until(lambda: isinstance(app.screen, ChoiceModal), 10, "owned by launchd's gateway", pilot=pilot)
                await pilot.press("t")
                # Each step is a notification; they expire after a few seconds, so look right away.
                await until(
                    lambda: any(n.startswith("booting out") for n in notices(app)),
                    10,
                    "the take-over reporting its first step",
                    pilot=pilot,
                )
                await connected(pilot)
                assert progress[0].startswith("booting out") and progress[-1].startswith("lock free"), progress
                assert all(line in notices(app) for line in progress)  # every step was shown
                taken = len(progress)
                assert not pid_alive(first) and read_owner(lock).pid == os.getpid()
                assert (await ask(sims, "to the console")).text.startswith("[alpha]")

                await pilot.press("h")
                assert isinstance(app.screen, ChoiceModal)
                await pilot.press("y")
                await until(lambda: app.return_code is not None, 40, "handed back and exited", pilot=pilot)
                assert progress[taken].startswith("enabling"), progress  # the hand-back's steps, as messages too
            assert app.return_code == 0 and gateway_made[-1].state == "stopped"
            owner = read_owner(lock)
            assert owner is not None and owner.launchd_label == label and owner.pid not in (first, os.getpid())
            assert (await ask(sims, "to launchd again")).text.startswith("[alpha]")
            assert launchctl_sim.spawned("job")[-1] == owner.pid
        finally:
            uninstall(home, PROFILE, settings, steps.append)
