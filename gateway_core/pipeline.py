"""The message pipeline: every inbound message gets exactly one answer, across restarts too.

The gateway journals a message (see journal.py) before Feishu's event is acked, and hands only new
ones to `accept`; a redelivery is recognised there by message id and event id, also after a
restart. Here each message goes received → answering → answer stored → reply sent → answered, each
step written to the journal, so a new owner can pick up any message at the step where the last one
stopped (`redrive`). Whatever goes wrong (every model down, an unexpected error) still produces a
reply — an apology rather than silence — and the reply carries an idempotency key derived from the
message id, so re-sending it after a crash cannot show it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from .feishu import InboundMessage
from .journal import Journal, JournalError, JournalSnapshot, PendingMessage
from .llm import AllModelsFailed, LlmClient
from .logs import escape_untrusted
from .scheduler import DEFAULT_MAX_IN_FLIGHT, AnswerScheduler

log = logging.getLogger("gatewatch.pipeline")

APOLOGY = "Sorry — the language model is unavailable right now. Please try again in a few minutes."
UNSUPPORTED = "Sorry — only text messages are supported."
EMPTY = "Send me some text and I will answer."
STALE = (
    "Sorry — this message came in while I was restarting, and it is too old now for a good answer. "
    "Please send it again if you still need one."
)
ACTIVITY_SIZE = 200
DETAIL_CHARS = 2000  # per text in an Activity: the console's detail view, bounded (snapshots carry them)
REPLY_ATTEMPTS = 3


@dataclass(frozen=True)
class Activity:
    """One handled message, for the console's activity table."""

    at: float
    chat_id: str
    sender_id: str
    preview: str
    model: str | None
    latency: float | None
    outcome: str  # answered | apology | unsupported | reply failed
    # For the console's detail view; raw (untrusted) text, cut at DETAIL_CHARS, escaped where shown.
    message_id: str = ""
    event_id: str = ""
    text: str = ""  # what the user wrote
    reply: str = ""  # what the gateway sent back (or tried to)


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
    apologies_in_a_row: int = 0  # "the model is unavailable" replies since the last real answer


