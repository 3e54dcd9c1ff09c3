"""The headless runner as a real process: ownership, SIGTERM drain, fatal auth, no secret leaks."""

import asyncio
import contextlib
import signal

import pytest

from gateway_core.config import Home, load_profile
from gateway_core.control import ControlError
from gateway_core.gateway import Gateway
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators

from .support import FEISHU_SECRET, LLM_KEY, HeadlessProcess, present, until, write_profile

pytestmark = pytest.mark.process  # every test runs a headless gateway as a child process


def test_second_run_for_the_same_profile_exits_3_and_the_first_is_unharmed(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as first:
        first.wait_for_line("Feishu connected")
        second = HeadlessProcess.start(home, "p")
        assert second.process.wait(30) == 3
        line = second.wait_for_line("already served by")
        assert f"PID {first.process.pid} (headless" in line and "never kills" in line
        assert len(second.lines) == 1
        # The first one still owns the profile and still answers.
        assert first.process.poll() is None and present(read_owner(home.lock_file("p"))).pid == first.process.pid
        event = sims.feishu.inject_text("are you still there?")
        assert sims.feishu.wait_for_replies(event, 1, 15)[0].text == "[alpha] are you still there?"
        assert first.terminate_and_wait() == 0


def test_sigterm_during_an_in_flight_request_still_sends_the_reply_and_exits_0(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.llm.hold("alpha")
        event = sims.feishu.inject_text("answer me before you go")
        sims.llm.wait_in_flight("alpha", 1, 10)
        gateway.process.send_signal(15)
        # The WebSocket closes first (no new events), the in-flight answer is still finished.
        sims.feishu.wait_for(lambda: sims.feishu.live_connections == 0, 10)
        sims.llm.release("alpha")
        assert [r.text for r in sims.feishu.wait_for_replies(event, 1, 15)] == ["[alpha] answer me before you go"]
        assert gateway.process.wait(20) == 0
        assert read_owner(home.lock_file("p")) is None


def test_events_arriving_while_stopping_are_redelivered_to_the_next_owner(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        assert gateway.terminate_and_wait() == 0
        late = sims.feishu.inject_text("sent while nobody listens")
        with HeadlessProcess.start(home, "p") as successor:
            successor.wait_for_line("Feishu connected")
            assert [r.text for r in sims.feishu.wait_for_replies(late, 1, 15)] == ["[alpha] sent while nobody listens"]
            assert successor.terminate_and_wait() == 0


def test_bad_app_secret_fails_with_the_servers_reason_and_no_retry_loop(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    sims.feishu.reject_auth(True)
    with HeadlessProcess.start(home, "p") as gateway:
        # Bounded like a start-up: the SDK import alone takes seconds on a loaded machine.
        assert gateway.process.wait(HeadlessProcess.STARTUP_DEADLINE + 15) == 1
        line = gateway.wait_for_line("refused the app credentials")
        assert "invalid app_id or app_secret" in line
        assert sims.feishu.endpoint_requests == 1  # failed once, did not hammer the server


async def test_bad_secret_in_process_is_failed_with_reason_and_not_retried(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    sims.feishu.reject_auth(True)
    gateway = Gateway(load_profile(home, "p"), home, owner="console")
    await gateway.start()
    try:
        # Refused, not retried: the attempt ends in `failed` (it may take a while on a busy machine).
        snap = await until(
            lambda: (s := gateway.feishu.snapshot()).state in ("failed", "connected") and s,
            30,
            "the refused connect attempt to end",
        )
        assert snap
        assert snap.state == "failed" and "invalid app_id or app_secret" in present(snap.last_error)
        # Several supervisor rounds later, still one attempt: no hot retry loop.
        for _ in range(5):
            await gateway.executor.probe()
            assert gateway.feishu.check_liveness() is None
        assert sims.feishu.endpoint_requests == 1
    finally:
        await gateway.stop(drain_timeout=1)


def test_secrets_appear_in_no_log_file_and_no_output(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.llm.set_behaviour("alpha", "error")
        event = sims.feishu.inject_text(f"please repeat {FEISHU_SECRET}")
        sims.feishu.wait_for_replies(event, 1, 15)
        sims.feishu.drop_connection()
        sims.feishu.wait_for_connection(2, 15)
        assert gateway.terminate_and_wait() == 0
    logs = list(home.logs.glob("*"))
    assert logs, "the gateway wrote no log"
    text = "".join(p.read_text() for p in logs) + "\n".join(gateway.lines)
    assert "model alpha failed" in text and "Feishu connected" in text
    assert FEISHU_SECRET not in text and LLM_KEY not in text
    assert "please repeat ***" in text  # even when a user pastes it into a message


def test_until_connected_the_runner_says_why_every_report_interval(home: Home, sims: Simulators) -> None:
    sims.feishu.refuse_reconnects(60)  # endpoint discovery answers "system busy"
    write_profile(home, "p", sims, extra="not_connected_report = 0.5\n")
    with HeadlessProcess.start(home, "p") as gateway:
        # Repeated, with the reason, while it stays down.
        reports = gateway.wait_for_lines("not connected yet: ", 2, timeout=20)
        assert all(len(line) > len("gatewatch: not connected yet: ") for line in reports), reports
        sims.feishu.refuse_reconnects(0)
        gateway.wait_for_line("Feishu connected", timeout=30)
        assert gateway.terminate_and_wait() == 0


def test_sigterm_with_a_console_attached_ends_without_a_traceback(home: Home, sims: Simulators) -> None:
    """The attached console's subscription is cancelled at stop; that must not print a traceback."""
    from gateway_core.control import subscribe

    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")

        async def attach_then_terminate() -> None:
            stream = subscribe(home.socket_file("p"))
            first = await asyncio.wait_for(stream.__anext__(), 10)  # subscribed, like the console
            assert first["ok"] is True
            gateway.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(StopAsyncIteration, ControlError, ConnectionError):
                async with asyncio.timeout(20):
                    async for _ in stream:
                        pass  # until the gateway closes the subscription
            await stream.aclose()

        asyncio.run(attach_then_terminate())
        assert gateway.process.wait(20) == 0
        gateway.wait_for_line("stopped")
        assert not [line for line in gateway.lines if "Traceback" in line or "Exception" in line], gateway.lines


def test_a_second_profile_on_an_app_already_served_exits_3_naming_the_server_and_kill_9_frees_the_app(
    home: Home, sims: Simulators
) -> None:
    # Two profiles, one Feishu app: Feishu would split the app's events between them at random.
    write_profile(home, "first", sims)
    write_profile(home, "second", sims)
    with HeadlessProcess.start(home, "first") as first:
        first.wait_for_line("Feishu connected")
        with HeadlessProcess.start(home, "second") as second:
            assert second.process.wait(HeadlessProcess.STARTUP_DEADLINE) == 3
            line = second.wait_for_line("already served by")
            assert len(second.lines) == 1
            assert f"app {sims.feishu.app_id}" in line and "profile 'first'" in line
            assert f"PID {first.process.pid} (headless" in line
        assert read_owner(home.lock_file("second")) is None  # the refused one let its profile go too
        assert sims.feishu.live_connections == 1
        first.process.kill()  # SIGKILL: no clean-up runs; the kernel drops both flocks
        first.process.wait(10)
    with HeadlessProcess.start(home, "second") as successor:
        successor.wait_for_line("Feishu connected")
        assert present(read_owner(home.lock_file("second"))).pid == successor.process.pid
        assert successor.terminate_and_wait() == 0
