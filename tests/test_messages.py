"""Message interpretation, group policy and in-chat command parsing (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_core.commands import COMMANDS, parse_command, unknown_command_text
from gateway_core.messages import (
    Mention,
    flatten_post,
    history_key,
    incoming_from_event,
    resolve_mentions,
    should_answer,
    unreadable_reply,
)

from .support import present

BOT = "ou_bot"
ALICE = Mention("@_user_2", "ou_alice", "Alice")
BOT_MENTION = Mention("@_user_1", BOT, "gatewatch")


def event(
    message_type: str = "text",
    content: str | None = None,
    chat_type: str = "group",
    mentions: tuple[Mention, ...] = (),
    chat_id: str = "oc_g",
    message_id: str | None = "om_1",
) -> dict[str, Any]:
    """The shape of an im.message.receive_v1 event (as dicts: the SDK objects have the same fields)."""
    return {
        "header": {"event_id": "ev_1"},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_sender"}},
            "message": {
                "message_id": message_id,
                "chat_id": chat_id,
                "chat_type": chat_type,
                "message_type": message_type,
                "content": content,
                "mentions": [{"key": m.key, "id": {"open_id": m.open_id}, "name": m.name} for m in mentions],
            },
        },
    }


def text_event(text: str, **kw: Any) -> dict[str, Any]:
    return event(content=json.dumps({"text": text}), **kw)


def test_bot_mention_is_stripped_and_other_mentions_become_names() -> None:
    text, bot, everyone = resolve_mentions("@_user_1 ask @_user_2 about it", (BOT_MENTION, ALICE), BOT)
    assert (text, bot, everyone) == ("ask @Alice about it", True, False)


def test_all_is_not_the_bot_and_unknown_keys_stay() -> None:
    text, bot, everyone = resolve_mentions("@_all lunch? @_user_9", (ALICE,), BOT)
    assert (text, bot, everyone) == ("lunch? @_user_9", False, True)
    listed = (Mention("@_all", "", "所有人"),)  # whether or not mentions[] lists @_all
    assert resolve_mentions("@_all lunch?", listed, BOT) == ("lunch?", False, True)


def test_mention_removal_keeps_the_rest_of_the_text_intact() -> None:
    text = "@_user_1 please run:\n    make  test\n@_user_2"
    assert resolve_mentions(text, (BOT_MENTION, ALICE), BOT) == ("please run:\n    make  test\n@Alice", True, False)


def test_group_policy_mention_all_always_never_and_p2p() -> None:
    mentioned = incoming_from_event(text_event("@_user_1 hi", mentions=(BOT_MENTION,)), BOT)
    plain = incoming_from_event(text_event("hi all"), BOT)
    everyone = incoming_from_event(text_event("@_all hi"), BOT)
    direct = incoming_from_event(text_event("hi", chat_type="p2p"), BOT)
    assert mentioned.text == "hi" and mentioned.mentions_bot
    assert should_answer(mentioned)[0] is True
    assert should_answer(plain) == (False, "group message without a mention of the bot")
    assert should_answer(everyone) == (False, "@all does not address the bot")
    assert should_answer(plain, "always")[0] is True
    assert should_answer(mentioned, "mention", {"oc_g": "never"}) == (False, "group policy never")
    assert should_answer(plain, "never", {"oc_g": "always"})[0] is True
    assert should_answer(direct, "never") == (True, "direct message")
    with pytest.raises(ValueError, match="one of always, mention, never"):
        should_answer(plain, "sometimes")


def test_someone_else_mentioned_does_not_wake_the_bot() -> None:
    message = incoming_from_event(text_event("@_user_2 can you check", mentions=(ALICE,)), BOT)
    assert message.text == "@Alice can you check" and not message.mentions_bot
    assert should_answer(message)[0] is False


POST = {
    "title": "Bug report",
    "content": [
        [
            {"tag": "at", "user_id": "@_user_1", "user_name": "gatewatch"},
            {"tag": "text", "text": " why does this fail? "},
            {"tag": "a", "text": "the log", "href": "https://example.com/log"},
        ],
        [{"tag": "code_block", "language": "PYTHON", "text": "def f():\n    return 1/0\n"}],
        [{"tag": "hr"}],
        [
            {"tag": "text", "text": "cc "},
            {"tag": "at", "user_id": "@_user_2", "user_name": "Alice"},
            {"tag": "emotion", "emoji_type": "SMILE"},
            {"tag": "img", "image_key": "img_1"},
        ],
        [{"tag": "md", "text": "**bold** move\n- a\n  - b"}],
    ],
}
FLAT = (
    "Bug report\n"
    "why does this fail? [the log](https://example.com/log)\n"
    "```python\ndef f():\n    return 1/0\n```\n"
    "---\n"
    "cc @Alice:SMILE:[image]\n"
    "**bold** move\n- a\n  - b"
)


def test_post_is_flattened_to_markdown_in_both_shapes() -> None:
    assert flatten_post(POST, (BOT_MENTION, ALICE), BOT) == (FLAT, True)
    assert flatten_post({"zh_cn": POST}, (BOT_MENTION, ALICE), BOT) == (FLAT, True)
    message = incoming_from_event(event("post", json.dumps(POST), mentions=(BOT_MENTION, ALICE)), BOT)
    assert (message.text, message.mentions_bot, message.ignorable) == (FLAT, True, False)
    assert should_answer(message)[0] is True


def test_post_without_bot_mention_and_with_at_all() -> None:
    post = {
        "content": [[{"tag": "at", "user_id": "all", "user_name": "所有人"}, {"tag": "text", "text": "deploy at 5"}]]
    }
    message = incoming_from_event(event("post", json.dumps(post)), BOT)
    assert (message.text, message.mentions_bot, message.mentions_all) == ("deploy at 5", False, True)


def test_images_files_get_a_friendly_answer_and_empty_or_recalled_are_ignored() -> None:
    image = incoming_from_event(event("image", json.dumps({"image_key": "img_1"}), chat_type="p2p"), BOT)
    assert image.text is None and image.unreadable_reply == unreadable_reply("image")
    assert "an image" in image.unreadable_reply and "only text, images, files" in image.unreadable_reply
    assert "a file" in unreadable_reply("file") and "this kind of message" in unreadable_reply("hologram")
    for content in (None, "", "{}", "not json", json.dumps({"text": "  "})):
        message = incoming_from_event(event(content=content, chat_type="p2p"), BOT)
        assert message.ignorable and should_answer(message) == (False, "empty or recalled message")
    no_id = incoming_from_event(text_event("hello", chat_type="p2p", message_id=None), BOT)
    assert no_id.ignorable


def test_history_key_per_chat_or_per_user_in_groups() -> None:
    group = incoming_from_event(text_event("hi"), BOT)
    direct = incoming_from_event(text_event("hi", chat_type="p2p", chat_id="oc_p"), BOT)
    assert history_key(group) == "oc_g" and history_key(group, per_user_in_groups=True) == "oc_g/ou_sender"
    assert history_key(direct, per_user_in_groups=True) == "oc_p"


def test_the_sdk_event_object_is_read_like_the_dict() -> None:
    from lark_oapi.api.im.v1 import P2ImMessageReceiveV1

    data = P2ImMessageReceiveV1(text_event("@_user_1 hi @_user_2", mentions=(BOT_MENTION, ALICE)))
    message = incoming_from_event(data, BOT)
    assert (message.event_id, message.message_id, message.sender_id) == ("ev_1", "om_1", "ou_sender")
    assert (message.text, message.mentions_bot, message.mentions) == ("hi @Alice", True, (BOT_MENTION, ALICE))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/help", ("help", None)),
        ("  /MODEL  ", ("model", None)),
        ("/model gpt-4o-mini", ("model", "gpt-4o-mini")),
        ("/reset", ("reset", None)),
        ("/status", ("status", None)),
        ("/frobnicate now", ("unknown", "now")),
    ],
)
def test_commands_parse(text: str, expected: tuple[str, str | None]) -> None:
    command = parse_command(text)
    assert command is not None
    assert (command.name, command.argument) == expected


@pytest.mark.parametrize("text", [None, "", "hello /help", "/usr/bin/python is slow", "/ ", "//x"])
def test_ordinary_text_is_not_a_command(text: str | None) -> None:
    assert parse_command(text) is None


def test_unknown_command_answer_lists_the_commands() -> None:
    answer = unknown_command_text(present(parse_command("/frobnicate")))
    assert answer.startswith("I don't know /frobnicate.") and all(f"/{name}" in answer for name in COMMANDS)
