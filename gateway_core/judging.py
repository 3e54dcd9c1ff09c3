"""Judging a message before the model is asked: who wrote it, whether it is for the bot, what it is.

Three questions, in the order the pipeline asks them (issues 13 and 19):

1. The access gate (access.py): may this sender talk to the bot here? A refused message gets at
   most one notice and never reaches the model. Empty or recalled messages are not judged: they
   are ignored anyway, so no notice goes out for them.
2. Is it addressed to the bot? Group messages follow the policy `always` / `mention` / `never`
   (per profile and per chat). Whether the bot itself was @-mentioned needs its own open_id,
   learnt at connect: a group message with mentions waits for it up to `identity_wait` seconds,
   and is then *held* (left unfinished in the journal, answered as soon as the identity is known)
   — never guessed at, never lost.
3. Can it be answered without the model? Stickers, cards and the like get a short friendly reply,
   a bare mention the help text, in-chat commands (`/help`, `/model`, `/reset`, `/status`) their
   answer, and a message that waited too long (the gateway was down) an apology. Everything else
   goes to the model.

What the bot says is a `Reply`: the text, the outcome it stands for (states.Outcome) and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .access import AccessGate, Judgement
from .commands import Command, help_text, parse_command, unknown_command_text
from .journal import ChatSettings, Journal
from .llm import LlmClient
from .media import MediaRef
from .messages import DEFAULT_GROUP_POLICY, IncomingMessage, group_policy_for, should_answer
from .states import Outcome, ReplyMode

log = logging.getLogger("gatewatch.pipeline")

APOLOGY = "Sorry — the language model is unavailable right now. Please try again in a few minutes."
UNSUPPORTED = "Sorry — only text messages are supported."
EMPTY = "Send me some text and I will answer."
JUST_A_MENTION = "You mentioned me without a question. " + help_text()
STALE = (
    "Sorry — this message came in while I was restarting, and it is too old now for a good answer. "
    "Please send it again if you still need one."
)


@dataclass(frozen=True)
class Reply:
    """What the bot answers one message: the text sent, and what it stands for in the journal."""

    text: str
    outcome: Outcome
    model: str | None = None  # the model that wrote it; None when the gateway answered itself
    reason: str = ""  # why (journaled with apologies and local answers): "/reset", "every model failed"


@dataclass(frozen=True)
class ChatRules:
    """How the pipeline treats chats: reply mode, group policy, history, who may switch for all."""

    reply_mode: ReplyMode = ReplyMode.TEXT
    group_policy: str = DEFAULT_GROUP_POLICY
    chat_policies: Mapping[str, str] = field(default_factory=dict)
    per_user_history: bool = False
    admins: frozenset[str] = frozenset()
    identity_wait: float = 10.0  # seconds a group message with mentions waits for the bot's open_id


class MessageJudge:
    """The judging steps, on the gateway's loop; the pipeline acts on what they decide."""

    def __init__(
        self,
        llm: LlmClient,
        journal: Journal,
        rules: ChatRules,
        stale_after: float,
        access: AccessGate | None,
        status_line: Callable[[], str],
    ):
        self._llm = llm
        self._journal = journal
        self.rules = rules
        self._stale_after = stale_after
        self.access = access
        self._status_line = status_line
        self.bot_open_id: str | None = None
        self._identity_known = asyncio.Event()

    def learn_bot_identity(self, open_id: str) -> None:
        self.bot_open_id = open_id
        self._identity_known.set()

    # -- 1. the access gate --------------------------------------------------------------------

    def refusal(self, message: IncomingMessage) -> Judgement | None:
        """The access gate's refusal of this message, or None when it is admitted (or not judged)."""
        if self.access is None or message.ignorable:
            return None  # an empty or recalled message is ignored anyway: no notice for it
        addressed = message.read_by(self.bot_open_id).mentions_bot if self.bot_open_id else False
        judgement = self.access.judge(
            message.sender_id, message.chat_id, message.is_group, message.message_id, addressed
        )
        return None if judgement.admitted else judgement

    # -- 2. for the bot? -----------------------------------------------------------------------

    async def read(self, message: IncomingMessage) -> IncomingMessage | None:
        """The message read with the bot's own mention told apart; None when it must be held."""
        if self.bot_open_id is None and message.chat_type != "p2p" and message.mentions:
            policy = group_policy_for(message.chat_id, self.rules.group_policy, self.rules.chat_policies)
            if policy != "never":
                try:
                    await asyncio.wait_for(self._identity_known.wait(), self.rules.identity_wait)
                except TimeoutError:
                    log.warning(
                        "group message %s held: the bot's own open_id is not known yet, so whether it was"
                        " @-mentioned cannot be told (answered once it is)",
                        message.message_id,
                    )
                    return None
        return message.read_by(self.bot_open_id)

    def addressed(self, message: IncomingMessage) -> tuple[bool, str]:
        """Whether to answer a message read by `read`, and why (the reason is journaled if not)."""
        return should_answer(message, self.rules.group_policy, self.rules.chat_policies)

    # -- 3. answered without the model? ----------------------------------------------------------

    def local_reply(self, message: IncomingMessage, media: tuple[MediaRef, ...]) -> Reply | None:
        """The reply the gateway gives itself, or None: the model answers (reading `media`, if any)."""
        if message.text is None and not media:
            reason = f"unsupported message type {message.message_type}"
            return Reply(message.unreadable_reply or UNSUPPORTED, Outcome.UNSUPPORTED, reason=reason)
        if not media:
            if not message.text:
                if message.mentions_bot:
                    return Reply(JUST_A_MENTION, Outcome.COMMAND, reason="only a mention")
                return Reply(EMPTY, Outcome.UNSUPPORTED, reason="empty text")
            command = parse_command(message.text)
            if command is not None:
                return Reply(self._run_command(message, command), Outcome.COMMAND, reason=f"/{command.word}")
        if time.time() - message.received_at > self._stale_after:
            return Reply(STALE, Outcome.APOLOGISED, reason="stale: came in while the gateway was down")
        return None

    # -- in-chat commands ------------------------------------------------------------------------

    def _run_command(self, message: IncomingMessage, command: Command) -> str:
        models = list(self._llm.config.models)
        log.info("command /%s in %s from %s", command.word, message.chat_id, message.sender_id)
        if command.name in ("reset", "model"):
            # They change chat settings: the change and the reply are stored in one transaction,
            # so a re-drive after a crash sends this reply and never runs the command again.
            return self._journal.answer_locally(
                message.message_id, lambda settings: self._change_settings(message, command, models, settings)
            )
        if command.name == "help":
            return help_text(models)
        if command.name == "status":
            return self._status_line()
        return unknown_command_text(command)

    def _change_settings(
        self, message: IncomingMessage, command: Command, models: list[str], settings: ChatSettings
    ) -> str:
        if command.name == "reset":
            forgotten = settings.forget_history(message.chat_id)
            return "Done: I forgot this chat's history." if forgotten else "This chat has no history to forget."
        return self._model_command(message, command.argument, models, settings)

    def _model_command(
        self, message: IncomingMessage, name: str | None, models: list[str], settings: ChatSettings
    ) -> str:
        chosen = settings.chat_model(message.chat_id)
        if name is None:
            current = chosen or self._llm.active_model
            scope = "chosen for this chat" if chosen else "the gateway's default"
            return f"Model here: {current} ({scope}). Models: {', '.join(models)}"
        if name not in models:
            return f"There is no model {name!r} here. Models: {', '.join(models)}"
        if message.sender_id in self.rules.admins:
            self._llm.switch_model(name)
            settings.clear_chat_models()
            log.info("admin %s switched every chat to %s", message.sender_id, name)
            return f"Every chat now uses {name} (you are an admin)."
        settings.set_chat_model(message.chat_id, name)
        return f"This chat now uses {name}."