def _bounded(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


class MessagePipeline:
    """Runs on the gateway's loop; `accept` (new arrivals) and `redrive` (a predecessor's) feed it."""

    def __init__(
        self,
        llm: LlmClient,
        send_reply: Callable[[str, str, str], Awaitable[str]],
        journal: Journal,
        history_turns: int,
        system_prompt: str,
        stale_after: float = 6 * 3600.0,
        retry_delay: float = 0.5,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ):
        self._llm = llm
        self._send_reply = send_reply
        self._journal = journal
        self._history_len = 2 * history_turns
        self._system_prompt = system_prompt
        self._stale_after = stale_after
        self._retry_delay = retry_delay
        # One answer at a time per chat (its history stays coherent, its replies in order).
        self.scheduler = AnswerScheduler(max_in_flight)
        self._in_progress: set[str] = set()  # message ids submitted and not finished
        self._activity: deque[Activity] = deque(maxlen=ACTIVITY_SIZE)
        self._received = self._duplicates = self._answered = self._apologies = self._reply_failures = 0
        self._last_message_at: float | None = None
        self._apologies_in_a_row = 0
        self.journal_failure: str | None = None  # set once a journal write failed: the owner must stop

    def accept(self, message: InboundMessage) -> None:
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
        self._start(message, None)

    def note_duplicate(self, message: InboundMessage) -> None:
        """A redelivery the journal recognised: it is (being) answered already, so nothing is sent."""
        self._duplicates += 1
        log.info("duplicate delivery of %s ignored", message.message_id)

    def redrive(self, pending: list[PendingMessage]) -> int:
        """Answer what a previous owner left unfinished, oldest first (so each chat stays in order)."""
        started = 0
        for item in pending:
            if item.message.message_id in self._in_progress:
                continue
            log.info(
                "re-driving %s from %s (%s, %.0fs old)",
                item.message.message_id, item.message.chat_id, item.state, time.time() - item.message.received_at,
            )
            self._start(item.message, item)
            started += 1
        return started

    def _start(self, message: InboundMessage, pending: PendingMessage | None) -> None:
        # Arrivals and re-drives go through the one scheduler: the same in-flight limit, and each
        # chat's turns in the order they were submitted.
        self._in_progress.add(message.message_id)
        self.scheduler.submit(message.chat_id, self._answer, message, pending)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for in-flight answers, then cancel the rest; return how many.

        A cancelled answer is not lost: its journal row stays unfinished and the next owner answers
        it. Cancelling (rather than waiting for a slow model) is what keeps a stop within budget.
        """
        if await self.scheduler.wait_idle(timeout):
            return await self.scheduler.cancel_all()
        return 0

    async def _answer(self, message: InboundMessage, pending: PendingMessage | None) -> None:
        try:
            await self._answer_and_record(message, pending)
        finally:
            self._in_progress.discard(message.message_id)

    async def _answer_and_record(self, message: InboundMessage, pending: PendingMessage | None) -> None:
        started = time.monotonic()
        model: str | None = None
        reason = ""
        try:
            self._journal.mark_answering(message.message_id)
            if message.text is None:
                text, outcome, reason = UNSUPPORTED, "unsupported", f"unsupported message type {message.message_type}"
            elif not message.text:
                text, outcome, reason = EMPTY, "unsupported", "empty text"
            elif pending is not None and pending.answer is not None:
                text, model, outcome = pending.answer, pending.model, "answered"  # the LLM answered already
            elif time.time() - message.received_at > self._stale_after:
                text, outcome, reason = STALE, "apology", "stale: came in while the gateway was down"
            else:
                text, model, outcome, reason = await self._ask_llm(message)
        except asyncio.CancelledError:
            raise
        except JournalError as exc:
            self._journal_failed(exc)
            return
        except Exception:
            # Never silence: whatever broke, the user still gets an answer.
            log.exception("unexpected error while answering %s", message.message_id)
            text, outcome, reason = APOLOGY, "apology", "unexpected error"
        if outcome == "apology":
            self._apologies += 1
            if not reason.startswith("stale"):  # a too-old message says nothing about the models
                self._apologies_in_a_row += 1
        elif outcome == "answered":
            self._apologies_in_a_row = 0
        reply_id = await self._deliver(message, text)
        if reply_id is not None:
            try:
                self._record_done(message, outcome, reply_id, model, time.monotonic() - started, reason)
            except JournalError as exc:
                self._journal_failed(exc)
                return
            if outcome == "answered":
                self._answered += 1
        else:
            outcome = "reply failed"  # stays unfinished in the journal: the next owner re-sends it
        self._activity.append(
            Activity(
                at=message.received_at,
                chat_id=message.chat_id,
                sender_id=message.sender_id,
                preview=escape_untrusted(message.text if message.text is not None else f"<{message.message_type}>", 60),
                model=model,
                latency=time.monotonic() - started,
                outcome=outcome,
                message_id=message.message_id,
                event_id=message.event_id,
                text=_bounded(message.text if message.text is not None else f"<{message.message_type}>"),
                reply=_bounded(text),
            )
        )

    def _record_done(
        self, message: InboundMessage, outcome: str, reply_id: str, model: str | None, latency: float, reason: str
    ) -> None:
        if outcome == "answered":
            self._journal.mark_answered(message.message_id, reply_id, model, latency)
        elif outcome == "apology":
            self._journal.mark_apologised(message.message_id, reply_id, reason)
        else:
            self._journal.mark_dropped(message.message_id, reason, reply_id)

    def _journal_failed(self, exc: JournalError) -> None:
        if self.journal_failure is None:
            self.journal_failure = str(exc)
        log.error("%s", exc)

    async def _ask_llm(self, message: InboundMessage) -> tuple[str, str | None, str, str]:
        # The scheduler runs one answer per chat at a time, so this history is the latest.
        history = self._journal.load_history(message.chat_id)[-self._history_len:] if self._history_len else []
        user_turn = {"role": "user", "content": message.text or ""}
        prompt = [{"role": "system", "content": self._system_prompt}, *history, user_turn]
        try:
            answer = await self._llm.complete(prompt)
        except AllModelsFailed as exc:
            log.error("every model failed for %s: %s", message.message_id, exc)
            return APOLOGY, None, "apology", "every model failed"
        turns = [*history, user_turn, {"role": "assistant", "content": answer.text}]
        # The answer and the chat's new history are stored before the reply is sent: a crash
        # after this point re-sends this answer rather than asking the model a second time.
        self._journal.save_answer(
            message.message_id, message.chat_id, answer.text, answer.model, answer.latency,
            turns[-self._history_len:] if self._history_len else [],
        )
        log.info("answered %s with %s in %.2fs", message.message_id, answer.model, answer.latency)
        return answer.text, answer.model, "answered", ""

    async def _deliver(self, message: InboundMessage, text: str) -> str | None:
        """Send the reply, retrying transient failures; the idempotency key makes retries safe.

        Returns Feishu's id of the reply, or None when every attempt failed.
        """
        delay = self._retry_delay
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                return await self._send_reply(message.message_id, text, message.chat_id)
            except Exception as exc:  # ReplyFailed, or the executor/network failing under it
                log.warning("reply to %s failed (attempt %d/%d): %s", message.message_id, attempt, REPLY_ATTEMPTS, exc)
            if attempt < REPLY_ATTEMPTS:
                await asyncio.sleep(delay)  # backoff between retries of a failed send
                delay *= 2
        self._reply_failures += 1
        log.error("reply to %s not delivered after %d attempts; left for the next owner", message.message_id, REPLY_ATTEMPTS)
        return None

    def snapshot(self) -> PipelineSnapshot:
        try:
            journal = self._journal.snapshot()
        except JournalError:
            journal = JournalSnapshot(self.scheduler.unfinished, None, "")
        return PipelineSnapshot(
            received=self._received,
            duplicates=self._duplicates,
            answered=self._answered,
            apologies=self._apologies,
            reply_failures=self._reply_failures,
            in_flight=self.scheduler.unfinished,
            last_message_at=self._last_message_at,
            activity=tuple(self._activity),
            pending=journal.pending,
            oldest_pending_at=journal.oldest_pending_at,
            journal_writes=journal.writes,
            journal_write_times=journal.write_times,
            apologies_in_a_row=self._apologies_in_a_row,
        )
