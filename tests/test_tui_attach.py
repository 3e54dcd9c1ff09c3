"""Attach mode: the console on a headless gateway in another process, through its control socket."""

from __future__ import annotations

import pytest

from gateway_core.ownership import read_owner
from tui.app import ConsoleApp, console_source
from tui.panels import ExecutorPanel, FeishuPanel, LogPane, ModelsPanel
from tui.remote import RemoteSource
from tui.screens import ChoiceModal

from .support import HeadlessProcess, ask, in_own_thread, until, write_profile
from .test_tui_console import SIZE, notices, shown

pytestmark = pytest.mark.process  # every test attaches to a headless gateway in a child process


async def test_attached_console_shows_and_operates_a_headless_gateway(home, sims):
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as headless:
        await in_own_thread(headless.wait_for_line, "Feishu connected")
        owner = read_owner(home.lock_file("p"))
        assert owner.pid == headless.process.pid
        app = ConsoleApp(RemoteSource(home, "p", owner), home=home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(lambda: app.phase == "attached", 10, "attached", pilot=pilot)
            header = app.query_one("#header")
            await until(lambda: f"attached to PID {headless.process.pid} (headless)" in shown(header), 5,
                        "the attach marker", pilot=pilot)
            feishu = app.query_one(FeishuPanel)
            await until(lambda: shown(feishu).startswith("● CONNECTED"), 10, "remote Feishu state", pilot=pilot)

            # m: the remote gateway answers the next message with the chosen model.
            await pilot.press("m")
            await until(lambda: isinstance(app.screen, ChoiceModal), 5, "model picker", pilot=pilot)
            await pilot.press("down", "enter")
            await until(lambda: "model switched: alpha → beta" in notices(app), 10, "switch notice", pilot=pilot)
            assert (await ask(sims, "which model now?")).text == "[beta] which model now?"
            await until(lambda: "active beta" in shown(app.query_one(ModelsPanel)), 5, "models panel", pilot=pilot)

            # r: the remote connection is restarted (a new conn_id on the simulator).
            first = sims.feishu.current_conn_id
            await pilot.press("r")
            await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.current_conn_id not in (None, first), 15)
            await until(lambda: "restarts 1" in shown(feishu), 10, "restart shown", pilot=pilot)

            # e: the remote executor is rebuilt, and the panel says so.
            await pilot.press("e")
            body = app.query_one(ExecutorPanel).query_one("#executor-body")
            await until(lambda: "REPLACED" in shown(body) and "restarts 1" in shown(body), 10, "rebuild shown", pilot=pilot)
            assert (await ask(sims, "still answering")).text == "[beta] still answering"

            # The live log streams over the socket, shown literally.
            pane = app.query_one(LogPane)
            await until(lambda: any("still answering" in l for l in pane.visible_lines()), 10, "live log", pilot=pilot)

            await pilot.press("q")  # detach: the gateway keeps serving
            await until(lambda: app.return_code is not None, 5, "console exited", pilot=pilot)
        assert app.return_code == 0
        assert headless.process.poll() is None
        assert read_owner(home.lock_file("p")).pid == headless.process.pid
        assert (await ask(sims, "after the console left")).text == "[beta] after the console left"
        assert headless.terminate_and_wait() == 0


def test_the_console_attaches_when_a_live_gateway_owns_the_profile(home, sims):
    write_profile(home, "p", sims)
    local = object()
    assert console_source(home, "p", lambda: local) is local  # nobody owns it: serve it here
    with HeadlessProcess.start(home, "p") as headless:
        headless.wait_for_line("serving profile")
        source = console_source(home, "p", lambda: local)
        assert isinstance(source, RemoteSource) and source.owner.pid == headless.process.pid
        assert source.describe() == f"attached to PID {headless.process.pid} (headless)"
        assert headless.terminate_and_wait() == 0
