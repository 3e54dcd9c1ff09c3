"""The message pipeline: every inbound message gets exactly one answer, across restarts too.

The gateway journals a message (see journal.py) before Feishu's event is acked, and hands only new
ones to `accept`; a redelivery is recognised there by message id and event id, also after a
restart. Here each message goes received → answering → answer stored → reply sent → answered, each
step written to the journal, so a new owner can pick up any message at the step where the last one
stopped (`redrive`). Whatever goes wrong (every model down, an unexpected error) still produces a
reply — an apology rather than silence — and the reply carries an idempotency key derived from the
message id, so re-sending it after a crash cannot show it twice.

Before the model is asked, a message is judged (issue 13): empty or recalled messages and group
messages not addressed to the bot (policy `always` / `mention` / `never`, per profile and per
chat) are journaled as dropped with the reason and never answered; stickers, cards and the like
get a short friendly answer; in-chat commands (`/help`, `/model`, `/reset`, `/status`) are answered here
without the model. Whether the bot itself was @-mentioned needs its open_id (learnt at connect):
a group message with mentions waits for it up to `identity_wait` seconds, and is then *held*
(left unfinished in the journal, re-driven as soon as the identity is known) — never guessed at,
never lost.

Before any of that, the access gate (issue 19, access.py) judges who is writing: right after the
journal recorded a message (and for a re-drive of one never judged) and before the scheduler sees
it. A refused message is journaled as `refused` with the reason straight away, so it is never
re-driven; its notice (a pairing code, a polite refusal, "slow down"), if any, is sent once,
best-effort, and costs no model call.

Then the media step (issue 20, media.py): images, files and voice notes are downloaded (deadline,
size cap; again on every re-drive, as bytes are never journaled) and become the model's input —
content parts for a vision model, a file's text, a transcript — or a polite reply journaled with
the reason. While a text answer is prepared, a "Typing" reaction shows on the user's message
(`TypingIndicator`), removed once the reply is out; it never delays nor fails the answer.

Replies go out as streaming CardKit cards (`reply_mode = "stream"`) or plain text replies, a long
answer in as many parts as Feishu's size limits need (delivery.py): how it is being delivered is
journaled before anything it describes can be seen, so a re-drive (or a retry) resumes at the same
card or part; a card never follows a text reply, and text follows cards only for the rest of an
answer a card could not take. Without the CardKit scope the pipeline falls back to text once and
remembers (`CardKitClient.unavailable`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .access import AccessGate, AccessSnapshot, Judgement
from .cardkit import CardKitClient
from .commands import Command, help_text, parse_command, unknown_command_text
from .delivery import ROTATE_AFTER, AnswerDelivery, DeliveryRecord
from .journal import ChatSettings, Journal, JournalError, JournalSnapshot, PendingMessage
from .llm import AllModelsFailed, LlmClient
from .logs import escape_untrusted
from .media import MediaReader, MediaRefused, ModelInput, media_of
from .messages import IncomingMessage, group_policy_for, history_key, should_answer
from .replies import ReplySender, TypingIndicator
from .scheduler import DEFAULT_MAX_IN_FLIGHT, AnswerScheduler
from .states import DeliveryMode, MessageState, Outcome, ReplyMode

log = logging.getLogger("gatewatch.pipeline")

APOLOGY = "Sorry — the language model is unavailable right now. Please try again in a few minutes."
UNSUPPORTED = "Sorry — only text messages are supported."
EMPTY = "Send me some text and I will answer."
JUST_A_MENTION = "You mentioned me without a question. " + help_text()
STALE = (
    "Sorry — this message came in while I was restarting, and it is too old now for a good answer. "
    "Please send it again if you still need one."
)
ACTIVITY_SIZE = 200
DETAIL_CHARS = 2000  # per text in an Activity: the console's detail view, bounded (snapshots carry them)
REPLY_ATTEMPTS = 3
# A reply that failed every attempt (Feishu down, the tenant token refused) is tried again this long
# after, by this owner, for as long as it runs: its answer is already in the journal.
REDELIVERY_INTERVAL = 30.0


@dataclass(frozen=True)
class Activity:
    """One handled message, for the console's activity table."""

    at: float
    chat_id: str
    sender_id: str
    preview: str
    model: str | None
    latency: float | None
    outcome: Outcome
    # For the console's detail view; raw (untrusted) text, cut at DETAIL_CHARS, escaped where shown.
    message_id: str = ""
    event_id: str = ""
    text: str = ""  # what the user wrote
    reply: str = ""  # what the gateway sent back (or tried to)
    reply_mode: DeliveryMode | None = None  # None: nothing sent (ignored)
    delivery: str = ""  # how the reply went out: "1 card", "2 cards + 1 text part", "3 text parts"
    media: str = ""  # an image, file or voice note: its name, size and type (never its content)


