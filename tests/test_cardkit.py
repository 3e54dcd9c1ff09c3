"""The CardKit streaming client against the Feishu simulator, through the gateway's Feishu HTTP client.

Waits on the simulator run in their own thread (`in_own_thread`): the card's pump runs on the
test's loop and must keep running while the test waits for what Feishu recorded.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from gateway_core.cardkit import (
    RATE_LIMITED,
    CardKitClient,
    CardKitFailed,
    CardKitUnavailable,
    StreamCheckpoint,
    card_reply_uuid,
)
from gateway_core.config import FeishuConfig
from gateway_core.feishu_http import FeishuHttp, FeishuRefused
from gateway_core.replies import ReplySender
from gateway_core.sim import Simulators
from gateway_core.sim.feishu_sim import FeishuSimulator
from gateway_core.threads import in_own_thread

from .support import FEISHU_SECRET, present, unique_app_id


def cardkit_client(
    sims: Simulators, updates_per_second: float = 5.0, replies: ReplySender | None = None, **limits: int
) -> CardKitClient:
    """A fresh client, as a fresh gateway process would build it (no in-process memo)."""
    http = feishu_http(sims.feishu.app_id, FEISHU_SECRET, sims.feishu.domain)
    return CardKitClient(http, replies or ReplySender(http), updates_per_second=updates_per_second, **limits)


_clients: list[FeishuHttp] = []


def feishu_http(app_id: str, secret: str, domain: str) -> FeishuHttp:
    client = FeishuHttp(FeishuConfig(app_id=app_id, app_secret=secret, domain=domain), request_timeout=5)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Each test's HTTP clients are closed on its own loop, as a gateway closes its one at stop."""
    yield
    while _clients:
        await _clients.pop().aclose()


