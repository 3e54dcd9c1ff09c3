"""Issue 18 end to end: every answer arrives whole — real SDK, real WebSocket, real HTTP to the
simulators (which enforce Feishu's size limits and end streams as Feishu does), real processes
for the crash."""

import json
import signal
import time

import pytest

from gateway_core.config import Home
from gateway_core.delivery import DeliveryRecord
from gateway_core.gateway import Gateway
from gateway_core.journal import Journal
from gateway_core.sim import Simulators
from gateway_core.sim.answers import long_answer, words_answer
from gateway_core.sim.platform import InjectedEvent

from .support import HeadlessProcess, gateway_on_profile, in_own_thread, present, until, write_profile

CARD_ENDED = 200850  # Feishu: card streaming timeout (then 300309 for every later call)
CARD_GONE = 200740  # Feishu: the card entity does not exist


def shown(sims: Simulators, event: InjectedEvent) -> list[str]:
    """What the user sees in reply to `event`, in order: each card's text, each text reply."""
    pieces = []
    for reply in sims.feishu.replies_to(event):
        if reply.duplicate:
            continue  # a uuid repeat: Feishu showed nothing new
        if reply.msg_type == "interactive":
            card = sims.feishu.card(json.loads(reply.content)["data"]["card_id"])
            if not card.deleted:  # a deleted card's message shows nothing
                pieces.append(card.text())
        else:
            pieces.append(present(reply.text))
    return pieces


def fence_lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.startswith("```"))


def delivery_of(gateway: Gateway, event: InjectedEvent) -> DeliveryRecord:
    assert gateway.journal is not None
    (row,) = gateway.journal._read("SELECT checkpoint FROM inbox WHERE message_id = ?", (event.message_id,))
    return DeliveryRecord.from_json(row[0])


async def answered(gateway: Gateway, event: InjectedEvent, timeout: float = 60) -> None:
    await until(
        lambda: present(gateway.journal).state_of(event.message_id) == "answered", timeout, f"{event.message_id}"
    )
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0


@pytest.mark.slow
async def test_a_70000_character_answer_arrives_whole_and_once_in_text_parts(home: Home, sims: Simulators) -> None:
    answer = long_answer()
    sims.llm.answer_with("alpha", answer)
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_text("the whole report, please")
        await answered(gateway, event)
        pieces = shown(sims, event)
        assert len(pieces) >= 2  # 70,000 characters, most of them Chinese: over 150 KB
        assert "".join(pieces) == answer  # whole, in order, nothing twice
        assert sims.feishu.too_long == 0  # every part within Feishu's 150 KB
        assert all(fence_lines(p) % 2 == 0 for p in pieces)  # the code block is in one part
        uuids = [r.uuid for r in sims.feishu.replies_to(event)]
        assert len(set(uuids)) == len(uuids) == len(pieces)
        assert len(sims.llm.requests) == 1
        (activity,) = gateway.snapshot().pipeline.activity
        assert (activity.outcome, activity.delivery) == ("answered", f"{len(pieces)} text parts")


@pytest.mark.slow
async def test_a_70000_character_answer_streams_whole_and_once_into_consecutive_cards(
    home: Home, sims: Simulators
) -> None:
    answer = long_answer()
    sims.llm.answer_with("alpha", answer)
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        event = sims.feishu.inject_text("the whole report, as it is written")
        await answered(gateway, event, 90)
        pieces = shown(sims, event)
        cards = sims.feishu.cards_replied_to(event)
        assert len(cards) == len(pieces) >= 3  # 30 KB a card; no text reply was needed
        assert "".join(pieces) == answer
        assert all(not card.streaming_mode and card.rejected == () for card in cards)
        assert all(fence_lines(p) % 2 == 0 for p in pieces)
        assert len(sims.llm.requests) == 1
        record = delivery_of(gateway, event)
        assert [c.checkpoint.finished for c in record.cards] == [True] * len(cards)
        (activity,) = gateway.snapshot().pipeline.activity
        assert activity.delivery == f"{len(cards)} cards"


