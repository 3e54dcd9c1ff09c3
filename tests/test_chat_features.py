"""Issue 13 end to end: streaming cards, group policy, in-chat commands, rich text — real SDK,
real WebSocket, real HTTP to the simulators, real processes for the crash."""

import signal

import pytest

from gateway_core.commands import help_text
from gateway_core.config import Home
from gateway_core.delivery import DeliveryRecord
from gateway_core.gateway import Gateway
from gateway_core.journal import Journal
from gateway_core.messages import flatten_post
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.states import MessageState

from .support import HeadlessProcess, gateway_on_profile, in_own_thread, present, until, write_profile


async def reply_to(gateway: Gateway, sims: Simulators, event: InjectedEvent) -> SentMessage:
    (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0
    return reply


async def settled_as(gateway: Gateway, event: InjectedEvent, state: str) -> None:
    """Wait until the journal finished `event` in `state` (how "no reply" is observed)."""
    await until(lambda: present(gateway.journal).state_of(event.message_id) == state, 15, f"{event.message_id} {state}")
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0


# ----------------------------------------------------------------------------- streaming cards


async def test_a_20_chunk_answer_streams_into_one_card_and_ends_with_the_models_text(
    home: Home, sims: Simulators
) -> None:
    sims.llm.pace("alpha", 0.1)  # a model writing one word every 100 ms: about 2 s in all
    words = " ".join(f"w{n}" for n in range(1, 20))  # "[alpha]" + 19 words: 20 chunks
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        event = sims.feishu.inject_text(words)
        card = await in_own_thread(sims.feishu.wait_card_finished, event, 15)
        assert gateway.pipeline is not None
        assert await gateway.pipeline.drain(10) == 0
        assert card.text() == f"[alpha] {words}"
        assert len(card.content_updates) >= 3
        assert card.sequences == sorted(set(card.sequences))  # strictly increasing
        assert card.rejected == ()
        (reply,) = sims.feishu.replies_to(event)  # the card is the only reply: no text after it
        assert reply.msg_type == "interactive"
        assert gateway.journal is not None
        assert gateway.journal.state_of(event.message_id) == "answered"
        (activity,) = gateway.snapshot().pipeline.activity
        assert (activity.outcome, activity.reply_mode) == ("answered", "card")


async def test_without_the_cardkit_scope_the_answer_falls_back_to_one_text_reply(home: Home, sims: Simulators) -> None:
    sims.feishu.deny_scope()
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        first = sims.feishu.inject_text("no cards here")
        assert (await reply_to(gateway, sims, first)).text == "[alpha] no cards here"
        unavailable = gateway.snapshot().pipeline.cardkit_unavailable
        assert unavailable and "cardkit:card:write" in unavailable  # shown in the console
        second = sims.feishu.inject_text("still text")
        assert (await reply_to(gateway, sims, second)).text == "[alpha] still text"
        assert sims.feishu.cards == []
        assert [a.reply_mode for a in gateway.snapshot().pipeline.activity] == ["text", "text"]


# ----------------------------------------------------------------------------- groups


async def test_group_answers_only_its_own_mention(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        plain = sims.feishu.inject_group_text("just chatting")
        await settled_as(gateway, plain, MessageState.IGNORED)
        everyone = sims.feishu.inject_group_text("@_all lunch?")
        await settled_as(gateway, everyone, MessageState.IGNORED)
        alice = sims.feishu.user_mention("@_user_2", "ou_alice", "Alice")
        asked = sims.feishu.inject_group_text(
            "@_user_1 what did @_user_2 say?", mentions=[sims.feishu.bot_mention(), alice]
        )
        assert (await reply_to(gateway, sims, asked)).text == "[alpha] what did @Alice say?"
        assert sims.feishu.replies_to(plain) == [] and sims.feishu.replies_to(everyone) == []
        assert len(sims.llm.requests) == 1
        outcomes = [(a.outcome, a.reply_mode) for a in gateway.snapshot().pipeline.activity]
        assert outcomes == [("ignored", None), ("ignored", None), ("answered", "text")]
        assert gateway.snapshot().pipeline.ignored == 2


async def test_chat_policy_table_overrides_the_profile_and_p2p_is_always_answered(home: Home, sims: Simulators) -> None:
    table = '[feishu.chat_policies]\n"oc_open" = "always"\n'
    async with gateway_on_profile(home, sims, group_policy="never", extra=table) as gateway:
        muted = sims.feishu.inject_group_text("@_user_1 hi", mentions=[sims.feishu.bot_mention()])
        await settled_as(gateway, muted, MessageState.IGNORED)
        open_chat = sims.feishu.inject_group_text("no mention needed", chat_id="oc_open")
        assert (await reply_to(gateway, sims, open_chat)).text == "[alpha] no mention needed"
        direct = sims.feishu.inject_text("direct")
        assert (await reply_to(gateway, sims, direct)).text == "[alpha] direct"


# ----------------------------------------------------------------------------- commands


async def test_commands_are_answered_without_the_model(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        helped = await reply_to(gateway, sims, sims.feishu.inject_text("/help"))
        assert helped.text == help_text(["alpha", "beta"])
        shown = await reply_to(gateway, sims, sims.feishu.inject_text("/model"))
        assert shown.text is not None
        assert shown.text.startswith("Model here: alpha")
        switched = await reply_to(gateway, sims, sims.feishu.inject_text("/model beta"))
        assert switched.text == "This chat now uses beta."
        status = await reply_to(gateway, sims, sims.feishu.inject_text("/status"))
        assert status.text is not None
        assert status.text.startswith("gatewatch p: healthy")
        assert sims.llm.requests == []
        answered = await reply_to(gateway, sims, sims.feishu.inject_text("which model?"))
        assert answered.text == "[beta] which model?"  # this chat's choice, kept in the journal
        other = await reply_to(gateway, sims, sims.feishu.inject_text("and here?", chat_id="oc_other"))
        assert other.text == "[alpha] and here?"  # other chats keep the gateway's model
        assert gateway.journal is not None
        assert gateway.journal.load_history("oc_chat1") != []
        reset = await reply_to(gateway, sims, sims.feishu.inject_text("/reset"))
        assert reset.text == "Done: I forgot this chat's history."
        assert gateway.journal is not None
        assert gateway.journal.load_history("oc_chat1") == []
        unknown = await reply_to(gateway, sims, sims.feishu.inject_text("/frobnicate"))
        assert unknown.text is not None
        assert unknown.text.startswith("I don't know /frobnicate.")
        outcomes = [a.outcome for a in gateway.snapshot().pipeline.activity]
        assert outcomes == ["command"] * 4 + ["answered"] * 2 + ["command"] * 2


async def test_an_admins_model_switch_applies_to_every_chat(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims, extra='admins = ["ou_admin"]') as gateway:
        switched = await reply_to(gateway, sims, sims.feishu.inject_text("/model beta", sender_open_id="ou_admin"))
        assert switched.text == "Every chat now uses beta (you are an admin)."
        assert gateway.llm.active_model == "beta"
        other = await reply_to(gateway, sims, sims.feishu.inject_text("hi", chat_id="oc_other"))
        assert other.text == "[beta] hi"


async def test_a_bare_mention_in_a_group_gets_help(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_group_text("@_user_1", mentions=[sims.feishu.bot_mention()])
        assert present((await reply_to(gateway, sims, event)).text).startswith("You mentioned me without a question.")
        assert sims.llm.requests == []


# ----------------------------------------------------------------------------- message types


async def test_a_post_with_a_code_block_is_answered_from_its_flattened_text(home: Home, sims: Simulators) -> None:
    post = {
        "title": "Why?",
        "content": [
            [{"tag": "text", "text": "this fails: "}, {"tag": "a", "text": "docs", "href": "https://example.com"}],
            [{"tag": "code_block", "language": "PYTHON", "text": "print(1 / 0)\n"}],
        ],
    }
    flattened, _ = flatten_post(post)
    assert "```python\nprint(1 / 0)\n```" in flattened
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_post(post)
        assert (await reply_to(gateway, sims, event)).text == f"[alpha] {flattened}"
        assert sims.llm.requests[0].messages[-1]["content"] == flattened


async def test_recalled_or_empty_messages_are_not_answered(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        recalled = sims.feishu.inject_text("", content="{}")
        await settled_as(gateway, recalled, MessageState.IGNORED)
        sticker = sims.feishu.inject_text("", message_type="sticker", content='{"file_key": "stk_1"}')
        assert "I got a sticker" in present((await reply_to(gateway, sims, sticker)).text)
        assert sims.feishu.replies_to(recalled) == [] and sims.llm.requests == []


# ----------------------------------------------------------------------------- crash mid-stream


@pytest.mark.process
def test_kill_9_mid_stream_the_next_owner_completes_the_same_card(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims, reply_mode="stream")
    words = " ".join(f"w{n}" for n in range(1, 12))
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.llm.pause_stream("alpha", 4)  # the model stops writing after four words
        event = sims.feishu.inject_text(words)
        sims.llm.wait_stream_paused(1, 20)
        sims.feishu.wait_for(lambda: [c for c in sims.feishu.cards_replied_to(event) if c.content_updates], 10)
        gateway.process.send_signal(signal.SIGKILL)
        assert gateway.process.wait(10) == -signal.SIGKILL
    (partial,) = sims.feishu.cards_replied_to(event)
    assert partial.streaming_mode and partial.text() != f"[alpha] {words}"  # the user saw half an answer
    sims.llm.resume_stream("alpha")
    with HeadlessProcess.start(home, "p") as successor:
        successor.wait_for_line("Feishu connected")
        card = sims.feishu.wait_card_finished(event, 20)
        assert successor.terminate_and_wait() == 0
    assert card.card_id == partial.card_id
    assert sims.feishu.cards_replied_to(event) == [card]  # one card, completed
    assert card.text() == f"[alpha] {words}"
    assert card.sequences == sorted(set(card.sequences)) and card.rejected == ()
    assert [r.msg_type for r in sims.feishu.replies_to(event) if not r.duplicate] == ["interactive"]
    journal = Journal(home.state_file("p"))
    try:
        assert journal.state_of(event.message_id) == "answered"
        (row,) = journal._read("SELECT reply_mode, checkpoint FROM inbox WHERE message_id = ?", (event.message_id,))
        record = DeliveryRecord.from_json(row[1])
        assert row[0] == "card" and [card.checkpoint.finished for card in record.cards] == [True]
    finally:
        journal.close()


async def test_a_stored_answer_whose_card_was_not_finished_is_finished_by_the_next_owner(
    home: Home, sims: Simulators
) -> None:
    sims.feishu.limit_card_operations(1, 3600)  # the first update goes through, then 429s for an hour
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        event = sims.feishu.inject_text("finish me later")
        await until(lambda: gateway.snapshot().pipeline.reply_failures == 1, 20, "the card's finish given up")
        assert gateway.journal is not None
        assert gateway.journal.unfinished()[0].answer == "[alpha] finish me later"  # answer stored
    (stuck,) = sims.feishu.cards_replied_to(event)
    assert stuck.streaming_mode
    sims.feishu.limit_card_operations(10, 1.0)  # Feishu's own limit again
    async with gateway_on_profile(home, sims, reply_mode="text") as successor:  # even in text mode now
        card = await in_own_thread(sims.feishu.wait_card_finished, event, 15)
        assert successor.pipeline is not None
        assert await successor.pipeline.drain(10) == 0
        assert successor.journal is not None
        assert successor.journal.state_of(event.message_id) == "answered"
    assert card.card_id == stuck.card_id and card.text() == "[alpha] finish me later"
    assert sims.feishu.cards_replied_to(event) == [card]
    assert [r.msg_type for r in sims.feishu.replies_to(event) if not r.duplicate] == ["interactive"]
    assert len(sims.llm.requests) == 1  # the stored answer was used, the model not asked again


async def test_a_finish_is_given_up_when_feishu_keeps_refusing_a_partly_shown_card(
    home: Home, sims: Simulators
) -> None:
    """The card shows part of the answer and every later update is refused (429 for an hour): the
    finish gives up after its attempts instead of waiting for the progress updates forever."""
    sims.feishu.limit_card_operations(1, 3600)
    sims.llm.pace("alpha", 0.3)  # a word at a time: the one update allowed shows only the start
    async with gateway_on_profile(home, sims, reply_mode="stream") as gateway:
        event = sims.feishu.inject_text("finish me later please")
        await until(lambda: gateway.snapshot().pipeline.reply_failures == 1, 30, "the card's finish given up")
        assert (
            present(gateway.journal).unfinished()[0].answer == "[alpha] finish me later please"
        )  # stored for a successor
    (stuck,) = sims.feishu.cards_replied_to(event)
    assert stuck.streaming_mode and stuck.text() != "[alpha] finish me later please"  # shown in part


async def test_a_mention_before_the_bot_knows_its_open_id_is_held_then_answered(home: Home, sims: Simulators) -> None:
    import dataclasses

    sims.feishu.fail_bot_info()
    async with gateway_on_profile(home, sims) as gateway:
        assert gateway.pipeline is not None
        gateway.pipeline.rules = dataclasses.replace(gateway.pipeline.rules, identity_wait=0.3)
        asked = sims.feishu.inject_group_text("@_user_1 are you there?", mentions=[sims.feishu.bot_mention()])
        await until(lambda: gateway.snapshot().pipeline.held == 1, 10, "the mention held")
        assert gateway.journal is not None
        assert gateway.journal.state_of(asked.message_id) == "answering"  # kept, not guessed at
        chatter = sims.feishu.inject_group_text("no mention at all")  # needs no identity to judge
        await settled_as(gateway, chatter, MessageState.IGNORED)
        direct = sims.feishu.inject_text("direct messages go on")
        assert (await reply_to(gateway, sims, direct)).text == "[alpha] direct messages go on"
        sims.feishu.fail_bot_info(False)
        assert (await reply_to(gateway, sims, asked)).text == "[alpha] are you there?"
        snap = gateway.snapshot().pipeline
        assert snap.held == 0 and snap.bot_open_id == sims.feishu.bot_open_id


async def test_per_user_history_in_groups(home: Home, sims: Simulators) -> None:
    table = '[feishu.chat_policies]\n"oc_group1" = "always"\n'
    async with gateway_on_profile(home, sims, history_per_user_in_groups=True, extra=table) as gateway:
        for sender in ("ou_ann", "ou_ben"):
            await reply_to(gateway, sims, sims.feishu.inject_group_text(f"I am {sender}", sender_open_id=sender))
        assert [t["content"] for t in present(gateway.journal).load_history("oc_group1/ou_ann")] == [
            "I am ou_ann",
            "[alpha] I am ou_ann",
        ]
        assert gateway.journal is not None
        assert gateway.journal.load_history("oc_group1") == []
        await reply_to(gateway, sims, sims.feishu.inject_group_text("again", sender_open_id="ou_ben"))
        context = [m["content"] for m in sims.llm.requests[-1].messages[1:]]
        assert context == ["I am ou_ben", "[alpha] I am ou_ben", "again"]  # only Ben's turns
        await reply_to(gateway, sims, sims.feishu.inject_group_text("/reset", sender_open_id="ou_ann"))
        assert gateway.journal is not None
        assert gateway.journal.load_history("oc_group1/ou_ben") == []  # /reset forgets the whole chat
