"""Attach mode: the console on a headless gateway in another process, through its control socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Iterator, cast

import pytest

from gateway_core.config import Home
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators
from tui.app import ConsoleApp, console_source, local_source_maker
from tui.panels import ExecutorPanel, FeishuPanel, LogPane, ModelsPanel
from tui.remote import RemoteSource
from tui.screens import ChoiceModal
from tui.source import GatewaySource

from .console_support import SIZE, notices, shown
from .support import HeadlessProcess, ask, in_own_thread, present, until, write_profile

pytestmark = pytest.mark.process  # every test attaches to a headless gateway in a child process


async def test_attached_console_shows_and_operates_a_headless_gateway(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as headless:
        await in_own_thread(headless.wait_for_line, "Feishu connected")
        owner = read_owner(home.lock_file("p"))
        assert owner is not None
        assert owner.pid == headless.process.pid
        app = ConsoleApp(RemoteSource(home, "p", owner), home=home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(lambda: app.phase == "attached", 10, "attached", pilot=pilot)
            header = app.query_one("#header")
            await until(
                lambda: f"attached to PID {headless.process.pid} (headless)" in shown(header),
                5,
                "the attach marker",
                pilot=pilot,
            )
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
            await until(
                lambda: "REPLACED" in shown(body) and "restarts 1" in shown(body), 10, "rebuild shown", pilot=pilot
            )
            assert (await ask(sims, "still answering")).text == "[beta] still answering"

            # The live log streams over the socket, shown literally.
            pane = app.query_one(LogPane)
            await until(lambda: any("still answering" in l for l in pane.visible_lines()), 10, "live log", pilot=pilot)

            await pilot.press("q")  # detach: the gateway keeps serving
            await until(lambda: app.return_code is not None, 5, "console exited", pilot=pilot)
        assert app.return_code == 0
        assert headless.process.poll() is None
        assert present(read_owner(home.lock_file("p"))).pid == headless.process.pid
        assert (await ask(sims, "after the console left")).text == "[beta] after the console left"
        assert headless.terminate_and_wait() == 0


def test_the_console_attaches_when_a_live_gateway_owns_the_profile(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    local = cast(GatewaySource, object())  # a stand-in: only its identity is compared
    assert console_source(home, "p", lambda: local) is local  # nobody owns it: serve it here
    with HeadlessProcess.start(home, "p") as headless:
        headless.wait_for_line("serving profile")
        source = console_source(home, "p", lambda: local)
        assert isinstance(source, RemoteSource) and source.owner.pid == headless.process.pid
        assert source.describe() == f"attached to PID {headless.process.pid} (headless)"
        assert headless.terminate_and_wait() == 0


def frozen(process: subprocess.Popen[str]) -> "contextlib.AbstractContextManager[None]":
    """SIGSTOP a gateway we started; SIGCONT it whatever happens (the test's own child only)."""

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        os.kill(process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)

    return stopped()


def attached_console(home: Home, name: str) -> ConsoleApp:
    """A console attached to the profile's live owner, able to serve the profile itself once it is gone."""
    owner = read_owner(home.lock_file(name))
    return ConsoleApp(RemoteSource(home, name, present(owner)), home=home, make_local=local_source_maker(home, name))


async def test_a_frozen_owner_is_unreachable_within_5s_and_answers_again(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as headless:
        await in_own_thread(headless.wait_for_line, "Feishu connected")
        app = ConsoleApp(RemoteSource(home, "p", present(read_owner(home.lock_file("p")))), home=home)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            header = app.query_one("#header")
            await until(lambda: "● HEALTHY" in shown(header), 10, "the owner's verdict", pilot=pilot)
            with frozen(headless.process):
                # 5 s is the promise: the stream's silence limit plus a refresh, with room to spare.
                await until(lambda: "● UNREACHABLE" in shown(header), 5, "UNREACHABLE after SIGSTOP", pilot=pilot)
                assert "HEALTHY" not in shown(header) and f"no answer from PID {headless.process.pid}" in shown(header)
                assert app.screen.has_class("-stale")
                assert app.query_one(FeishuPanel).border_subtitle == "stale"
                await until(
                    lambda: any("its control socket is silent" in n for n in notices(app)), 2, "said", pilot=pilot
                )
                assert not app.check_action("serve_here", ())  # the frozen owner still holds the lock
            await until(
                lambda: (
                    "● HEALTHY" in shown(header)
                    and f"re-attached to PID {headless.process.pid} (headless)" in notices(app)
                ),
                10,
                "re-attached after SIGCONT, and said so",
                pilot=pilot,
            )
            assert not app.screen.has_class("-stale") and app.query_one(FeishuPanel).border_subtitle is None
            # Lines are shown once, though the re-attach sent the gateway's recent log again.
            pane = app.query_one(LogPane)
            starts = [line for line in pane.visible_lines() if "gateway starting" in line]
            assert len(starts) == 1, starts
            await pilot.press("q")
        assert headless.terminate_and_wait() == 0


async def test_an_exited_owner_is_said_and_a_new_one_is_reattached(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    first = HeadlessProcess.start(home, "p")
    try:
        await in_own_thread(first.wait_for_line, "Feishu connected")
        app = attached_console(home, "p")
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            header = app.query_one("#header")
            await until(lambda: "● HEALTHY" in shown(header), 10, "attached", pilot=pilot)
            assert await in_own_thread(first.terminate_and_wait) == 0
            await until(lambda: "● EXITED" in shown(header), 5, "the exit said", pilot=pilot)
            assert f"gateway exited: PID {first.process.pid} no longer owns the profile" in shown(header)
            await until(
                lambda: any("press s to serve the profile here" in n for n in notices(app)), 2, "offer", pilot=pilot
            )
            assert app.check_action("serve_here", ()) and app.screen.has_class("-stale")
            with HeadlessProcess.start(home, "p") as second:
                await in_own_thread(second.wait_for_line, "Feishu connected")
                # The notice is checked with the header: a toast lives 5 s, a loaded machine is slow.
                await until(
                    lambda: (
                        f"attached to PID {second.process.pid}" in shown(header)
                        and f"re-attached to PID {second.process.pid} (headless)" in notices(app)
                    ),
                    10,
                    "the new owner re-attached, and said so",
                    pilot=pilot,
                )
                await until(lambda: "● HEALTHY" in shown(header), 10, "its verdict", pilot=pilot)
                assert not app.screen.has_class("-stale") and not app.check_action("serve_here", ())
                assert (await ask(sims, "new owner?")).text == "[alpha] new owner?"
                await pilot.press("q")
                assert second.terminate_and_wait() == 0
    finally:
        first.kill()


async def test_serve_here_takes_the_profile_once_the_owner_is_gone(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as headless:
        await in_own_thread(headless.wait_for_line, "Feishu connected")
        app = attached_console(home, "p")
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            header = app.query_one("#header")
            await until(lambda: "● HEALTHY" in shown(header), 10, "attached", pilot=pilot)
            assert await in_own_thread(headless.terminate_and_wait) == 0
            await until(lambda: app.check_action("serve_here", ()), 5, "serve here offered", pilot=pilot)
            await pilot.press("s")
            await until(lambda: app.phase == "serving", 15, "serving here", pilot=pilot)
            await until(
                lambda: "● HEALTHY" in shown(header) and "console, PID" in shown(header),
                15,
                "this console's own verdict",
                pilot=pilot,
            )
            assert present(read_owner(home.lock_file("p"))).pid == os.getpid()
            assert (await ask(sims, "served here?")).text == "[alpha] served here?"
            await pilot.press("q")
            await until(lambda: isinstance(app.screen, ChoiceModal), 5, "quit confirm", pilot=pilot)
            await pilot.press("s")  # stop the gateway and quit
            await until(lambda: app.return_code is not None, 20, "console exited", pilot=pilot)
    assert read_owner(home.lock_file("p")) is None
