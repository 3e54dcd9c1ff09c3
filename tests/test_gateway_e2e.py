"""The gateway end to end: real lark-oapi over a real WebSocket, real HTTP to the LLM."""

import asyncio
import time

import pytest

from gateway_core.config import Home
from gateway_core.gateway import Gateway
from gateway_core.judging import APOLOGY
from gateway_core.sim import Simulators
from gateway_core.states import Outcome

from .support import FEISHU_SECRET, ask, in_own_thread, present, until


async def test_message_in_gets_exactly_one_reply_with_the_models_text(gateway: Gateway, sims: Simulators) -> None:
    event, replies = await ask(sims, "hello there", gateway=gateway)
    assert [r.text for r in replies] == ["[alpha] hello there"]
    assert sims.feishu.is_acked(event)
    snap = gateway.snapshot()
    assert snap.pipeline.answered == 1
    (activity,) = snap.pipeline.activity
    assert (activity.model, activity.outcome, activity.preview) == ("alpha", "answered", "hello there")


async def test_redelivered_event_still_gets_one_reply(gateway: Gateway, sims: Simulators) -> None:
    event, _ = await ask(sims, "once only", gateway=gateway)
    sims.feishu.redeliver(event)
    # The SDK acks only after handing the event over, so once the second delivery is acked the
    # gateway's loop has the duplicate queued; one drain lets it run.
    await in_own_thread(sims.feishu.wait_for, lambda: len(sims.feishu.ack_codes(event)) >= 2, 10)
    assert gateway.pipeline is not None
    await gateway.pipeline.drain(5)
    assert gateway.snapshot().pipeline.duplicates == 1
    assert len(sims.feishu.replies_to(event)) == 1


async def test_a_reply_that_failed_every_attempt_is_sent_again_by_the_same_owner(
    gateway: Gateway, sims: Simulators
) -> None:
    """Feishu refused the tenant token for a while: the stored answer goes out once it is back,
    without a restart, a second LLM call or a second reply."""
    assert gateway.pipeline is not None
    gateway.pipeline.redelivery_interval = 0.5  # 30 s in service; short here
    sims.feishu.refuse_tokens()  # the app secret was reset: replies fail, the connection stays
    event = sims.feishu.inject_text("are you there?")
    await until(lambda: gateway.snapshot().pipeline.reply_failures == 1, 20, "the reply given up on")
    assert sims.feishu.replies_to(event) == []
    sims.feishu.refuse_tokens(False)  # fixed, and nobody restarts the gateway
    (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
    assert reply.text == "[alpha] are you there?"
    await until(lambda: gateway.snapshot().pipeline.answered == 1, 5, "recorded as answered")
    assert gateway.journal is not None
    assert gateway.journal.unfinished() == []
    assert len([r for r in sims.llm.requests if "are you there?" in str(r.messages)]) == 1  # answered once
    assert len(sims.feishu.replies_to(event)) == 1


async def test_an_error_nobody_awaits_on_the_gateways_loop_is_logged_redacted_with_its_traceback(
    gateway: Gateway, sims: Simulators
) -> None:
    def broken_handover() -> None:  # a callback the SDK thread schedules, a task nobody awaits
        raise ValueError(f"bad frame for app_secret={FEISHU_SECRET}")

    assert gateway.loop is not None
    gateway.loop.call_soon(broken_handover)
    assert gateway.logging is not None
    ring = gateway.logging.ring
    (line,) = await until(lambda: [l for l in ring.since(0) if "bad frame" in l.message], 5, "the error logged")
    assert (line.level, line.logger) == ("ERROR", "gatewatch.gateway")
    assert "error in a gateway task" in line.message and "Traceback" in line.message
    assert "app_secret=***" in line.message and FEISHU_SECRET not in line.message
    assert "\n" not in line.message  # one line: the traceback folded
    assert (await ask(sims, "still serving?", gateway=gateway)).text == "[alpha] still serving?"


async def test_held_executor_shut_down_behind_the_gateways_back(gateway: Gateway, sims: Simulators) -> None:
    gateway.executor.pool.shutdown()  # the seed bug
    # Answers no longer need the pool (model and replies are asyncio), and the supervisor's next
    # probe (every 0.2 s here) finds the dead pool and rebuilds it.
    _, replies = await ask(sims, "still there?", gateway=gateway)
    assert replies[0].text == "[alpha] still there?"
    await until(lambda: gateway.snapshot().executor.restarts == 1, 5, "the dead pool rebuilt")
    assert await gateway.executor.run(lambda: "works") == "works"
    assert gateway.snapshot().executor.restarts == 1


async def test_loop_default_executor_shut_down_behind_the_gateways_back(gateway: Gateway, sims: Simulators) -> None:
    loop = asyncio.get_running_loop()
    await loop.shutdown_default_executor()  # what set the incident off
    _, replies = await ask(sims, "and now?", gateway=gateway)
    assert replies[0].text == "[alpha] and now?"
    await until(lambda: gateway.snapshot().executor.restarts == 1, 5, "the loop healed")
    snap = gateway.snapshot().executor
    assert snap.restarts == 1 and snap.state == "replaced"
    assert await loop.run_in_executor(None, lambda: "healed") == "healed"


async def test_dropped_websocket_reconnects_and_the_next_message_is_answered(
    gateway: Gateway, sims: Simulators
) -> None:
    first = gateway.feishu.snapshot().conn_id
    sims.feishu.drop_connection()
    await in_own_thread(sims.feishu.wait_for_connection, 2, 15)
    assert await gateway.wait_connected(15)
    _, replies = await ask(sims, "after the drop", gateway=gateway)
    assert replies[0].text == "[alpha] after the drop"
    snap = gateway.snapshot().feishu
    assert snap.reconnects == 1 and snap.conn_id != first


async def test_restart_reconnects_promptly(gateway: Gateway, sims: Simulators) -> None:
    before = gateway.feishu.snapshot()
    started = time.monotonic()
    assert await gateway.restart_feishu("test")
    assert await gateway.wait_connected(10)
    after = gateway.feishu.snapshot()
    assert after.restarts == before.restarts + 1 and after.conn_id != before.conn_id
    assert time.monotonic() - started < 10
    # The old socket is closed, not leaked (by the abandoned attempt, which nobody waits for).
    await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.live_connections == 1, 10)
    # Closing the old SDK loop must not take the held pool down with it.
    await gateway.executor.probe()
    assert gateway.snapshot().executor.restarts == 0
    _, replies = await ask(sims, "after restart", gateway=gateway)
    assert replies[0].text == "[alpha] after restart"


