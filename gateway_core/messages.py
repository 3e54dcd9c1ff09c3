"""What a Feishu message says, and whether the bot should answer it: pure functions, no I/O.

Feishu hands the bot more than plain text: rich-text `post` messages (what a client sends as soon
as someone pastes code or a link), @-mentions encoded as `@_user_N` keys that `message.mentions[]`
resolves, `@_all`, images, files, recalled (empty) messages. This module turns one
`im.message.receive_v1` event into an `IncomingMessage`: the text a model should read, whether the
bot itself was mentioned, and what to say when the message is nothing a model can read. It also
decides the group policy (`always` / `mention` / `never`). Message text is untrusted: it is only
parsed as JSON and copied, never interpreted.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, get_args

GroupPolicy = Literal["always", "mention", "never"]  # the profile key feishu.group_policy
GROUP_POLICIES: tuple[GroupPolicy, ...] = get_args(GroupPolicy)
DEFAULT_GROUP_POLICY: GroupPolicy = "mention"  # feishu.group_policy's default (config/schema.py reads it)
ALL_KEY = "@_all"  # @everyone: never counts as talking to the bot
# a mention key with the blanks around it, so removing one leaves no double space
MENTION_KEY = re.compile(r"(?P<pre>[ \t]*)(?P<key>@_user_\d+|@_all)(?P<post>[ \t]*)")

# What a model cannot read gets a short, friendly answer instead of silence or an error. Images,
# files and voice messages are read by the media step (media.py); this is their answer only where
# there is none (a gateway without one).
UNREADABLE = {
    "image": "an image",
    "file": "a file",
    "audio": "a voice message",
    "media": "a video",
    "sticker": "a sticker",
    "interactive": "a card",
    "share_chat": "a shared group",
    "share_user": "a shared contact",
    "location": "a location",
    "merge_forward": "forwarded messages",
}


@dataclass(frozen=True)
class Mention:
    """One entry of `message.mentions[]`: the key used in the text, who it is, their name."""

    key: str
    open_id: str
    name: str


@dataclass(frozen=True)
class IncomingMessage:
    """One user message: what Feishu delivered, and how the bot reads it. The gateway's one record
    of an inbound message: the SDK handler makes it, the journal stores it, the pipeline answers it.

    The facts (ids, chat, sender, type, `raw_content`, `mentions`, arrival time) are fixed at
    arrival. The reading is derived from them for `bot_open_id`, the bot's own open_id when it was
    known (None: every mention reads as a name, none as the bot's); `read_by` re-reads a message
    once the bot knows who it is. `text` is what the model should read (mentions resolved, post
    flattened), None when the type is not readable — `unreadable_reply` is then the friendly
    answer. `ignorable` marks recalled/empty messages and events without a message id: no answer.
    """

    event_id: str
    message_id: str
    chat_id: str
    chat_type: str  # "p2p" | "group" (Feishu also says "topic_group" for topic groups)
    sender_id: str
    message_type: str
    raw_content: str  # the event's message.content, a JSON string
    received_at: float
    mentions: tuple[Mention, ...] = ()  # message.mentions[], mapping @_user_N keys to people
    root_id: str = ""
    thread_id: str = ""
    bot_open_id: str | None = None
    text: str | None = field(init=False)
    mentions_bot: bool = field(init=False)
    mentions_all: bool = field(init=False)
    unreadable_reply: str | None = field(init=False)
    ignorable: bool = field(init=False)

    def __post_init__(self) -> None:
        text, bot, everyone, unreadable, ignorable = interpret(
            self.message_type, self.raw_content, self.mentions, self.bot_open_id
        )
        for name, value in (
            ("text", text),
            ("mentions_bot", bot),
            ("mentions_all", everyone),
            ("unreadable_reply", unreadable),
            ("ignorable", ignorable or not self.message_id),  # never answer an event without a message id
        ):
            object.__setattr__(self, name, value)

    @property
    def is_group(self) -> bool:
        return self.chat_type != "p2p"

    def read_by(self, bot_open_id: str | None) -> IncomingMessage:
        """This message as the bot with `bot_open_id` reads it (its own mention told apart)."""
        return self if bot_open_id == self.bot_open_id else dataclasses.replace(self, bot_open_id=bot_open_id)


# ---------------------------------------------------------------------------- mentions


def mentions_from_event(raw: Any) -> tuple[Mention, ...]:
    """`message.mentions` (SDK MentionEvent objects or plain dicts) as Mention records."""
    result = []
    for item in raw or ():
        key, name, ident = _field(item, "key"), _field(item, "name"), _field(item, "id")
        open_id = _field(ident, "open_id") if ident is not None else None
        if isinstance(key, str) and key:
            result.append(
                Mention(key, open_id if isinstance(open_id, str) else "", name if isinstance(name, str) else "")
            )
    return tuple(result)


def resolve_mentions(text: str, mentions: tuple[Mention, ...], bot_open_id: str | None) -> tuple[str, bool, bool]:
    """Replace `@_user_N` keys in `text`: the bot's own mention is removed, others become `@Name`.

    Returns (text, the bot was mentioned, @_all was used). `@_all` is removed from the text and
    reported separately: it addresses everyone, not the bot. A key with no mentions[] entry is
    left as it is (it was typed by the user).
    """
    by_key = {m.key: m for m in mentions}
    mentioned_bot = False
    mentioned_all = False

    def replace(match: re.Match[str]) -> str:
        nonlocal mentioned_bot, mentioned_all
        key, blanks = match.group("key"), (" " if match.group("pre") or match.group("post") else "")
        if key == ALL_KEY:
            mentioned_all = True
            return blanks
        mention = by_key.get(key)
        if mention is None:
            return match.group(0)
        if bot_open_id and mention.open_id == bot_open_id:
            mentioned_bot = True
            return blanks
        if not mention.name:
            return blanks
        return f"{match.group('pre')}@{mention.name}{match.group('post')}"

    return MENTION_KEY.sub(replace, text).strip(), mentioned_bot, mentioned_all


def _tidy(text: str) -> str:
    """Collapse the runs of blanks that removed elements leave in a prose line."""
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# ---------------------------------------------------------------------------- post (rich text)


def flatten_post(
    content: Mapping[str, Any], mentions: tuple[Mention, ...] = (), bot_open_id: str | None = None
) -> tuple[str, bool]:
    """Flatten a `post` message to Markdown-ish text; return (text, the bot was @-mentioned).

    Accepts both shapes Feishu uses: flat `{"title", "content"}` (what receive events carry) and
    the i18n-wrapped `{"zh_cn": {"title", "content"}}` (the first locale present is used).
    `content` is a list of paragraphs, each a list of elements. An `at` element's user_id is a
    mention key (resolved through `mentions`) or an open id; the bot's own mention is dropped.
    """
    body = _post_body(content)
    mentioned_bot = False
    lines: list[str] = []
    title = body.get("title")
    if isinstance(title, str) and title.strip():
        lines.append(title.strip())
    for paragraph in body.get("content") or ():
        if not isinstance(paragraph, list):
            continue
        elements = [e for e in paragraph if isinstance(e, Mapping)]
        parts: list[str] = []
        for element in elements:
            piece, is_bot = _flatten_element(element, mentions, bot_open_id)
            mentioned_bot = mentioned_bot or is_bot
            parts.append(piece)
        joined = "".join(parts)
        # code and Markdown keep their spacing; prose loses the blanks a dropped mention left
        preformatted = any(e.get("tag") in ("code_block", "md") for e in elements)
        lines.append(joined.strip("\n") if preformatted else _tidy(joined))
    return "\n".join(line for line in lines if line).strip(), mentioned_bot


def _post_body(content: Mapping[str, Any]) -> Mapping[str, Any]:
    if "content" in content or "title" in content:
        return content
    for value in content.values():  # {"zh_cn": {...}} / {"en_us": {...}}
        if isinstance(value, Mapping):
            return value
    return {}


def _flatten_element(
    element: Mapping[str, Any], mentions: tuple[Mention, ...], bot_open_id: str | None
) -> tuple[str, bool]:
    tag = element.get("tag")
    text = _str(element.get("text"))
    if tag == "text":
        return text, False
    if tag == "a":
        href = _str(element.get("href"))
        return (f"[{text or href}]({href})" if href else text), False
    if tag == "at":
        user_id = _str(element.get("user_id"))
        if user_id in ("all", ALL_KEY):
            return "", False
        mention = next((m for m in mentions if user_id in (m.key, m.open_id)), None)
        open_id = mention.open_id if mention else user_id
        if bot_open_id and open_id == bot_open_id:
            return "", True
        name = (mention.name if mention else "") or _str(element.get("user_name"))
        return (f"@{name}" if name else ""), False
    if tag == "code_block":
        language = _str(element.get("language"))
        return f"\n```{language.lower()}\n{text.rstrip()}\n```\n", False
    if tag == "md":
        return text, False
    if tag == "hr":
        return "\n---\n", False
    if tag == "img":
        return "[image]", False
    if tag == "media":
        return "[video]", False
    if tag == "emotion":
        emoji = _str(element.get("emoji_type"))
        return f":{emoji}:" if emoji else "", False
    return text, False


# ---------------------------------------------------------------------------- the whole event


def interpret(
    message_type: str, raw_content: str | None, mentions: tuple[Mention, ...], bot_open_id: str | None
) -> tuple[str | None, bool, bool, str | None, bool]:
    """What one message says: (text, mentions bot, mentions all, unreadable reply, ignorable)."""
    try:
        content = json.loads(raw_content) if raw_content else None
    except ValueError:
        content = None
    if not isinstance(content, dict) or not content:
        return None, False, False, None, True  # recalled, empty or garbled: nothing to answer
    if message_type == "text":
        raw_text = content.get("text")
        if not isinstance(raw_text, str):
            return None, False, False, None, True
        text, bot, everyone = resolve_mentions(raw_text, mentions, bot_open_id)
        return text, bot, everyone, None, not text and not bot
    if message_type == "post":
        text, bot = flatten_post(content, mentions, bot_open_id)
        return text, bot, _post_mentions_all(content), None, not text and not bot
    return None, False, False, unreadable_reply(message_type), False


def _post_mentions_all(content: Mapping[str, Any]) -> bool:
    for paragraph in _post_body(content).get("content") or ():
        for element in paragraph if isinstance(paragraph, list) else ():
            if (
                isinstance(element, Mapping)
                and element.get("tag") == "at"
                and element.get("user_id") in ("all", ALL_KEY)
            ):
                return True
    return False


def unreadable_reply(message_type: str) -> str:
    """The friendly answer to a message type the model cannot read."""
    what = UNREADABLE.get(message_type, "this kind of message")
    return f"I got {what}, but I can read only text, images, files and voice messages for now. Could you describe it in words?"


def incoming_from_event(data: Any, bot_open_id: str | None, received_at: float | None = None) -> IncomingMessage:
    """The record of the SDK's P2ImMessageReceiveV1 (or the same shape as dicts); only parses."""
    header, event = _field(data, "header"), _field(data, "event")
    message, sender = _field(event, "message"), _field(event, "sender")
    sender_ids = _field(sender, "sender_id")
    return IncomingMessage(
        event_id=_str(_field(header, "event_id")),
        message_id=_str(_field(message, "message_id")),
        chat_id=_str(_field(message, "chat_id")),
        chat_type=_str(_field(message, "chat_type")),
        sender_id=_str(_field(sender_ids, "open_id")) or _str(_field(sender_ids, "user_id")),
        message_type=_str(_field(message, "message_type")),
        raw_content=_str(_field(message, "content")),
        received_at=time.time() if received_at is None else received_at,
        mentions=mentions_from_event(_field(message, "mentions")),
        root_id=_str(_field(message, "root_id")),
        thread_id=_str(_field(message, "thread_id")),
        bot_open_id=bot_open_id,
    )


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------- group policy


def group_policy_for(chat_id: str, default: str, per_chat: Mapping[str, str] | None = None) -> str:
    """The policy of one chat: its own entry if configured, else the profile's default."""
    policy = (per_chat or {}).get(chat_id, default)
    if policy not in GROUP_POLICIES:
        raise ValueError(f"group policy must be one of {', '.join(GROUP_POLICIES)}, not {policy!r}")
    return policy


def should_answer(
    message: IncomingMessage, default_policy: str = DEFAULT_GROUP_POLICY, per_chat: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Decide whether to answer; return (answer?, why) — the reason is for the log and console.

    p2p chats are always answered. In groups: `always` answers every message, `mention` only
    those that @-mention the bot itself (`@_all` does not count), `never` none.
    """
    if message.ignorable:
        return False, "empty or recalled message"
    if not message.is_group:
        return True, "direct message"
    policy = group_policy_for(message.chat_id, default_policy, per_chat)
    if policy == "always":
        return True, "group policy always"
    if policy == "never":
        return False, "group policy never"
    if message.mentions_bot:
        return True, "the bot was mentioned"
    if message.mentions_all:
        return False, "@all does not address the bot"
    return False, "group message without a mention of the bot"


def history_key(message: IncomingMessage, per_user_in_groups: bool = False) -> str:
    """Whose conversation a message belongs to: the chat, or in groups optionally chat + sender."""
    if message.is_group and per_user_in_groups:
        return f"{message.chat_id}/{message.sender_id}"
    return message.chat_id