class Journal:
    """Stands in for the inbox journal: keeps every checkpoint, as JSON, in order."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    async def __call__(self, checkpoint: StreamCheckpoint) -> None:
        self.saved.append(checkpoint.to_json())

    @property
    def last(self) -> StreamCheckpoint:
        return StreamCheckpoint.from_json(self.saved[-1])


async def shown(feishu: FeishuSimulator, card_id: str, text: str) -> None:
    """Wait until Feishu shows `text` in the card."""
    await in_own_thread(
        feishu.wait_for,
        lambda: feishu.card(card_id).texts.get("answer") == text,
        5,
        lambda: f"card shows {feishu.card(card_id).texts!r}, wanted {text!r}",
    )


async def test_a_20_chunk_stream_updates_in_order_and_ends_with_the_full_text(sims: Simulators) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("write me a poem")
    journal = Journal()
    stream = await cardkit_client(sims).open_stream(question.message_id, on_checkpoint=journal)
    chunks = [f"word{n} " for n in range(20)]
    so_far = ""
    for n, chunk in enumerate(chunks, 1):
        so_far += chunk
        await stream.push(so_far)
        if n in (1, 10):  # the first token shows at once; later ones are coalesced
            await shown(feishu, stream.card_id, so_far)
    await stream.finish(so_far)

    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    updates = card.content_updates
    assert len(updates) >= 3 and updates[0].content == "word0 "
    assert card.text() == so_far and updates[-1].content == so_far
    assert card.sequences == sorted(set(card.sequences))  # strictly increasing, settings last
    assert card.operations[-1].kind == "settings" and not card.streaming_mode
    assert card.rejected == ()  # never over Feishu's 10 operations/s per card, never a stale sequence
    assert stream.finished and journal.last.finished and journal.last.card_id == card.card_id
    replies = feishu.replies_to(question)
    assert [(m.msg_type, m.uuid) for m in replies] == [("interactive", card_reply_uuid(question.message_id))]
    assert feishu.cards_replied_to(question) == [card]


async def test_a_burst_of_tokens_is_coalesced_into_few_updates(sims: Simulators) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("go")
    stream = await cardkit_client(sims).open_stream(question.message_id)
    text = ""
    for n in range(200):
        text += f"{n} "
        await stream.push(text)  # returns at once: the pump sends only the newest text
    await stream.finish(text)
    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    assert card.text() == text and 1 <= len(card.content_updates) <= 2
    assert stream.updates_sent == len(card.content_updates)


async def test_missing_scope_raises_once_and_is_remembered(sims: Simulators) -> None:
    feishu = sims.feishu
    feishu.deny_scope()
    question = feishu.inject_text("hi")
    client = cardkit_client(sims)
    with pytest.raises(CardKitUnavailable, match="cardkit:card:write"):
        await client.open_stream(question.message_id)
    assert "cardkit:card:write" in present(client.unavailable)
    refused_before = feishu.failed_posts
    with pytest.raises(CardKitUnavailable):
        await client.open_stream(question.message_id)
    assert feishu.failed_posts == refused_before  # remembered: Feishu was not asked again
    assert feishu.cards == [] and feishu.replies_to(question) == []


async def test_redrive_after_a_crash_mid_stream_finishes_the_same_card(sims: Simulators) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("long answer please")
    journal = Journal()
    first = await cardkit_client(sims).open_stream(question.message_id, on_checkpoint=journal)
    await first.push("The first half")
    await shown(feishu, first.card_id, "The first half")
    await first.push("The first half, and more")
    await shown(feishu, first.card_id, "The first half, and more")
    await first.abandon()  # the process dies here: only the journal survives

    again = await cardkit_client(sims).open_stream(question.message_id, resume=journal.last, on_checkpoint=journal)
    assert again.card_id == first.card_id
    await again.push("The whole answer")
    await again.finish("The whole answer, done.")

    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    assert len(feishu.cards) == 1 and feishu.cards_replied_to(question) == [card]
    assert card.text() == "The whole answer, done." and card.rejected == ()
    assert card.sequences == sorted(set(card.sequences))
    assert len(feishu.replies_to(question)) == 1  # the resumed stream did not reply again


async def test_redrive_when_the_reply_was_sent_but_not_recorded_reuses_it(sims: Simulators) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("hello")
    journal = Journal()
    first = await cardkit_client(sims).open_stream(question.message_id, on_checkpoint=journal)
    created_only = StreamCheckpoint.from_json(journal.saved[0])  # the crash lost the reply's record
    assert created_only.reply_message_id is None and created_only.card_id == first.card_id

    again = await cardkit_client(sims).open_stream(question.message_id, resume=created_only)
    await again.finish("Hi!")
    replies = feishu.replies_to(question)
    assert [m.duplicate for m in replies] == [False, True]  # the uuid made the second a no-op
    assert again.checkpoint.reply_message_id == replies[0].message_id == first.checkpoint.reply_message_id
    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    assert len(feishu.cards) == 1 and card.text() == "Hi!"


async def test_a_retry_in_the_same_process_reuses_the_card(sims: Simulators) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("retry me")
    client = cardkit_client(sims)
    one = await client.open_stream(question.message_id)
    two = await client.open_stream(question.message_id)
    assert one.card_id == two.card_id and len(feishu.cards) == 1
    done = await two.finish("once")
    resumed = await client.open_stream(question.message_id, resume=done)  # a finished card stays finished
    assert resumed.finished and await resumed.finish("twice") == done
    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    assert card.text() == "once" and len(feishu.replies_to(question)) == 1


async def test_bot_identity(sims: Simulators) -> None:
    api = feishu_http(sims.feishu.app_id, FEISHU_SECRET, sims.feishu.domain)
    identity = await api.bot_identity()
    assert (identity.open_id, identity.app_name) == (sims.feishu.bot_open_id, sims.feishu.bot_name)
    # lark caches tokens per app id: an app id of its own makes the SDK ask for a token again
    wrong = feishu_http(unique_app_id(), "wrong-secret", sims.feishu.domain)
    with pytest.raises(FeishuRefused) as refused:
        await wrong.bot_identity()
    assert "wrong-secret" not in str(refused.value)


async def test_a_rate_limited_finish_gives_up_after_retries_and_a_redrive_completes_it(sims: Simulators) -> None:
    feishu = sims.feishu
    feishu.limit_card_operations(2, per_seconds=60)  # the third operation on the card is refused
    question = feishu.inject_text("busy")
    journal = Journal()
    stream = await cardkit_client(sims).open_stream(question.message_id, on_checkpoint=journal)
    await stream.push("par")
    await shown(feishu, stream.card_id, "par")
    with pytest.raises(CardKitFailed) as failed:
        await stream.finish("partial answer")  # content goes out, turning streaming off does not
    assert failed.value.code == RATE_LIMITED and failed.value.retryable
    assert not journal.last.finished and feishu.card(stream.card_id).streaming_mode

    feishu.limit_card_operations(10, per_seconds=1)  # Feishu's own limit again
    again = await cardkit_client(sims).open_stream(question.message_id, resume=journal.last)
    await again.finish("partial answer")
    card = await in_own_thread(feishu.wait_card_finished, question, 5)
    assert card.text() == "partial answer" and len(feishu.cards) == 1
    accepted = card.sequences
    assert accepted == sorted(set(accepted)) and {code for code, _ in card.rejected} == {RATE_LIMITED}


async def test_card_replies_share_the_reply_limits_and_wait_out_a_230020(sims: Simulators) -> None:
    feishu = sims.feishu
    feishu.chat_rate_limit = 1  # stricter than our per-chat pace: Feishu will answer 230020
    http = feishu_http(feishu.app_id, FEISHU_SECRET, feishu.domain)
    replies = ReplySender(http)
    client = cardkit_client(sims, replies=replies)
    questions = [feishu.inject_text(f"q{n}") for n in range(2)]
    streams = [await client.open_stream(q.message_id, chat_id=q.chat_id) for q in questions]
    for stream in streams:
        await stream.finish("done")
    stats = replies.stats()
    assert stats.sent == 2 and stats.failed_attempts == 0
    assert stats.rate_limited == len(feishu.rate_limited) >= 1  # backed off and retried, not failed
    for question in questions:
        assert [m.msg_type for m in feishu.replies_to(question) if not m.duplicate] == ["interactive"]


async def test_cardkit_calls_keep_within_each_apis_per_app_limit(sims: Simulators) -> None:
    feishu = sims.feishu
    feishu.limit_cardkit_apis((2, 1.0))  # as if Feishu allowed 2 calls a second per API
    client = cardkit_client(sims, api_per_second=2)
    questions = [feishu.inject_text(f"q{n}") for n in range(4)]
    streams = await asyncio.gather(
        *(client.open_stream(q.message_id, chat_id=f"oc_{n}") for n, q in enumerate(questions))
    )
    await asyncio.gather(*(stream.finish(f"answer {n}") for n, stream in enumerate(streams)))
    cards = [await in_own_thread(feishu.wait_card_finished, q, 10) for q in questions]
    assert len(feishu.cards) == 4 and all(card.rejected == () for card in cards)  # waited, never refused
    assert feishu.failed_posts == 0