async def test_a_stream_feishu_ends_after_the_5th_update_is_finished_in_text_once(home: Home, sims: Simulators) -> None:
    answer = words_answer(40)  # 400 words, streamed one every 5 ms: about 2 s, some 10 updates
    sims.llm.answer_with("alpha", answer)
    sims.llm.pace("alpha", 0.005)
    sims.feishu.end_streaming_after(5)
    async with gateway_on_profile(home, sims, reply_mode="stream", request_timeout=60) as gateway:
        event = sims.feishu.inject_text("stream it")
        await answered(gateway, event)
        (card,) = sims.feishu.cards_replied_to(event)
        assert len(card.content_updates) == 5
        assert [code for code, _ in card.rejected] == [CARD_ENDED]  # terminal: never asked again
        pieces = shown(sims, event)
        assert len(pieces) >= 2 and pieces[0] == card.text()
        assert "".join(pieces) == answer  # the card's part, then the rest as text: whole, once
        record = delivery_of(gateway, event)
        assert record.cards_stopped == f"code {CARD_ENDED}"
        (activity,) = gateway.snapshot().pipeline.activity
        assert activity.delivery.startswith(f"1 card + {len(pieces) - 1} text part")


async def test_a_card_deleted_while_streaming_is_replaced_by_the_whole_answer_in_text(
    home: Home, sims: Simulators
) -> None:
    answer = words_answer(30)
    sims.llm.answer_with("alpha", answer)
    sims.llm.pause_stream("alpha", 50)  # the model stops writing halfway until told
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        event = sims.feishu.inject_text("stream it")
        await in_own_thread(sims.llm.wait_stream_paused, 1, 20)
        (card,) = await in_own_thread(
            sims.feishu.wait_for, lambda: [c for c in sims.feishu.cards_replied_to(event) if c.content_updates], 10
        )
        sims.feishu.delete_card(card.card_id)  # the card's message is recalled: what it showed is gone
        sims.llm.resume_stream("alpha")
        await answered(gateway, event)
        assert shown(sims, event) == [answer]  # all of it, as text, once
        assert [code for code, _ in sims.feishu.card(card.card_id).rejected] == [CARD_GONE]
        assert delivery_of(gateway, event).cards_stopped == f"code {CARD_GONE}"


async def test_a_card_is_rotated_before_feishus_streaming_window_runs_out(home: Home, sims: Simulators) -> None:
    answer = words_answer(60)
    sims.llm.answer_with("alpha", answer)
    sims.llm.pace("alpha", 0.005)  # about 3 s of writing
    sims.feishu.streaming_window = 1.5  # Feishu ends streaming 1.5 s after it began (really ~10 min)
    async with gateway_on_profile(home, sims, reply_mode="stream", request_timeout=60) as gateway:
        present(gateway.pipeline).outbox.card_rotate_after = 0.6
        event = sims.feishu.inject_text("a slow one")
        await answered(gateway, event)
        cards = sims.feishu.cards_replied_to(event)
        assert len(cards) >= 3
        assert all(card.rejected == () and not card.streaming_mode for card in cards)  # none ran out
        assert "".join(shown(sims, event)) == answer
        assert all(not card.text().endswith("w") for card in cards)  # each ends at a line's end


async def test_an_answer_that_changes_after_cards_were_finished_goes_whole_in_text(
    home: Home, sims: Simulators
) -> None:
    sims.llm.answer_with("alpha", words_answer(60))
    sims.llm.pause_stream("alpha", 300)  # alpha writes 300 words, then nothing until its deadline
    async with gateway_on_profile(home, sims, reply_mode="stream", request_timeout=3) as gateway:
        present(gateway.pipeline).outbox.card_rotate_after = 0.0  # every card is closed at its last line end at once
        event = sims.feishu.inject_text("a question beta answers differently")
        await answered(gateway, event)
        cards = sims.feishu.cards_replied_to(event)
        assert len(cards) >= 2 and all(not card.streaming_mode for card in cards)
        assert [r.model for r in sims.llm.requests] == ["alpha", "beta"]  # alpha timed out mid-answer
        pieces = shown(sims, event)
        # The finished cards hold alpha's beginning and cannot be taken back: beta's answer follows
        # whole, in text, rather than be finished into alpha's cards.
        assert pieces[-1] == "[beta] a question beta answers differently"
        assert delivery_of(gateway, event).cards_stopped == "the answer changed"


