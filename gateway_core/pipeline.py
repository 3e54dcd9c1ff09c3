"""The message pipeline: every inbound message gets exactly one answer.

Feishu redelivers events it thinks were not handled, so the same message can arrive twice; it is
recognised by message id and event id and answered once. Whatever goes wrong after that (every
model down, an unexpected error) still produces a reply — an apology rather than silence — and the
reply carries an idempotency key, so retrying a send cannot duplicate it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from .feishu import InboundMessage
from .llm import AllModelsFailed, LlmClient
from .logs import escape_untrusted

log = logging.getLogger("gatewatch.pipeline")

APOLOGY = "Sorry — the language model is unavailable right now. Please try again in a few minutes."
UNSUPPORTED = "Sorry — only text messages are supported."
EMPTY = "Send me some text and I will answer."
SEEN_CAPACITY = 10_000
MAX_CHATS = 1_000
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
    in_flight: int
    last_message_at: float | None
    activity: tuple[Activity, ...]


def _bounded(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


class MessagePipeline:
    """Runs on the gateway's loop; `accept` is the only entry point."""

    def __init__(
        self,
        llm: LlmClient,
        send_reply: Callable[[str, str], Awaitable[str]],
        history_turns: int,
        system_prompt: str,
        retry_delay: float = 0.5,
    ):
        self._llm = llm
        self._send_reply = send_reply
        self._history_len = 2 * history_turns
        self._system_prompt = system_prompt
        self._retry_delay = retry_delay
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._histories: OrderedDict[str, deque[dict[str, str]]] = OrderedDict()
        self._chat_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._activity: deque[Activity] = deque(maxlen=ACTIVITY_SIZE)
        self._received = self._duplicates = self._answered = self._apologies = self._reply_failures = 0
        self._last_message_at: float | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def accept(self, message: InboundMessage) -> bool:
        """Start answering `message` unless it was seen before. Must run on the gateway's loop."""
        keys = [k for k in (f"m:{message.message_id}", f"e:{message.event_id}") if len(k) > 2]
        if any(k in self._seen for k in keys):
            self._duplicates += 1
            log.info("duplicate delivery of %s ignored", message.message_id)
            return False
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        self._received += 1
        self._last_message_at = message.received_at
        log.info(
            "message %s from %s in %s: %s",
            message.message_id,
            message.sender_id,
            message.chat_id,
            escape_untrusted(message.text if message.text is not None else f"<{message.message_type}>"),
        )
        task = asyncio.get_running_loop().create_task(self._answer(message), name=f"answer-{message.message_id}")
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def drain(self, timeout: float) -> int:
        """Wait for in-flight answers; return how many were still unfinished at the deadline."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return len(self._tasks)

    async def _answer(self, message: InboundMessage) -> None:
        started = time.monotonic()
        model: str | None = None
        try:
            if message.text is None:
                text, outcome = UNSUPPORTED, "unsupported"
            elif not message.text:
                text, outcome = EMPTY, "unsupported"
            else:
                text, model, outcome = await self._ask_llm(message)
        except Exception:
            # Never silence: whatever broke, the user still gets an answer.
            log.exception("unexpected error while answering %s", message.message_id)
            text, outcome = APOLOGY, "apology"
        if outcome == "apology":
            self._apologies += 1
        if await self._deliver(message, text):
            if outcome == "answered":
                self._answered += 1
        else:
            outcome = "reply failed"
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

    async def _ask_llm(self, message: InboundMessage) -> tuple[str, str | None, str]:
        lock = self._chat_locks.setdefault(message.chat_id, asyncio.Lock())
        async with lock:  # one chat's turns in order, so its history stays coherent
            history = self._history(message.chat_id)
            user_turn = {"role": "user", "content": message.text or ""}
            prompt = [{"role": "system", "content": self._system_prompt}, *history, user_turn]
            try:
                answer = await self._llm.complete(prompt)
            except AllModelsFailed as exc:
                log.error("every model failed for %s: %s", message.message_id, exc)
                return APOLOGY, None, "apology"
            history.extend([user_turn, {"role": "assistant", "content": answer.text}])
            log.info("answered %s with %s in %.2fs", message.message_id, answer.model, answer.latency)
            return answer.text, answer.model, "answered"

    def _history(self, chat_id: str) -> deque[dict[str, str]]:
        history = self._histories.pop(chat_id, None) or deque(maxlen=self._history_len)
        self._histories[chat_id] = history  # most recent last: old chats are dropped first
        while len(self._histories) > MAX_CHATS:
            old_chat, _ = self._histories.popitem(last=False)
            self._chat_locks.pop(old_chat, None)
        return history

    async def _deliver(self, message: InboundMessage, text: str) -> bool:
        """Send the reply, retrying transient failures; the idempotency key makes retries safe."""
        delay = self._retry_delay
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                await self._send_reply(message.message_id, text)
                return True
            except Exception as exc:  # ReplyFailed, or the executor/network failing under it
                log.warning("reply to %s failed (attempt %d/%d): %s", message.message_id, attempt, REPLY_ATTEMPTS, exc)
            if attempt < REPLY_ATTEMPTS:
                await asyncio.sleep(delay)  # backoff between retries of a failed send
                delay *= 2
        self._reply_failures += 1
        log.error("reply to %s not delivered after %d attempts", message.message_id, REPLY_ATTEMPTS)
        return False

    def snapshot(self) -> PipelineSnapshot:
        return PipelineSnapshot(
            received=self._received,
            duplicates=self._duplicates,
            answered=self._answered,
            apologies=self._apologies,
            reply_failures=self._reply_failures,
            in_flight=len(self._tasks),
            last_message_at=self._last_message_at,
            activity=tuple(self._activity),
        )
