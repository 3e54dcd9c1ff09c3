"""The console driven by its keys (Pilot), with a real in-process gateway against the simulators.

One gateway per test (lark-oapi keeps one WebSocket client per process); every wait is a poll of
an observable condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest
from rich.text import Text

import tui.source
from gateway_core.config import Home, Profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import ProfileLock, read_owner
from gateway_core.sim import Simulators
from gateway_core.sim.platform import SentMessage
from tui.app import ConsoleApp
from tui.panels import ExecutorPanel, FeishuPanel, LogPane, MessagesPanel, ModelsPanel
from tui.screens import ChoiceModal
from tui.source import LocalSource

from .console_support import INJECTION, SIZE, connected, notices, shown
from .support import ask, in_own_thread, on_gateway_loop, present, until


async def test_model_key_switches_the_model_used_for_the_next_reply(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        assert (await ask(sims, "before")).text.startswith("[alpha]")
        await pilot.press("m")
        assert isinstance(console.screen, ChoiceModal)
        await pilot.press("down", "enter")
        await until(lambda: not isinstance(console.screen, ChoiceModal), 5, "picker closed", pilot=pilot)
        await until(lambda: "model switched: alpha → beta" in notices(console), 5, "switch notice", pilot=pilot)
        assert "active beta" in shown(console.query_one(ModelsPanel))
        assert (await ask(sims, "after")).text.startswith("[beta]")
        pane = console.query_one(LogPane)
        await until(
            lambda: any("model switched: alpha -> beta" in l for l in pane.visible_lines()),
            5,
            "the switch in the log pane",
            pilot=pilot,
        )


async def test_r_restarts_the_feishu_connection(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        panel = console.query_one(FeishuPanel)
        first = gateway.feishu.snapshot().conn_id
        # Hold the new connection at endpoint discovery, so the in-between state is there to see.
        sims.feishu.refuse_reconnects(60)
        await pilot.press("r")
        await until(lambda: gateway.feishu.snapshot().restarts == 1, 10, "the restart", pilot=pilot)
        await until(lambda: "CONNECTING" in shown(panel).split("\n")[0], 10, "panel shows (RE)CONNECTING", pilot=pilot)
        await until(lambda: "restarting the Feishu connection…" in notices(console), 5, "restart notice", pilot=pilot)
        sims.feishu.refuse_reconnects(0)
        await until(lambda: shown(panel).startswith("● CONNECTED"), 20, "panel CONNECTED again", pilot=pilot)
        assert gateway.feishu.snapshot().conn_id != first
        assert "restarts 1" in shown(panel)
        assert (await ask(sims, "still there?")).text.startswith("[alpha]")


async def test_e_rebuilds_the_executor(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        await pilot.press("e")
        # The rebuild runs on the gateway's own loop: the key returns before it is done.
        await until(lambda: "executor rebuilt" in notices(console), 5, "the rebuild done", pilot=pilot)
        snap = gateway.executor.snapshot()
        assert snap.restarts == 1 and "operator request" in (snap.last_restart_cause or "")
        panel = console.query_one(ExecutorPanel).query_one("#executor-body")
        assert "REPLACED" in shown(panel) and "restarts 1" in shown(panel)
        assert (await ask(sims, "after rebuild")).text.startswith("[alpha]")


@pytest.mark.slow
async def test_demo_faults_appear_and_heal_on_screen(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        body = console.query_one(ExecutorPanel).query_one("#executor-body")

        # 1: the incident itself — the executor shut down behind the gateway's back.
        await pilot.press("f", "1")
        await until(lambda: gateway.executor.snapshot().restarts >= 1, 10, "executor replaced", pilot=pilot)
        await until(lambda: "REPLACED" in shown(body), 5, "panel shows REPLACED", pilot=pilot)
        assert "Executor shutdown" in (gateway.executor.snapshot().last_restart_cause or "") or "refused" in (
            gateway.executor.snapshot().last_restart_cause or ""
        )
        assert (await ask(sims, "after executor fault")).text.startswith("[alpha]")

        # 2: the WebSocket dropped — reconnects by itself.
        total = sims.feishu.connections_total
        await pilot.press("f", "2")
        await until(
            lambda: sims.feishu.connections_total > total and gateway.feishu.state == "connected",
            20,
            "Feishu reconnected",
            pilot=pilot,
        )
        await until(lambda: "reconnects 1" in shown(console.query_one(FeishuPanel)), 5, "reconnects 1", pilot=pilot)

        # 3: the current model fails — failover answers, the breaker shows it.
        await pilot.press("f", "3")
        await until(lambda: "model alpha now fails" in " ".join(notices(console)), 5, "fault notice", pilot=pilot)
        assert (await ask(sims, "who answers?")).text.startswith("[beta]")
        await until(lambda: "OPEN" in shown(console.query_one(ModelsPanel)), 5, "breaker OPEN", pilot=pilot)
        header = console.query_one("#header")
        # (the first reason may still be the executor's rebuild: reasons come worst first, then in order)
        await until(
            lambda: (
                "● DEGRADED" in shown(header)
                and any(r.startswith("model alpha failing") for r in present(console.opened.snapshot().health).reasons)
            ),
            5,
            "the header's verdict: degraded, and why",
            pilot=pilot,
        )

        # 7: Feishu refuses the tenant token — connected, yet nobody gets a reply: never green.
        await pilot.press("f", "7")
        sims.feishu.inject_text("anyone?")
        await until(
            lambda: "● UNHEALTHY" in shown(header) and "tenant token refused" in shown(header),
            10,
            "the header's verdict: unhealthy, and why",
            pilot=pilot,
        )
        assert "HEALTHY" not in shown(header).replace("UNHEALTHY", "")

        # 4: heal.
        await pilot.press("f", "4")
        await until(
            lambda: "all models answer again, and Feishu issues tenant tokens again" in notices(console),
            5,
            "heal notice",
            pilot=pilot,
        )
        assert (await ask(sims, "healed?")).text.startswith("[")
        await until(lambda: "tenant token" not in shown(header), 5, "the token reason gone", pilot=pilot)


async def test_refused_reconnects_show_until_healed(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        panel = console.query_one(FeishuPanel)
        await pilot.press("f", "5")
        await until(lambda: gateway.feishu.state != "connected", 10, "connection down", pilot=pilot)
        await until(lambda: "CONNECTED" not in shown(panel).split("\n")[0], 5, "panel shows it down", pilot=pilot)
        sims.feishu.refuse_reconnects(0)  # end the 30 s refusal early; the gateway must heal by itself
        await until(lambda: gateway.feishu.state == "connected", 20, "reconnected", pilot=pilot)
        await until(lambda: shown(panel).startswith("● CONNECTED"), 5, "panel CONNECTED again", pilot=pilot)


async def test_q_asks_and_each_choice_does_what_it_says(
    console: ConsoleApp, home: Home, profile: Profile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWATCH_LAUNCH_AGENTS_DIR", str(tmp_path / "LaunchAgents"))  # none installed
    no_agent = f"no LaunchAgent for profile '{profile.name}' at {tmp_path / 'LaunchAgents'}"
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        await pilot.press("q")
        assert isinstance(console.screen, ChoiceModal)
        await pilot.press("c")  # cancel: keeps serving
        assert not isinstance(console.screen, ChoiceModal) and gateway.state == "running"
        await pilot.press("q", "escape")  # Esc is cancel too, never a destructive default
        assert gateway.state == "running"
        # hand back without a LaunchAgent: refused before anything is stopped
        await pilot.press("q", "h")
        await until(lambda: any(n.startswith(no_agent) for n in notices(console)), 5, "no-agent notice", pilot=pilot)
        assert gateway.state == "running"
        await pilot.press("h")
        await until(lambda: sum(n.startswith(no_agent) for n in notices(console)) == 2, 5, "second notice", pilot=pilot)
        assert gateway.state == "running" and not isinstance(console.screen, ChoiceModal)
        await pilot.press("q", "s")  # stop: drains, releases the profile, exits
        await until(lambda: gateway.state == "stopped", 15, "gateway stopped", pilot=pilot)
        await until(lambda: console.return_code is not None, 5, "app exited", pilot=pilot)
        assert read_owner(home.lock_file(profile.name)) is None


async def test_log_level_filter_and_search(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await until(lambda: any(" INFO " in l for l in pane.visible_lines()), 5, "INFO lines", pilot=pilot)
        await pilot.press("l", "l")  # DEBUG -> INFO -> WARNING
        assert pane.min_level == "WARNING" and "≥ WARNING" in str(pane.border_title)
        assert not any(" INFO " in l for l in pane.visible_lines())
        await pilot.press("e")  # logs a WARNING: "executor rebuilt"
        await until(lambda: any("executor rebuilt" in l for l in pane.visible_lines()), 5, "warning shown", pilot=pilot)
        await pilot.press("l")  # -> ERROR
        assert not any("executor rebuilt" in l for l in pane.visible_lines())
        await pilot.press("l")  # -> DEBUG: everything again
        assert any(" INFO " in l for l in pane.visible_lines())

        await pilot.press("slash", *"REBUILT", "enter")  # case-insensitive
        await until(lambda: pane.search == "REBUILT", 5, "the search applied", pilot=pilot)
        assert "/REBUILT" in str(pane.border_title)
        visible = pane.visible_lines()
        assert visible and all("rebuilt" in l.lower() for l in visible)
        await pilot.press("escape")
        assert pane.search == "" and len(pane.visible_lines()) > len(visible)

        await pilot.press("p")  # pause: the view freezes, the collection goes on
        frozen = pane.visible_lines()
        await ask(sims, "while paused")
        await until(lambda: pane.pending > 0, 5, "pending lines counted", pilot=pilot)
        assert pane.visible_lines() == frozen and "PAUSED" in str(pane.border_title)
        await pilot.press("p")
        # Following again: the line is shown as soon as it is pulled (it may still be on its way).
        await until(
            lambda: any("while paused" in l for l in pane.lines_in_view()),
            5,
            "the line sent while paused, in view",
            pilot=pilot,
        )


async def test_markup_and_ansi_in_a_message_are_shown_literally(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=(160, 40)) as pilot:
        await connected(pilot)
        reply = (await ask(sims, INJECTION)).text
        assert reply == "[alpha] " + INJECTION  # the gateway passes it on untouched
        table = console.query_one(MessagesPanel)
        # Its row is first a "writing" one, then the finished answer: wait for the answer's.
        await until(
            lambda: table.row_count == 1 and "answered" in str(table.get_row_at(0)[-2]),
            5,
            "the answered message in the table",
            pilot=pilot,
        )
        preview = table.get_row_at(0)[-1]
        escaped = INJECTION.replace("\x1b", "\\x1b")  # the escape is made visible, not executed
        assert isinstance(preview, Text) and preview.plain == escaped and not preview.spans
        await until(
            lambda: escaped[:40] in "".join(table.render_line(y).text for y in range(table.size.height)),
            5,
            "the literal text on screen",
            pilot=pilot,
        )
        pane = console.query_one(LogPane)
        await until(lambda: any(escaped[:40] in l for l in pane.visible_lines()), 5, "literal log line", pilot=pilot)
        assert not any("\x1b" in l for l in pane.visible_lines())


async def test_the_gateway_serves_on_its_own_loop_and_answers_while_the_console_is_frozen(
    console: ConsoleApp, sims: Simulators
) -> None:
    async with console.run_test(size=SIZE) as pilot:
        gateway = await connected(pilot)
        app_loop = asyncio.get_running_loop()  # run_test runs the app on the test's loop
        assert gateway.loop is not None and gateway.loop is not app_loop
        assert await on_gateway_loop(gateway, current_thread()) is not threading.current_thread()
        # Textual keeps its own default executor (its thread workers run on it), not the held pool.
        assert getattr(app_loop, "_default_executor", None) is not gateway.executor.pool
        assert getattr(gateway.loop, "_default_executor", None) is gateway.executor.pool

        talking, frozen, released = threading.Event(), threading.Event(), threading.Event()
        thawed_by_deadline: list[bool] = []

        def freeze_the_console() -> None:  # a handler hogging the app's loop, as a stalled terminal would
            frozen.set()
            thawed_by_deadline.append(not released.wait(30))

        def talk_while_frozen() -> list[SentMessage]:
            talking.set()
            try:
                assert frozen.wait(10), "the console's loop was never frozen"
                event = sims.feishu.inject_text("while the console is frozen")
                return sims.feishu.wait_for_replies(event, 1, 20)
            finally:
                released.set()  # only now may the console's loop go on

        talker = asyncio.ensure_future(in_own_thread(talk_while_frozen))
        # Its thread must run before the freeze: a freeze first would block the very loop that starts it.
        assert await in_own_thread(talking.wait, 10), "the talking thread never started"
        console.call_later(freeze_the_console)
        (reply,) = await talker
        assert reply.text == "[alpha] while the console is frozen"
        assert thawed_by_deadline == [False]  # the answer came while the app's loop was still blocked


async def test_a_stuck_gateway_loop_is_reported_and_the_console_stays_responsive(
    console: ConsoleApp, sims: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tui.source, "OPERATION_TIMEOUT", 0.5)  # the deadline, shortened for the test
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        pane = console.query_one(LogPane)
        stuck, released = threading.Event(), threading.Event()

        def hog_the_gateways_loop() -> None:  # something on the gateway's loop that never yields
            stuck.set()
            released.wait(30)

        stuck_notice = (
            "rebuilding the executor failed: TimeoutError: the gateway did not rebuild the executor within 0.5s"
        )
        assert gateway.loop is not None
        gateway.loop.call_soon_threadsafe(hog_the_gateways_loop)
        try:
            assert await in_own_thread(stuck.wait, 5)
            await pilot.press("e")
            await until(
                lambda: stuck_notice in notices(console),
                5,
                "the stuck rebuild reported",
                pilot=pilot,
            )
            await pilot.press("l")  # the console's own keys work meanwhile
            assert pane.min_level == "INFO"
        finally:
            released.set()
        assert (await ask(sims, "unstuck")).text == "[alpha] unstuck"
        # Abandoned at its deadline, not done late behind the operator's back.
        assert gateway.executor.snapshot().restarts == 0


async def current_thread() -> threading.Thread:
    return threading.current_thread()


async def test_console_answers_while_a_modal_is_open(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("q")  # the quit confirmation waits for the operator…
        assert isinstance(console.screen, ChoiceModal)
        replies = [
            e.text for e in await asyncio.gather(*(ask(sims, f"during modal {n}", chat_id=f"oc_{n}") for n in range(3)))
        ]
        assert sorted(replies) == [f"[alpha] during modal {n}" for n in range(3)]
        assert isinstance(console.screen, ChoiceModal)  # …and the gateway kept answering meanwhile
        await pilot.press("c")


async def test_an_error_inside_the_gateway_is_shown_and_the_console_stays_up(
    console: ConsoleApp, sims: Simulators
) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)

        def broken_handover() -> None:  # the way the SDK thread hands messages to the loop
            raise ValueError("simulated gateway bug")

        assert gateway.loop is not None
        gateway.loop.call_soon_threadsafe(broken_handover)
        pane = console.query_one(LogPane)
        # The gateway's own loop handler logs it: one ERROR line, traceback included, in the pane.
        (line,) = await until(
            lambda: [l for l in pane.visible_lines() if "simulated gateway bug" in l], 5, "log line", pilot=pilot
        )
        assert " ERROR " in line and "error in a gateway task" in line and "Traceback" in line
        assert console.is_running
        assert (await ask(sims, "still answering")).text.startswith("[alpha]")


@pytest.fixture
def foreign_owner(home: Home, profile: Profile) -> Iterator[ProfileLock]:
    """The profile held by another owner (this PID here: flock conflicts per open file)."""
    lock = ProfileLock(home.lock_file(profile.name), profile.name)
    lock.acquire("headless")
    yield lock
    lock.release()


async def test_a_profile_owned_by_another_is_refused_and_never_killed(
    home: Home, profile: Profile, sims: Simulators, foreign_owner: ProfileLock
) -> None:
    lock = foreign_owner
    gateway = Gateway(profile, home, owner="console", log_to_file=False)
    app = ConsoleApp(LocalSource(profile.name, lambda: gateway), home=home)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        # The modal is pushed before it is composed: wait for its body, not just the screen.
        await until(
            lambda: isinstance(app.screen, ChoiceModal) and app.screen.query(".choice-body"),
            10,
            "the owned-by-another screen",
            pilot=pilot,
        )
        body = str(app.screen.query_one(".choice-body").render())
        assert f"already served by PID {os.getpid()} (headless" in body and "never kills" in body
        await pilot.press("t")  # the owner is no launchd job (on Linux: no launchctl at all)
        failed = "taking the profile over from its service manager failed: HandoverError"
        await until(lambda: any(n.startswith(failed) for n in notices(app)), 10, "take-over refused", pilot=pilot)
        await until(lambda: isinstance(app.screen, ChoiceModal), 5, "the same choices again", pilot=pilot)
        await pilot.press("q")
        await until(lambda: app.return_code is not None, 5, "app exited", pilot=pilot)
    assert app.return_code == 3
    assert lock.held and present(read_owner(home.lock_file(profile.name))).pid == os.getpid()


async def test_attaching_to_an_owner_without_a_socket_follows_its_log_file(
    home: Home, profile: Profile, sims: Simulators, foreign_owner: ProfileLock
) -> None:
    lock = foreign_owner  # an owner whose control socket is gone, but whose log still grows
    log_file = home.log_file(profile.name)
    log_file.write_text("2026-11-25 10:00:00,000 INFO gatewatch.gateway written before the console\n")
    app = ConsoleApp(LocalSource(profile.name, lambda: Gateway(profile, home, owner="console")), home=home)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(lambda: isinstance(app.screen, ChoiceModal), 10, "the owned-by-another screen", pilot=pilot)
        await pilot.press("a")
        await until(lambda: app.phase == "attached", 10, "attached", pilot=pilot)
        pane = app.query_one(LogPane)
        await until(
            lambda: any("written before the console" in l for l in pane.visible_lines()),
            10,
            "the log file's backlog",
            pilot=pilot,
        )
        with log_file.open("a") as handle:
            handle.write("2026-11-25 10:00:01,000 WARNING gatewatch.feishu [bold]written while attached\n")
        await until(
            lambda: any("[bold]written while attached" in l for l in pane.visible_lines()),
            10,
            "a new line from the file, literally",
            pilot=pilot,
        )
        # Each line once, with its own time, level and logger — not under a second prefix.
        (line,) = [l for l in pane.visible_lines() if "written while attached" in l]
        assert line.count("WARNING") == 1 and "log file" not in line and "2026-11-25" not in line
        # The header follows on its own refresh timer: wait for it, as the operator would.
        await until(
            lambda: "UNREACHABLE" in shown(app.query_one("#header")),
            5,
            "the header saying the gateway is unreachable",
            pilot=pilot,
        )
        header = shown(app.query_one("#header"))
        assert f"attached to PID {os.getpid()} (headless)" in header
        assert f"no answer from PID {os.getpid()}" in header and "cannot connect" in header
        assert app.screen.has_class("-stale")
        await pilot.press("q")  # detaches: nothing to stop, nothing to confirm
        await until(lambda: app.return_code is not None, 5, "app exited", pilot=pilot)
    assert app.return_code == 0
    assert lock.held and present(read_owner(home.lock_file(profile.name))).pid == os.getpid()


async def test_a_stop_over_the_control_socket_stops_the_console_cleanly(
    console: ConsoleApp, home: Home, profile: Profile
) -> None:
    from gateway_core.control import arequest

    async with console.run_test(size=SIZE, notifications=True) as pilot:
        gateway = await connected(pilot)
        answer = await arequest(home.socket_file(profile.name), "stop")
        assert answer["ok"] is True and answer["stopping"] is True
        await until(
            lambda: "stop requested over the control socket: stopping" in notices(console),
            5,
            "the console saying why it stops",
            pilot=pilot,
        )
        await until(lambda: gateway.state == "stopped", 15, "gateway stopped", pilot=pilot)
        await until(lambda: console.return_code is not None, 5, "console exited", pilot=pilot)


async def test_an_error_shown_on_screen_never_contains_a_secret(console: ConsoleApp, profile: Profile) -> None:
    from .support import FEISHU_SECRET

    async with console.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        console.report("talking to Feishu", RuntimeError(f"refused app_secret={FEISHU_SECRET}"))
        await until(lambda: any("talking to Feishu" in n for n in notices(console)), 5, "the notification", pilot=pilot)
        shown_errors = [n for n in notices(console) if "talking to Feishu" in n]
        assert shown_errors == ["talking to Feishu failed: RuntimeError: refused app_secret=***"]
        assert all(FEISHU_SECRET not in n for n in notices(console))
        pane = console.query_one(LogPane)
        await until(
            lambda: any("app_secret=***" in l for l in pane.visible_lines()), 5, "redacted log line", pilot=pilot
        )
        assert not any(FEISHU_SECRET in l for l in pane.visible_lines())
