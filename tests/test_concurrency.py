"""Many conversations at once, end to end: real SDK, real WebSocket, real HTTP to both simulators.

The gateway must keep hundreds of slow answers in flight without a thread each, keep every
chat's turns in order, and stay within Feishu's rate limits — backing off when Feishu still says
"too fast" (230020), never dropping or apologising for it.
"""

import pytest

from gateway_core.config import Home
from gateway_core.gateway import Gateway
from gateway_core.judging import APOLOGY
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent

from .support import gateway_on_profile, in_own_thread, present


async def wait_for_answers(gateway: Gateway, sims: Simulators, events: list[InjectedEvent], timeout: float) -> None:
    """Wait until every event has a reply, then until the gateway finished with all of them."""
    ids = {e.message_id for e in events}

    def all_replied() -> bool:
        return ids <= {m.in_reply_to for m in sims.feishu.sent if m.kind == "reply"}

    def missing() -> str:
        replied = {m.in_reply_to for m in sims.feishu.sent if m.kind == "reply"}
        return f"{len(ids - replied)} of {len(ids)} messages unanswered; {gateway.snapshot().pipeline}"

    await in_own_thread(sims.feishu.wait_for, all_replied, timeout, missing)
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(timeout) == 0


def replies_in_order(sims: Simulators, chat_prefix: str) -> dict[str, list[str]]:
    """chat -> the texts replied in that chat, in the order Feishu accepted them."""
    chat_of = {e.message_id: e.chat_id for e in sims.feishu.events}
    by_chat: dict[str, list[str]] = {}
    for sent in sims.feishu.sent:
        chat = chat_of.get(sent.in_reply_to, "")
        if sent.kind == "reply" and chat.startswith(chat_prefix):
            by_chat.setdefault(chat, []).append(present(sent.text))
    return by_chat


def assert_each_answered_once(sims: Simulators, events: list[InjectedEvent]) -> None:
    for event in events:
        replies = sims.feishu.replies_to(event)
        assert [r.text for r in replies] == [f"[alpha] {event.text}"], (event.message_id, replies)


@pytest.mark.slow
async def test_200_chats_with_a_3s_model_are_answered_together_without_an_executor_rebuild(
    gateway: Gateway, sims: Simulators
) -> None:
    sims.llm.set_behaviour("alpha", "echo", latency=3.0)
    events = [sims.feishu.inject_text(f"question {i}", chat_id=f"oc_many_{i}") for i in range(200)]
    # All 200 wait on the model at the same moment: concurrency is not a thread count.
    assert await in_own_thread(sims.llm.wait_in_flight, "alpha", 200, 30) == 200
    await wait_for_answers(gateway, sims, events, 60)
    assert_each_answered_once(sims, events)
    snap = gateway.snapshot()
    assert snap.executor.restarts == 0 and snap.executor.state != "replaced", snap.executor
    assert (snap.pipeline.answered, snap.pipeline.apologies, snap.pipeline.reply_failures) == (200, 0, 0)
    assert len(sims.llm.requests) == 200


async def test_turns_of_one_chat_are_answered_in_order_with_their_history(gateway: Gateway, sims: Simulators) -> None:
    sims.llm.set_behaviour("alpha", "echo", latency=0.2)
    events = [
        sims.feishu.inject_text(f"chat {c} turn {t}", chat_id=f"oc_order_{c}") for t in range(5) for c in range(20)
    ]
    await wait_for_answers(gateway, sims, events, 60)
    assert_each_answered_once(sims, events)
    for chat, texts in replies_in_order(sims, "oc_order_").items():
        c = chat.rsplit("_", 1)[1]
        assert texts == [f"[alpha] chat {c} turn {t}" for t in range(5)]
    # Each turn was asked with the turns before it (and their answers) as context.
    for request in sims.llm.requests:
        turn = int(request.messages[-1]["content"].rsplit(" ", 1)[1])
        assert len(request.messages) == 2 + 2 * turn


@pytest.mark.slow
async def test_30_messages_into_one_chat_at_once_all_answered_once_within_feishus_limit(
    gateway: Gateway, sims: Simulators
) -> None:
    events = [sims.feishu.inject_text(f"burst {i}", chat_id="oc_burst") for i in range(30)]
    await wait_for_answers(gateway, sims, events, 60)
    assert_each_answered_once(sims, events)
    assert replies_in_order(sims, "oc_burst") == {"oc_burst": [f"[alpha] burst {i}" for i in range(30)]}
    assert gateway.snapshot().pipeline.reply_failures == 0


@pytest.mark.slow
async def test_over_the_chat_limit_feishu_refuses_and_every_reply_is_retried_not_dropped(
    home: Home, sims: Simulators
) -> None:
    # A gateway that does not hold itself back (as when other bots share the group): Feishu's
    # 230020 answers are backed off and retried.
    async with gateway_on_profile(home, sims, "eager", chat_replies_per_second=1000) as gateway:
        events = [sims.feishu.inject_text(f"eager {i}", chat_id="oc_eager") for i in range(30)]
        await wait_for_answers(gateway, sims, events, 60)
        assert_each_answered_once(sims, events)
        assert replies_in_order(sims, "oc_eager") == {"oc_eager": [f"[alpha] eager {i}" for i in range(30)]}
        assert sims.feishu.rate_limited, "Feishu should have refused some sends as too fast"
        pipeline = gateway.snapshot().pipeline
        assert (pipeline.answered, pipeline.apologies, pipeline.reply_failures) == (30, 0, 0)
        assert gateway.replier.stats().rate_limited == len(sims.feishu.rate_limited)
        assert all(m.text != APOLOGY for m in sims.feishu.sent)


async def test_over_the_app_limit_feishu_refuses_and_every_reply_is_retried_not_dropped(
    home: Home, sims: Simulators
) -> None:
    async with gateway_on_profile(home, sims, "eager_app", app_replies_per_second=1000) as gateway:
        events = [sims.feishu.inject_text(f"app {i}", chat_id=f"oc_app_{i}") for i in range(80)]
        await wait_for_answers(gateway, sims, events, 60)
        assert_each_answered_once(sims, events)
        assert sims.feishu.rate_limited, "Feishu should have refused some sends as too fast"
        pipeline = gateway.snapshot().pipeline
        assert (pipeline.answered, pipeline.apologies, pipeline.reply_failures) == (80, 0, 0)
