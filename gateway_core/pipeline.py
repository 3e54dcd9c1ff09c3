"""The message pipeline: every inbound message gets exactly one answer, across restarts too.

The gateway journals a message (see journal.py) before Feishu's event is acked, and hands only new
ones to `accept`; a redelivery is recognised there by message id and event id, also after a
restart. Here each message goes received → answering → answer stored → reply sent → answered, each
step written to the journal (its states and their allowed changes: states.py), so a new owner can
pick up any message at the step where the last one stopped (`redrive`). Whatever goes wrong (every
model down, an unexpected error) still produces a reply — an apology rather than silence — and the
reply carries an idempotency key derived from the message id, so re-sending it after a crash
cannot show it twice.

This module is the orchestration; each step is its own module:

* judging.py — the access gate (right after the journal recorded a message, or for a re-drive of
  one never judged, before the scheduler sees it: a refused message is journaled `refused` at
  once, its notice sent once, best-effort), whether a message is for the bot (a group message
  whose mention cannot be judged yet is *held*), and what the gateway answers itself (commands,
  polite refusals, stale messages) — `ignored` and `answered_locally` in the journal.
* asking.py — the media step and the model; the answer is journaled before it is sent. While a
  text answer is prepared, a "Typing" reaction shows on the user's message (`TypingIndicator`),
  removed once the reply is out; it never delays nor fails the answer.
* outbox.py — delivering the answer in cards or text parts, retried; a reply that failed every
  attempt is tried again after `redelivery_interval`, its answer already journaled.

The pipeline keeps one `TrackedMessage` per message it is handling — running, held for the bot's
identity, or waiting to be delivered again — and the console's activity rows of those it finished.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable

from .access import AccessGate, AccessSnapshot, Judgement
from .asking import ModelAsker
from .cardkit import CardKitClient
from .delivery import AnswerDelivery, DeliveryRecord
from .journal import Journal, JournalError, JournalSnapshot, PendingMessage
from .judging import APOLOGY, ChatRules, MessageJudge, Reply
from .llm import LlmClient
from .logs import escape_untrusted
from .media import MediaReader
from .messages import IncomingMessage
from .outbox import REPLY_ATTEMPTS, Outbox
from .replies import ReplySender, TypingIndicator
from .scheduler import DEFAULT_MAX_IN_FLIGHT, AnswerScheduler
from .states import DeliveryMode, MessageState, Outcome, ReplyMode

log = logging.getLogger("gatewatch.pipeline")

ACTIVITY_SIZE = 200
DETAIL_CHARS = 2000  # per text in an Activity: the console's detail view, bounded (snapshots carry them)
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


class Waiting(Enum):
    """Why the pipeline still holds a message it is not answering right now."""

    RUNNING = "running"  # submitted to the scheduler: queued for its turn, or being answered
    HELD = "held"  # a group mention that cannot be judged until the bot's open_id is known
    REDELIVERY = "redelivery"  # its reply failed every attempt; sent again at `retry_at`


@dataclass
class TrackedMessage:
    """One message this pipeline is handling, from its submission until it is finished (or left
    to the journal: cancelled by a drain, a journal write failed). Changed on the loop only."""

    message: IncomingMessage
    waiting: Waiting = Waiting.RUNNING
    retry_at: float = 0.0  # monotonic, while waiting for REDELIVERY
    resume: DeliveryRecord | None = None  # how a predecessor was delivering it (journaled)
    delivery: AnswerDelivery | None = None  # how this run delivers its answer
    answering: Answering | None = None  # the console's row while the model writes
    media_text: str | None = None  # what the model read of its media (the console shows it)
    media_facts: str = ""  # the media's name, size and type

    def shown(self, message: IncomingMessage) -> str:
        """What the console shows of the message: its text, what its media said, or its type."""
        if self.media_text is not None:
            return self.media_text
        return message.text if message.text is not None else f"<{message.message_type}>"

    def end_run(self) -> AnswerDelivery | None:
        """Forget what one run kept (a held or undelivered message runs again); its delivery."""
        delivery, self.delivery = self.delivery, None
        self.media_text, self.media_facts, self.answering = None, "", None
        return delivery


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
        stale_after: float,
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
        self._journal = journal
        self.judge = MessageJudge(
            llm, journal, rules or ChatRules(), stale_after, access, status_line or (lambda: "status unknown")
        )
        self.asker = ModelAsker(llm, journal, history_turns, system_prompt, media)
        self.outbox = Outbox(replies, journal, cardkit, retry_delay)
        self.typing = typing  # the "Typing" sign while a text answer is prepared; None: off
        # One answer at a time per chat (its history stays coherent, its replies in order).
        self.scheduler = AnswerScheduler(max_in_flight)
        self.redelivery_interval = REDELIVERY_INTERVAL
        self.journal_failure: str | None = None  # set once a journal write failed: the owner must stop
        # `snapshot()` is read from other threads (the console runs the gateway on a loop thread
        # of its own): the collections it copies are changed under this lock, since copying a
        # deque or a dict while the loop changes it raises. Counters are read as they are.
        self._shown_guard = threading.Lock()
        self._tracked: dict[str, TrackedMessage] = {}
        self._activity: deque[Activity] = deque(maxlen=ACTIVITY_SIZE)
        self._received = self._duplicates = self._answered = self._apologies = 0
        self._ignored = self._commands = self._apologies_in_a_row = 0
        self._last_message_at: float | None = None

    @property
    def rules(self) -> ChatRules:
        return self.judge.rules

    @rules.setter
    def rules(self, rules: ChatRules) -> None:
        self.judge.rules = rules

    @property
    def access(self) -> AccessGate | None:
        return self.judge.access

    # -- what comes in -------------------------------------------------------------------------

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
            self._start(TrackedMessage(message), None)

    def note_duplicate(self, message: IncomingMessage) -> None:
        """A redelivery the journal recognised: it is (being) answered already, so nothing is sent."""
        self._duplicates += 1
        log.info("duplicate delivery of %s ignored", message.message_id)

    def learn_bot_identity(self, open_id: str) -> int:
        """The bot's own open_id is known: judge mentions with it, answer the held messages."""
        self.judge.learn_bot_identity(open_id)
        held = [tracked for tracked in self._tracked.values() if tracked.waiting is Waiting.HELD]
        for tracked in held:
            self._start(tracked, None)
        if held:
            log.info("answering %d group messages held until the bot's identity was known", len(held))
        return len(held)

    def redrive(self, pending: list[PendingMessage]) -> int:
        """Answer what a previous owner left unfinished, oldest first (so each chat stays in order).

        A message this pipeline is already handling (running, held, or waiting to be delivered
        again) is left to that.
        """
        started = 0
        for item in pending:
            if item.message.message_id in self._tracked:
                continue
            if item.state == MessageState.RECEIVED and self._refused_at_gate(item.message):
                continue  # never judged before the last owner stopped: judged now
            resume = None
            if item.checkpoint or item.reply_mode:
                resume = DeliveryRecord.from_json(item.checkpoint, item.reply_mode)
            log.info(
                "re-driving %s from %s (%s, %.0fs old)",
                item.message.message_id,
                item.message.chat_id,
                item.state,
                time.time() - item.message.received_at,
            )
            self._start(TrackedMessage(item.message, resume=resume), item)
            started += 1
        return started

    def redeliver_due(self, unfinished: Callable[[], list[PendingMessage]]) -> int:
        """Send again the replies that failed every attempt and have waited their interval.

        Their answers are in the journal (`unfinished` reads it, only when one is due), so this
        is a re-drive of those messages: no second LLM call, the same reply uuid or card.
        """
        now = time.monotonic()
        due = {
            mid
            for mid, tracked in self._tracked.items()
            if tracked.waiting is Waiting.REDELIVERY and tracked.retry_at <= now
        }
        if not due:
            return 0
        for message_id in due:
            self._untrack(message_id)
        return self.redrive([item for item in unfinished() if item.message.message_id in due])

    def _start(self, tracked: TrackedMessage, pending: PendingMessage | None) -> None:
        # Arrivals and re-drives go through the one scheduler: the same in-flight limit, and each
        # chat's turns in the order they were submitted.
        tracked.waiting = Waiting.RUNNING
        self._track(tracked)
        self.scheduler.submit(tracked.message.chat_id, self._answer, tracked, pending)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for in-flight answers, then cancel the rest; return how many.

        A cancelled answer is not lost: its journal row stays unfinished and the next owner answers
        it. Cancelling (rather than waiting for a slow model) is what keeps a stop within budget.
        """
        cancelled = await self.scheduler.cancel_all() if await self.scheduler.wait_idle(timeout) else 0
        if self.typing is not None:
            await self.typing.close(min(1.0, timeout))
        return cancelled

    # -- one message, from judging to the journal's final state ---------------------------------

    async def _answer(self, tracked: TrackedMessage, pending: PendingMessage | None) -> None:
        message = tracked.message
        try:
            await self._answer_and_record(tracked, pending)
        finally:
            if tracked.waiting is Waiting.RUNNING:
                self._untrack(message.message_id)  # finished, or left to the journal (cancelled, failed)
            if self.typing is not None:
                # The reply is out, or the answer ended; a re-driven message may also carry the
                # sign of a predecessor killed mid-answer.
                self.typing.stop(message.message_id, leftovers=pending is not None)
            delivery = tracked.end_run()
            if delivery is not None:
                await delivery.abandon()  # cancelled or failed: the journaled record resumes it

    async def _answer_and_record(self, tracked: TrackedMessage, pending: PendingMessage | None) -> None:
        started = time.monotonic()
        try:
            decided = await self._reply_for(tracked, pending)
            if decided is None:
                return  # held or ignored: nothing to send
            message, reply = decided
            self._count_reply(reply)
            reply_id = await self.outbox.deliver(message, self._delivery(tracked), reply.text)
            if reply_id is not None:
                self._record_done(message, reply, reply_id, time.monotonic() - started)
        except JournalError as exc:
            self._journal_failed(exc)
            return
        outcome = reply.outcome
        if reply_id is None:
            # Stays unfinished in the journal, answer stored: retried here after a while
            # (redeliver_due), and by the next owner if this one stops first.
            log.error(
                "reply to %s not delivered after %d attempts; trying again in %.0fs",
                message.message_id,
                REPLY_ATTEMPTS,
                self.redelivery_interval,
            )
            outcome = Outcome.REPLY_FAILED
            tracked.waiting = Waiting.REDELIVERY
            tracked.retry_at = time.monotonic() + self.redelivery_interval
        elif outcome == Outcome.ANSWERED:
            self._answered += 1
        elif outcome == Outcome.COMMAND:
            self._commands += 1
        self._remember(tracked, message, replace(reply, outcome=outcome), time.monotonic() - started)

    async def _reply_for(
        self, tracked: TrackedMessage, pending: PendingMessage | None
    ) -> tuple[IncomingMessage, Reply] | None:
        """The message as read and the reply it gets; None when it is held or ignored.

        Raises JournalError (the owner must stop); any other failure becomes an apology.
        """
        message = tracked.message
        try:
            self._journal.mark_answering(message.message_id)
            if pending is not None and pending.answer is not None:
                # Answered already: by the model (it has a model), else by a command whose effect
                # was stored with this reply (`answer_locally`) and must not happen twice.
                outcome = Outcome.ANSWERED if pending.model is not None else Outcome.COMMAND
                return message, Reply(pending.answer, outcome, model=pending.model)
            read = await self.judge.read(message)
            if read is None:
                tracked.waiting = Waiting.HELD  # still unfinished in the journal
                return None
            message = read
            answer, why = self.judge.addressed(read)
            if not answer:
                self._ignore(tracked, read, why)
                return None
            return message, await self._respond(tracked, read)
        except (asyncio.CancelledError, JournalError):
            raise
        except Exception:
            # Never silence: whatever broke, the user still gets an answer.
            log.exception("unexpected error while answering %s", message.message_id)
            return message, Reply(APOLOGY, Outcome.APOLOGISED, reason="unexpected error")
        finally:
            self._show_answering(tracked, None)

    async def _respond(self, tracked: TrackedMessage, message: IncomingMessage) -> Reply:
        """The reply to a message the bot should answer: its own, or the model's."""
        media = self.asker.media_of(message)
        local = self.judge.local_reply(message, media)
        if local is not None:
            return local
        mode = self.rules.reply_mode
        if self.typing is not None and not self.outbox.streaming(mode):
            self.typing.start(message.message_id)
        model_input = None
        if media:
            facts = ", ".join(f"{ref.kind} {ref.name}".strip() for ref in media)
            tracked.media_text, tracked.media_facts = message.text or f"<{message.message_type}>", facts
            read = await self.asker.read_media(message, media, facts)
            if isinstance(read, Reply):
                return read
            model_input = read
            tracked.media_text, tracked.media_facts = read.text, read.facts
        stream = await self.outbox.open_card(self._delivery(tracked), mode)
        self._show_answering(
            tracked,
            Answering(
                message.message_id,
                message.chat_id,
                message.sender_id,
                escape_untrusted(message.text or "", 60),
                time.time(),
                DeliveryMode.CARD if stream is not None else DeliveryMode.TEXT,
            ),
        )

        def on_progress(chunks: int, chars: int) -> None:
            if tracked.answering is not None:
                self._show_answering(tracked, replace(tracked.answering, chunks=chunks, chars=chars))

        return await self.asker.ask(message, model_input, self.rules.per_user_history, stream, on_progress)

    def _delivery(self, tracked: TrackedMessage) -> AnswerDelivery:
        """The one delivery of this message's answer in this run (resuming a journaled record)."""
        if tracked.delivery is None:
            tracked.delivery, tracked.resume = self.outbox.delivery(tracked.message, tracked.resume), None
        return tracked.delivery

    def _count_reply(self, reply: Reply) -> None:
        if reply.outcome == Outcome.APOLOGISED:
            self._apologies += 1
            if not reply.reason.startswith("stale"):  # a too-old message says nothing about the models
                self._apologies_in_a_row += 1
        elif reply.outcome == Outcome.ANSWERED:
            self._apologies_in_a_row = 0

    def _record_done(self, message: IncomingMessage, reply: Reply, reply_id: str, latency: float) -> None:
        """Journal the final state a delivered reply's outcome stands for."""
        state = reply.outcome.state
        if state == MessageState.ANSWERED:
            self._journal.mark_answered(message.message_id, reply_id, reply.model, latency)
        elif state == MessageState.APOLOGISED:
            self._journal.mark_apologised(message.message_id, reply_id, reply.reason)
        else:
            self._journal.mark_answered_locally(message.message_id, reply_id, reply.reason)

    def _journal_failed(self, exc: JournalError) -> None:
        if self.journal_failure is None:
            self.journal_failure = str(exc)
        log.error("%s", exc)

    # -- messages that are not answered ------------------------------------------------------------

    def _refused_at_gate(self, message: IncomingMessage) -> bool:
        """The access gate: True if the message is refused (journaled so, its notice on its way)."""
        try:
            judgement = self.judge.refusal(message)
            if judgement is None:
                return False
            assert judgement.reason is not None
            self._journal.mark_refused(message.message_id, judgement.reason)
        except JournalError as exc:
            self._journal_failed(exc)
            return True  # not answered by this owner: the next one judges it again
        log.info("message %s from %s refused: %s", message.message_id, message.sender_id, judgement.reason)
        self._remember(TrackedMessage(message), message, Reply(judgement.shown_notice, Outcome.REFUSED), None)
        if judgement.notice is not None:
            self.scheduler.submit(message.chat_id, self._send_notice, message, judgement)
        return True

    async def _send_notice(self, message: IncomingMessage, judgement: Judgement) -> None:
        """A refused message's one notice: tried once (a courtesy, never re-driven), no model."""
        assert judgement.notice is not None and judgement.reason is not None
        try:
            reply_id = await self.outbox.send_notice(message, judgement.notice)
            self._journal.mark_refused(message.message_id, judgement.reason, reply_id)
        except JournalError as exc:
            self._journal_failed(exc)
        except Exception as exc:
            log.warning("the access notice to %s was not delivered: %s", message.message_id, exc)

    def _ignore(self, tracked: TrackedMessage, message: IncomingMessage, why: str) -> None:
        """Not for the bot: journaled as ignored with the reason, never answered nor re-driven."""
        self._journal.mark_ignored(message.message_id, why)
        self._ignored += 1
        log.info("message %s not answered: %s", message.message_id, why)
        self._remember(tracked, message, Reply("", Outcome.IGNORED), None)

    # -- what the console sees -------------------------------------------------------------------

    def _remember(self, tracked: TrackedMessage, message: IncomingMessage, reply: Reply, latency: float | None) -> None:
        """The activity row of a message this run is done with."""
        record = tracked.delivery.record if tracked.delivery is not None and reply.text else None
        shown = tracked.shown(message)
        row = Activity(
            at=message.received_at,
            chat_id=message.chat_id,
            sender_id=message.sender_id,
            preview=escape_untrusted(shown, 60),
            model=reply.model,
            latency=latency,
            outcome=reply.outcome,
            message_id=message.message_id,
            event_id=message.event_id,
            text=_bounded(shown),
            reply=_bounded(reply.text),
            reply_mode=record.mode if record is not None else (DeliveryMode.TEXT if reply.text else None),
            delivery=record.describe() if record is not None else "",
            media=tracked.media_facts,
        )
        with self._shown_guard:
            self._activity.append(row)

    def _show_answering(self, tracked: TrackedMessage, row: Answering | None) -> None:
        """The answer in progress as the console shows it; None once it is done."""
        with self._shown_guard:
            tracked.answering = row

    def _track(self, tracked: TrackedMessage) -> None:
        with self._shown_guard:
            self._tracked[tracked.message.message_id] = tracked

    def _untrack(self, message_id: str) -> None:
        with self._shown_guard:
            self._tracked.pop(message_id, None)

    def snapshot(self) -> PipelineSnapshot:
        try:
            journal = self._journal.snapshot()
        except JournalError:
            journal = JournalSnapshot(self.scheduler.unfinished, None, "")
        with self._shown_guard:
            activity = tuple(self._activity)
            tracked = list(self._tracked.values())
            answering = tuple(t.answering for t in tracked if t.answering is not None)
        return PipelineSnapshot(
            received=self._received,
            duplicates=self._duplicates,
            answered=self._answered,
            apologies=self._apologies,
            reply_failures=self.outbox.failures,
            in_flight=self.scheduler.unfinished,
            last_message_at=self._last_message_at,
            activity=activity,
            pending=journal.pending,
            oldest_pending_at=journal.oldest_pending_at,
            journal_writes=journal.writes,
            journal_write_times=journal.write_times,
            answering=answering,
            reply_mode=self.rules.reply_mode,
            cardkit_unavailable=self.outbox.cards_unavailable,
            ignored=self._ignored,
            commands=self._commands,
            held=sum(1 for t in tracked if t.waiting is Waiting.HELD),
            bot_open_id=self.judge.bot_open_id,
            apologies_in_a_row=self._apologies_in_a_row,
            access=self._access_snapshot(),
        )

    def _access_snapshot(self) -> AccessSnapshot | None:
        try:
            return self.access.snapshot() if self.access is not None else None
        except JournalError:
            return None