async def test_primary_model_failing_is_answered_by_the_next(gateway: Gateway, sims: Simulators) -> None:
    sims.llm.set_behaviour("alpha", "error")
    _, replies = await ask(sims, "failover please", gateway=gateway)
    assert replies[0].text == "[beta] failover please"
    models = {m.name: m for m in gateway.snapshot().models.models}
    assert models["alpha"].errors == 1 and models["alpha"].breaker == "open"
    # The breaker keeps the dead model from being tried first on the next message.
    _, replies = await ask(sims, "again", gateway=gateway)
    assert replies[0].text == "[beta] again"
    assert len(sims.llm.requests_for("alpha")) == 1


async def test_every_model_down_gets_an_apology_never_silence(gateway: Gateway, sims: Simulators) -> None:
    sims.llm.set_behaviour("alpha", "error")
    sims.llm.set_behaviour("beta", "error")
    event, replies = await ask(sims, "anyone?", gateway=gateway)
    assert [r.text for r in replies] == [APOLOGY]
    assert gateway.snapshot().pipeline.activity[-1].outcome == Outcome.APOLOGISED


async def test_non_text_message_gets_a_polite_reply(gateway: Gateway, sims: Simulators) -> None:
    from gateway_core.messages import unreadable_reply

    _, replies = await ask(sims, "", message_type="sticker", content='{"file_key": "stk_x"}', gateway=gateway)
    assert [r.text for r in replies] == [unreadable_reply("sticker")]


async def test_switch_model_while_a_request_is_in_flight(gateway: Gateway, sims: Simulators) -> None:
    sims.llm.hold("alpha")
    slow = sims.feishu.inject_text("slow one")
    await in_own_thread(sims.llm.wait_in_flight, "alpha", 1, 10)
    assert gateway.switch_model("beta") == "alpha"
    # Another chat: turns of one chat are answered in order, so it would wait for the slow one.
    fast = sims.feishu.inject_text("fast one", chat_id="oc_chat2")
    replies = await in_own_thread(sims.feishu.wait_for_replies, fast, 1, 15)
    assert replies[0].text == "[beta] fast one"  # the next request uses the new model
    sims.llm.release("alpha")
    (slow_reply,) = await in_own_thread(sims.feishu.wait_for_replies, slow, 1, 10)
    assert slow_reply.text == "[alpha] slow one"  # the in-flight one finished on its model


async def test_switch_to_an_unknown_model_is_a_clear_error(gateway: Gateway) -> None:
    import pytest

    from gateway_core.llm import UnknownModel

    with pytest.raises(UnknownModel, match="unknown model 'gamma'; configured: alpha, beta"):
        gateway.switch_model("gamma")
    assert gateway.llm.active_model == "alpha"


async def test_untrusted_text_stays_one_log_line(gateway: Gateway, sims: Simulators) -> None:
    await ask(sims, "line one\nFAKE 2026 ERROR forged record\x1b[31m", gateway=gateway)
    lines = [l.message for l in present(gateway.logging).ring.since(0) if "line one" in l.message]
    assert lines and all("\n" not in l and "\x1b" not in l for l in lines)
    assert any("line one\\nFAKE" in l for l in lines)


@pytest.mark.slow
async def test_liveness_watchdog_restarts_a_silent_connection(home: Home, sims: Simulators) -> None:
    """A link that stays open but carries nothing (no pongs) is restarted by the watchdog."""
    from gateway_core.config import load_profile
    from gateway_core.gateway import Gateway

    from .support import write_profile

    sims.feishu.ping_interval = 1  # the client pings every second; pongs are its frames
    write_profile(home, "live", sims, liveness_timeout=3)
    gateway = Gateway(load_profile(home, "live"), home, owner="console")
    await gateway.start()
    try:
        assert await gateway.wait_connected(10)
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.pings >= 4, 10)
        assert gateway.feishu.snapshot().restarts == 0  # pongs keep a healthy link alive
        sims.feishu.go_silent()
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.connections_total >= 2, 15)
        assert await gateway.wait_connected(10)
        assert gateway.feishu.snapshot().restarts == 1
        assert any("no frame for" in line.message for line in present(gateway.logging).ring.since(0))
        sims.feishu.go_silent(False)
        event = sims.feishu.inject_text("after the watchdog")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
        assert reply.text == "[alpha] after the watchdog"
    finally:
        await gateway.stop(drain_timeout=2)