@dataclass(frozen=True)
class Answering:
    """An answer in progress, for the console's streaming rows."""

    message_id: str
    chat_id: str
    sender_id: str
    preview: str  # escaped, short
    started_at: float
    reply_mode: DeliveryMode
    chunks: int = 0  # streamed pieces from the model so far (about one token each)
    chars: int = 0  # characters of the answer so far


@dataclass(frozen=True)
class ChatRules:
    """How the pipeline treats chats: reply mode, group policy, history, who may switch for all."""

    reply_mode: ReplyMode = ReplyMode.TEXT
    group_policy: str = "mention"
    chat_policies: Mapping[str, str] = field(default_factory=dict)
    per_user_history: bool = False
    admins: frozenset[str] = frozenset()
    identity_wait: float = 10.0  # seconds a group message with mentions waits for the bot's open_id


@dataclass(frozen=True)
class PipelineSnapshot:
    received: int
    duplicates: int
    answered: int
    apologies: int
    reply_failures: int
    in_flight: int  # accepted and not yet finished: answering now, or queued for a turn
    last_message_at: float | None
    activity: tuple[Activity, ...]
    pending: int = 0  # journaled messages not yet answered (including those in flight)
    oldest_pending_at: float | None = None
    journal_writes: int = 0  # arrival writes (on the ack path) since start
    journal_write_times: tuple[float, ...] = ()  # seconds, the most recent ones
    queued: int = 0  # of in_flight, those waiting for their chat's turn or a free slot
    answering: tuple[Answering, ...] = ()  # answers in progress (streaming rows)
    reply_mode: ReplyMode = ReplyMode.TEXT  # the profile's
    cardkit_unavailable: str | None = None  # why streaming fell back to text (remembered), or None

    @classmethod
    def empty(cls) -> PipelineSnapshot:
        """Before there is a pipeline: nothing received, nothing pending."""
        return cls(
            received=0,
            duplicates=0,
            answered=0,
            apologies=0,
            reply_failures=0,
            in_flight=0,
            last_message_at=None,
            activity=(),
        )

    ignored: int = 0  # messages ignored (not addressed to the bot, empty, recalled)
    commands: int = 0  # in-chat commands answered
    held: int = 0  # group messages waiting for the bot's identity
    bot_open_id: str | None = None
    apologies_in_a_row: int = 0  # "the model is unavailable" replies since the last real answer
    access: AccessSnapshot | None = None  # the access gate: policy, pending pairing codes, refusals