@pytest.mark.process
def test_kill_9_between_two_parts_sends_the_rest_once_and_never_asks_the_model_again(
    home: Home, sims: Simulators
) -> None:
    answer = long_answer()
    sims.llm.answer_with("alpha", answer)
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.feishu.hold_send_responses(True)  # Feishu takes part 1; its answer never comes back
        event = sims.feishu.inject_text("the whole report, please")
        sims.feishu.wait_held_responses(1, 30)
        gateway.process.send_signal(signal.SIGKILL)
        assert gateway.process.wait(10) == -signal.SIGKILL
    sims.feishu.hold_send_responses(False)
    (first,) = shown(sims, event)  # the user has part 1 only
    with HeadlessProcess.start(home, "p") as successor:
        successor.wait_for_line("Feishu connected")
        sims.feishu.wait_for(lambda: "".join(shown(sims, event)) == answer or None, 30, lambda: "the rest")
        assert successor.terminate_and_wait() == 0
    pieces = shown(sims, event)
    assert pieces[0] == first and "".join(pieces) == answer  # the rest, once: no part twice
    assert [r.duplicate for r in sims.feishu.replies_to(event)].count(True) == 1  # part 1 again: a uuid repeat
    assert len(sims.llm.requests) == 1  # the answer came from the journal
    journal = Journal(home.state_file("p"))
    try:
        assert journal.state_of(event.message_id) == "answered"
    finally:
        journal.close()


@pytest.mark.process
def test_a_reset_re_driven_after_a_crash_has_no_second_effect(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        remembered = sims.feishu.inject_text("remember this")
        sims.feishu.wait_for_replies(remembered, 1, 20)
        sims.feishu.hold_send_responses(True)  # the reset's reply is sent; the gateway never hears so
        reset = sims.feishu.inject_text("/reset")
        sims.feishu.wait_held_responses(1, 20)
        gateway.process.send_signal(signal.SIGKILL)
        assert gateway.process.wait(10) == -signal.SIGKILL
    sims.feishu.hold_send_responses(False)
    with HeadlessProcess.start(home, "p") as successor:
        successor.wait_for_line("Feishu connected")
        sims.feishu.wait_for(lambda: len(sims.feishu.replies_to(reset)) == 2 or None, 20, lambda: "the re-send")
        assert successor.terminate_and_wait() == 0
    # Run again, the reset would have found nothing to forget and said so: the re-drive sent the
    # reply stored with the first run's effect instead (a uuid repeat: the user sees it once).
    texts = [(r.text, r.duplicate) for r in sims.feishu.replies_to(reset)]
    assert texts == [("Done: I forgot this chat's history.", False), ("Done: I forgot this chat's history.", True)]


@pytest.mark.slow
async def test_a_token_refused_for_30_s_costs_at_most_6_token_requests_and_loses_no_message(
    home: Home, sims: Simulators
) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        sims.feishu.refuse_tokens(True)
        refused_at, before = time.monotonic(), sims.feishu.token_requests
        events = [sims.feishu.inject_text(f"question {n}") for n in range(3)]
        await until(lambda: gateway.snapshot().pipeline.reply_failures == 3, 30, "3 replies given up for now")
        reasons = " ".join(present(gateway.snapshot().health).reasons)
        assert "token" in reasons  # the health reason names the refusal
        # The fault lasts 30 s (the scenario): wait out its end, then let Feishu heal.
        await until(lambda: time.monotonic() - refused_at >= 30, 35, "30 s of refused tokens")
        sims.feishu.refuse_tokens(False)
        for event in events:
            (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 45)
            assert reply.text == f"[alpha] {event.text}"
        assert sims.feishu.token_requests - before <= 6
        assert len(sims.llm.requests) == 3  # each asked once; the answers waited in the journal