def _bounded(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


class MessagePipeline:
    """Runs on the gateway's loop; `accept` (new arrivals) and `redrive` (a predecessor's) feed it."""

    def __init__(
        self,
        llm: LlmClient,
        replies: ReplySender,
        journal: Journal,
        history_turns: int,
        system_prompt: str,
        stale_after: float = 6 * 3600.0,
        retry_delay: float = 0.5,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        *,
        rules: ChatRules | None = None,
        cardkit: CardKitClient | None = None,
        status_line: Callable[[], str] | None = None,
        access: AccessGate | None = None,
        media: MediaReader | None = None,
        typing: TypingIndicator | None = None,
    ):
        self._llm = llm
        self._replies = replies
        self._journal = journal
        self._history_len = 2 * history_turns
        self._system_prompt = system_prompt
        self._stale_after = stale_after
        self._retry_delay = retry_delay
        # One answer at a time per chat (its history stays coherent, its replies in order).
        self.scheduler = AnswerScheduler(max_in_flight)
        self._in_progress: set[str] = set()  # message ids submitted and not finished
        # Messages whose reply failed every attempt, with when each may be tried again (monotonic).
        self._undelivered: dict[str, float] = {}
        self.redelivery_interval = REDELIVERY_INTERVAL
        self._activity: deque[Activity] = deque(maxlen=ACTIVITY_SIZE)
        self._received = self._duplicates = self._answered = self._apologies = self._reply_failures = 0
        self._last_message_at: float | None = None
        self._apologies_in_a_row = 0
        self.journal_failure: str | None = None  # set once a journal write failed: the owner must stop
        self.rules = rules or ChatRules()
        self._cardkit = cardkit
        self._status_line = status_line or (lambda: "status unknown")
        self._bot_open_id: str | None = None
        self._identity_known = asyncio.Event()
        self._held: dict[str, IncomingMessage] = {}  # waiting for the bot's identity
        # How each answer in progress is delivered (its cards and text parts), and the records a
        # re-drive found journaled for messages not started yet.
        self._deliveries: dict[str, AnswerDelivery] = {}
        self._journaled_deliveries: dict[str, DeliveryRecord] = {}
        self.card_rotate_after = ROTATE_AFTER  # a card older than this continues in a new one
        self._answering: dict[str, Answering] = {}
        # `snapshot()` is read from other threads (the console runs the gateway on a loop thread
        # of its own): the two collections it copies are changed under this lock, since copying a
        # deque or a dict while the loop changes it raises. Counters are read as they are.
        self._shown_guard = threading.Lock()
        self._ignored = self._commands = 0
        self.access = access
        # The media step (images, files, voice notes) and the typing sign; None: neither.
        self._media = media
        self.typing = typing
        self._media_seen: dict[str, tuple[str, str]] = {}  # message id -> (text shown, media facts)

    def accept(self, message: IncomingMessage) -> None:
        """Start answering a message the journal just recorded as new. Must run on the gateway's loop."""
        self._received += 1
        self._last_message_at = message.received_at
        log.info(
            "message %s from %s in %s: %s",
            message.message_id,
            message.sender_id,
            message.chat_id,
            escape_untrusted(message.text if message.text is not None else f"<{message.message_type}>"),
        )
        if not self._refused_at_gate(message):
            self._start(message, None)

    def note_duplicate(self, message: IncomingMessage) -> None:
        """A redelivery the journal recognised: it is (being) answered already, so nothing is sent."""
        self._duplicates += 1
        log.info("duplicate delivery of %s ignored", message.message_id)

    def learn_bot_identity(self, open_id: str) -> int:
        """The bot's own open_id is known: judge mentions with it, answer the held messages."""
        self._bot_open_id = open_id
        self._identity_known.set()
        held, self._held = list(self._held.values()), {}
        for message in held:
            self._start(message, None)
        if held:
            log.info("answering %d group messages held until the bot's identity was known", len(held))
        return len(held)

    def redrive(self, pending: list[PendingMessage]) -> int:
        """Answer what a previous owner left unfinished, oldest first (so each chat stays in order)."""
        started = 0
        for item in pending:
            if item.message.message_id in self._in_progress:
                continue
            if item.state == MessageState.RECEIVED and self._refused_at_gate(item.message):
                continue  # never judged before the last owner stopped: judged now
            if item.checkpoint or item.reply_mode:
                record = DeliveryRecord.from_json(item.checkpoint, item.reply_mode)
                self._journaled_deliveries[item.message.message_id] = record
            log.info(
                "re-driving %s from %s (%s, %.0fs old)",
                item.message.message_id,
                item.message.chat_id,
                item.state,
                time.time() - item.message.received_at,
            )
            self._start(item.message, item)
            started += 1
        return started

    def redeliver_due(self, unfinished: Callable[[], list[PendingMessage]]) -> int:
        """Send again the replies that failed every attempt and have waited their interval.

        Their answers are in the journal (`unfinished` reads it, only when one is due), so this
        is a re-drive of those messages: no second LLM call, the same reply uuid or card.
        """
        now = time.monotonic()
        due = {message_id for message_id, at in self._undelivered.items() if at <= now}
        if not due:
            return 0
        for message_id in due:
            del self._undelivered[message_id]
        return self.redrive([item for item in unfinished() if item.message.message_id in due])

    def _start(self, message: IncomingMessage, pending: PendingMessage | None) -> None:
        # Arrivals and re-drives go through the one scheduler: the same in-flight limit, and each
        # chat's turns in the order they were submitted.
        self._in_progress.add(message.message_id)
        self.scheduler.submit(message.chat_id, self._answer, message, pending)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for in-flight answers, then cancel the rest; return how many.

        A cancelled answer is not lost: its journal row stays unfinished and the next owner answers
        it. Cancelling (rather than waiting for a slow model) is what keeps a stop within budget.
        """
        cancelled = await self.scheduler.cancel_all() if await self.scheduler.wait_idle(timeout) else 0
        if self.typing is not None:
            await self.typing.close(min(1.0, timeout))
        return cancelled

    async def _answer(self, message: IncomingMessage, pending: PendingMessage | None) -> None:
        try:
            await self._answer_and_record(message, pending)
        finally:
            self._in_progress.discard(message.message_id)
            self._media_seen.pop(message.message_id, None)
            if self.typing is not None:
                # The reply is out, or the answer ended; a re-driven message may also carry the
                # sign of a predecessor killed mid-answer.
                self.typing.stop(message.message_id, leftovers=pending is not None)
            delivery = self._deliveries.pop(message.message_id, None)
            if delivery is not None:
                await delivery.abandon()  # cancelled or failed: the journaled record resumes it

    async def _answer_and_record(self, message: IncomingMessage, pending: PendingMessage | None) -> None:
        started = time.monotonic()
        model: str | None = None
        reason = ""
        shown = message.text if message.text is not None else f"<{message.message_type}>"
        try:
            self._journal.mark_answering(message.message_id)
            if pending is not None and pending.answer is not None:
                # Answered already: by the model (it has a model), else by a command whose effect
                # was stored with this reply (`answer_locally`) and must not happen twice.
                text, model = pending.answer, pending.model
                outcome = Outcome.ANSWERED if model is not None else Outcome.COMMAND
            else:
                read = await self._read(message)
                if read is None:
                    return  # held until the bot's identity is known; still unfinished in the journal
                shown = read.text if read.text is not None else shown
                answer, why = should_answer(read, self.rules.group_policy, self.rules.chat_policies)
                if not answer:
                    self._ignore(read, why)
                    return
                text, model, outcome, reason = await self._respond(read)
                shown = self._media_seen.get(message.message_id, (shown, ""))[0]
        except asyncio.CancelledError:
            raise
        except JournalError as exc:
            self._journal_failed(exc)
            return
        except Exception:
            # Never silence: whatever broke, the user still gets an answer.
            log.exception("unexpected error while answering %s", message.message_id)
            text, outcome, reason = APOLOGY, Outcome.APOLOGISED, "unexpected error"
        finally:
            self._show_answering(message.message_id, None)
        if outcome == Outcome.APOLOGISED:
            self._apologies += 1
            if not reason.startswith("stale"):  # a too-old message says nothing about the models
                self._apologies_in_a_row += 1
        elif outcome == Outcome.ANSWERED:
            self._apologies_in_a_row = 0
        try:
            reply_id = await self._deliver(message, text)
        except JournalError as exc:
            self._journal_failed(exc)
            return
        if reply_id is not None:
            try:
                self._record_done(message, outcome, reply_id, model, time.monotonic() - started, reason)
            except JournalError as exc:
                self._journal_failed(exc)
                return
            if outcome == Outcome.ANSWERED:
                self._answered += 1
            elif outcome == Outcome.COMMAND:
                self._commands += 1
        else:
            # Stays unfinished in the journal, answer stored: retried here after a while
            # (redeliver_due), and by the next owner if this one stops first.
            outcome = Outcome.REPLY_FAILED
            self._undelivered[message.message_id] = time.monotonic() + self.redelivery_interval
        self._remember(message, shown, text, model, time.monotonic() - started, outcome)

    def _remember(
        self,
        message: IncomingMessage,
        shown: str,
        reply: str,
        model: str | None,
        latency: float | None,
        outcome: Outcome,
    ) -> None:
        delivery = self._deliveries.get(message.message_id)
        record = delivery.record if delivery is not None and reply else None
        media = self._media_seen.get(message.message_id, ("", ""))[1]
        self._show_activity(
            Activity(
                at=message.received_at,
                chat_id=message.chat_id,
                sender_id=message.sender_id,
                preview=escape_untrusted(shown, 60),
                model=model,
                latency=latency,
                outcome=outcome,
                message_id=message.message_id,
                event_id=message.event_id,
                text=_bounded(shown),
                reply=_bounded(reply),
                reply_mode=record.mode if record is not None else (DeliveryMode.TEXT if reply else None),
                delivery=record.describe() if record is not None else "",
                media=media,
            )
        )

    # -- judging a message -----------------------------------------------------------------------

    def _refused_at_gate(self, message: IncomingMessage) -> bool:
        """The access gate: True if the message is refused (journaled so, its notice on its way)."""
        if self.access is None or message.ignorable:
            return False  # an empty or recalled message is dropped unanswered anyway: no notice for it
        try:
            addressed = message.read_by(self._bot_open_id).mentions_bot if self._bot_open_id else False
            judgement = self.access.judge(
                message.sender_id, message.chat_id, message.is_group, message.message_id, addressed
            )
            if judgement.admitted:
                return False
            assert judgement.reason is not None
            self._journal.mark_refused(message.message_id, judgement.reason)
        except JournalError as exc:
            self._journal_failed(exc)
            return True  # not answered by this owner: the next one judges it again
        log.info("message %s from %s refused: %s", message.message_id, message.sender_id, judgement.reason)
        shown = message.text if message.text is not None else f"<{message.message_type}>"
        self._remember(message, shown, judgement.shown_notice, None, None, Outcome.REFUSED)
        if judgement.notice is not None:
            self.scheduler.submit(message.chat_id, self._send_notice, message, judgement)
        return True

    async def _send_notice(self, message: IncomingMessage, judgement: Judgement) -> None:
        """A refused message's one notice: tried once (a courtesy, never re-driven), no model."""
        assert judgement.notice is not None and judgement.reason is not None
        try:
            reply_id = await self._replies.reply_text(message.message_id, judgement.notice, message.chat_id)
            self._journal.mark_refused(message.message_id, judgement.reason, reply_id)
        except JournalError as exc:
            self._journal_failed(exc)
        except Exception as exc:
            log.warning("the access notice to %s was not delivered: %s", message.message_id, exc)

    async def _read(self, message: IncomingMessage) -> IncomingMessage | None:
        """The message read with the bot's own mention told apart; None when it must be held."""
        if self._bot_open_id is None and message.chat_type != "p2p" and message.mentions:
            policy = group_policy_for(message.chat_id, self.rules.group_policy, self.rules.chat_policies)
            if policy != "never":
                try:
                    await asyncio.wait_for(self._identity_known.wait(), self.rules.identity_wait)
                except TimeoutError:
                    self._held[message.message_id] = message
                    log.warning(
                        "group message %s held: the bot's own open_id is not known yet, so whether it was"
                        " @-mentioned cannot be told (answered once it is)",
                        message.message_id,
                    )
                    return None
        return message.read_by(self._bot_open_id)

    def _ignore(self, message: IncomingMessage, why: str) -> None:
        """Not for the bot: journaled as ignored with the reason, never answered nor re-driven."""
        self._journal.mark_ignored(message.message_id, why)
        self._ignored += 1
        log.info("message %s not answered: %s", message.message_id, why)
        shown = message.text if message.text is not None else f"<{message.message_type}>"
        self._remember(message, shown, "", None, None, Outcome.IGNORED)

    async def _respond(self, message: IncomingMessage) -> tuple[str, str | None, Outcome, str]:
        """(reply text, model, outcome, reason) for a message the bot should answer."""
        refs = media_of(message) if self._media is not None else ()
        if message.text is None and not refs:
            reason = f"unsupported message type {message.message_type}"
            return message.unreadable_reply or UNSUPPORTED, None, Outcome.UNSUPPORTED, reason
        if not refs:
            if not message.text:
                if message.mentions_bot:
                    return JUST_A_MENTION, None, Outcome.COMMAND, "only a mention"
                return EMPTY, None, Outcome.UNSUPPORTED, "empty text"
            command = parse_command(message.text)
            if command is not None:
                return self._run_command(message, command), None, Outcome.COMMAND, f"/{command.word}"
        if time.time() - message.received_at > self._stale_after:
            return STALE, None, Outcome.APOLOGISED, "stale: came in while the gateway was down"
        if self.typing is not None and not self._streaming():
            self.typing.start(message.message_id)
        media = None
        if refs and self._media is not None:
            # The media step: downloaded again on every try (bytes are never journaled).
            facts = ", ".join(f"{ref.kind} {ref.name}".strip() for ref in refs)
            self._media_seen[message.message_id] = (message.text or f"<{message.message_type}>", facts)
            try:
                media = await self._media.read(message, refs)
            except MediaRefused as exc:
                log.info(
                    "message %s: %s not read (%s)",
                    message.message_id,
                    escape_untrusted(facts),
                    escape_untrusted(exc.reason),
                )
                return exc.reply, None, Outcome.UNSUPPORTED, exc.reason
            self._media_seen[message.message_id] = (media.text, media.facts)
        return await self._ask_llm(message, media)

    def _streaming(self) -> bool:
        """Whether answers go out as streaming cards now (the typing sign is for text replies)."""
        return self.rules.reply_mode == ReplyMode.STREAM and self._cardkit is not None and not self._cardkit.unavailable

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

    def _record_done(
        self, message: IncomingMessage, outcome: Outcome, reply_id: str, model: str | None, latency: float, reason: str
    ) -> None:
        """Journal the final state the outcome of a delivered reply stands for."""
        if outcome.state == MessageState.ANSWERED:
            self._journal.mark_answered(message.message_id, reply_id, model, latency)
        elif outcome.state == MessageState.APOLOGISED:
            self._journal.mark_apologised(message.message_id, reply_id, reason)
        else:
            self._journal.mark_answered_locally(message.message_id, reply_id, reason)

    def _journal_failed(self, exc: JournalError) -> None:
        if self.journal_failure is None:
            self.journal_failure = str(exc)
        log.error("%s", exc)

    # -- the model -------------------------------------------------------------------------------

    async def _ask_llm(
        self, message: IncomingMessage, media: ModelInput | None = None
    ) -> tuple[str, str | None, Outcome, str]:
        key = history_key(message, self.rules.per_user_history)
        # The scheduler runs one answer per chat at a time, so this history is the latest.
        history = self._journal.load_history(key)[-self._history_len :] if self._history_len else []
        # With media the model reads its content parts (images) or text (a file, a transcript);
        # the history keeps the turn as text: images as "[image]", never their bytes.
        user_turn = {"role": "user", "content": media.text if media is not None else message.text or ""}
        asked: dict[str, Any] = {
            "role": "user",
            "content": media.content if media is not None else user_turn["content"],
        }
        prompt: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt}, *history, asked]
        stream = await self._open_card(message)
        progress = _Progress(self, message, stream)
        try:
            answer = await self._llm.complete(
                prompt,
                progress.on_text,
                model=self._journal.chat_model(message.chat_id),
                vision=media is not None and media.vision,
            )
        except AllModelsFailed as exc:
            log.error("every model failed for %s: %s", message.message_id, exc)
            return APOLOGY, None, Outcome.APOLOGISED, "every model failed"
        finally:
            await progress.settle()
        turns = [*history, user_turn, {"role": "assistant", "content": answer.text}]
        # The answer and the chat's new history are stored before the reply is sent: a crash
        # after this point re-sends this answer rather than asking the model a second time.
        self._journal.save_answer(
            message.message_id,
            key,
            answer.text,
            answer.model,
            answer.latency,
            turns[-self._history_len :] if self._history_len else [],
        )
        log.info("answered %s with %s in %.2fs", message.message_id, answer.model, answer.latency)
        return answer.text, answer.model, Outcome.ANSWERED, ""

    # -- replies: streaming cards or text, in parts -------------------------------------------

    def _delivery_for(self, message: IncomingMessage) -> AnswerDelivery:
        """The one object delivering this message's answer (resuming a journaled record, if any)."""
        mid = message.message_id
        delivery = self._deliveries.get(mid)
        if delivery is None:
            record = self._journaled_deliveries.pop(mid, DeliveryRecord())
            delivery = self._deliveries[mid] = AnswerDelivery(
                mid,
                message.chat_id,
                record,
                replies=self._replies,
                cardkit=self._cardkit,
                save=lambda record: self._journal.save_delivery(mid, record.mode, record.to_json()),
                rotate_after=self.card_rotate_after,
            )
        return delivery

    async def _open_card(self, message: IncomingMessage) -> AnswerDelivery | None:
        """The delivery to stream this answer into cards, or None for text replies.

        A message that already has a card (a re-drive) resumes it; one that may already have a
        text reply never gets a card. Without the CardKit scope: None, remembered by the client.
        A card that failed to open is finished later by `_deliver` if it exists, else text.
        """
        delivery = self._delivery_for(message)
        record = delivery.record
        if self._cardkit is None or record.text_from is not None:
            return None
        if not record.cards and (self.rules.reply_mode != ReplyMode.STREAM or self._cardkit.unavailable):
            return None
        return delivery if await delivery.start_card() else None

    async def _deliver(self, message: IncomingMessage, text: str) -> str | None:
        """Send the reply, retrying transient failures; idempotency keys make retries safe.

        A message with cards is answered by finishing them (text follows only for what a card
        could not take); any other by text replies. Returns Feishu's id of the first reply, or
        None when every attempt failed.
        """
        delivery = self._delivery_for(message)
        delay = self._retry_delay
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                return await delivery.deliver(text)
            except JournalError:
                raise
            except Exception as exc:  # FeishuRefused, CardKitFailed, or the network failing under it
                log.warning("reply to %s failed (attempt %d/%d): %s", message.message_id, attempt, REPLY_ATTEMPTS, exc)
            if attempt < REPLY_ATTEMPTS:
                await asyncio.sleep(delay)  # backoff between retries of a failed send
                delay *= 2
        self._reply_failures += 1
        log.error(
            "reply to %s not delivered after %d attempts; trying again in %.0fs",
            message.message_id,
            REPLY_ATTEMPTS,
            self.redelivery_interval,
        )
        return None

    def _show_activity(self, activity: Activity) -> None:
        with self._shown_guard:
            self._activity.append(activity)

    def _show_answering(self, message_id: str, row: Answering | None) -> None:
        """The answer in progress for `message_id` as the console shows it; None once it is done."""
        with self._shown_guard:
            if row is None:
                self._answering.pop(message_id, None)
            else:
                self._answering[message_id] = row

    def snapshot(self) -> PipelineSnapshot:
        try:
            journal = self._journal.snapshot()
        except JournalError:
            journal = JournalSnapshot(self.scheduler.unfinished, None, "")
        with self._shown_guard:
            activity, answering = tuple(self._activity), tuple(self._answering.values())
        return PipelineSnapshot(
            received=self._received,
            duplicates=self._duplicates,
            answered=self._answered,
            apologies=self._apologies,
            reply_failures=self._reply_failures,
            in_flight=self.scheduler.unfinished,
            last_message_at=self._last_message_at,
            activity=activity,
            pending=journal.pending,
            oldest_pending_at=journal.oldest_pending_at,
            journal_writes=journal.writes,
            journal_write_times=journal.write_times,
            answering=answering,
            reply_mode=self.rules.reply_mode,
            cardkit_unavailable=self._cardkit.unavailable if self._cardkit is not None else None,
            ignored=self._ignored,
            commands=self._commands,
            held=len(self._held),
            bot_open_id=self._bot_open_id,
            apologies_in_a_row=self._apologies_in_a_row,
            access=self._access_snapshot(),
        )

    def _access_snapshot(self) -> AccessSnapshot | None:
        try:
            return self.access.snapshot() if self.access is not None else None
        except JournalError:
            return None


class _Progress:
    """An answer being written: the model's text so far goes to the cards (if any) and the console.

    The LLM client calls `on_text` synchronously on the loop; growing the cards is a coroutine, so
    one small task feeds it the newest text (never a backlog), at most every GROW_INTERVAL: the
    cards' own pace is slower still, and measuring a growing card on every token would only burn
    the loop. A refused update leaves the rest to `deliver`, which sends what is missing.
    """

    GROW_INTERVAL = 0.05

    def __init__(self, pipeline: MessagePipeline, message: IncomingMessage, delivery: AnswerDelivery | None):
        self._pipeline, self._message, self._delivery = pipeline, message, delivery
        self._latest: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._row = Answering(
            message.message_id,
            message.chat_id,
            message.sender_id,
            escape_untrusted(message.text or "", 60),
            time.time(),
            DeliveryMode.CARD if delivery is not None else DeliveryMode.TEXT,
        )
        pipeline._show_answering(message.message_id, self._row)

    def on_text(self, text: str) -> None:
        self._row = Answering(**{**self._row.__dict__, "chunks": self._row.chunks + 1, "chars": len(text)})
        self._pipeline._show_answering(self._message.message_id, self._row)
        if self._delivery is None:
            return
        self._latest = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._feed(), name=f"feed-{self._message.message_id}")

    async def _feed(self) -> None:
        assert self._delivery is not None
        while self._latest is not None:
            text, self._latest = self._latest, None
            await self._delivery.grow(text)
            await asyncio.sleep(self.GROW_INTERVAL)  # the pace of measuring; newer text merges meanwhile

    async def settle(self) -> None:
        """Let the last text reach the cards; their own pump keeps Feishu's rate limit."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
