"""Streaming replies through Feishu CardKit: a card that grows while the model writes.

The protocol (Feishu "Streaming updates OpenAPI overview"): create a card entity (JSON 2.0,
`streaming_mode: true`, one markdown element), reply to the user's message with an interactive
message referencing the card id, PUT the FULL text so far into the element with a strictly
increasing `sequence`, and finish by turning `streaming_mode` off. Limits shape this module:
10 operations/s per card (we coalesce to `updates_per_second`, 5 by default, and always send the
newest text, never a backlog), sequences are compared across every operation of a card, and the
whole thing needs the `cardkit:card:write` scope — without it `CardKitUnavailable` is raised once,
remembered, and the caller falls back to a plain text reply.

Exactly-once across crashes: nothing here may create a second visible card for one inbound
message. The reply carries a uuid derived from the inbound message id (Feishu sends a uuid once per
hour); the card id and a *reserved* sequence ceiling are handed to `on_checkpoint` (the journal)
before the card is sent and whenever the ceiling is raised, so a re-drive resumes the same card
with sequences above anything used before. A card created but never checkpointed was never sent:
an invisible orphan, harmless.

Besides the per-card pace, each CardKit API (create, content, settings) keeps Feishu's per-app
limit of 50 calls/s and 1000/min (`ApiPace`): a call waits for its turn rather than be refused. The card's
message is a reply like any other: it goes through `replies.ReplySender`, within the per-chat and
per-app reply limits. Every request goes through the gateway's one Feishu HTTP client
(feishu_http.py), on the loop, each under its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from .feishu_http import FeishuHttp, FeishuRefused
from .parts import CARD_JSON_LIMIT, Budget, request_bytes
from .replies import ReplySender, RequestWindow

log = logging.getLogger("gatewatch.cardkit")

CheckpointSink = Callable[["StreamCheckpoint"], Awaitable[None]]

CARDKIT_SCOPE = "cardkit:card:write"
MISSING_SCOPE = 99991672  # Feishu: "Access denied. One of the following scopes is required"
RATE_LIMITED = 99991400
SEQUENCE_NOT_INCREASING = 300317
RETRYABLE = {None, 1, RATE_LIMITED, 300120}  # no answer, busy, rate limited, CardKit internal error
# Refusals that end a card for good: retrying them only storms Feishu (OpenClaw #139443, #150634).
STREAM_CLOSED = {200850, 300309}  # streaming timed out (window or idle gap); streaming mode is closed
TOO_LARGE = {230025, 230099, 300305}  # content too long, card content refused, too many elements
CARD_GONE = {200740}  # the card entity does not exist (deleted)
ELEMENT_ID = "answer"
SUMMARY_CHARS = 60  # the finished card's summary: the answer's first line, this short
SEQUENCE_BLOCK = 20  # sequences reserved per checkpoint: few journal writes, safe resumes
PLACEHOLDER = "…"  # what the card shows before the first token (content may not be empty)
API_PER_SECOND, API_PER_MINUTE = 50, 1000  # Feishu's per-app limits of each CardKit API
CARDS = "/open-apis/cardkit/v1/cards"


class CardKitUnavailable(Exception):
    """CardKit cannot be used by this app (missing scope): reply with plain text instead."""


class CardKitFailed(Exception):
    """Feishu refused or did not answer a CardKit call; `code` is Feishu's (None: no answer)."""

    def __init__(self, refusal: FeishuRefused):
        super().__init__(str(refusal))
        self.code = refusal.code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @property
    def ends_card(self) -> bool:
        """Feishu will take nothing more on this card: the answer must go on another way."""
        return self.code in STREAM_CLOSED or self.code in TOO_LARGE or self.code in CARD_GONE

    @property
    def card_gone(self) -> bool:
        return self.code in CARD_GONE


@dataclass(frozen=True)
class StreamCheckpoint:
    """What must survive a crash so a re-drive continues the same card (store it as JSON)."""

    inbound_message_id: str
    card_id: str
    element_id: str = ELEMENT_ID
    sequence_reserved: int = 0  # every sequence used so far is ≤ this
    reply_message_id: str | None = None  # set once Feishu accepted the card reply
    finished: bool = False  # streaming was turned off with the final text
    part: int = 0  # which card of the answer (a long answer continues in further cards)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "StreamCheckpoint":
        return cls(**json.loads(text))


def card_reply_uuid(inbound_message_id: str, part: int = 0) -> str:
    """A card reply's idempotency key: one reply per card of an answer, whatever retries happen.

    Distinct from the plain-text reply's uuid (`feishu.reply_uuid`), because Feishu asks for a new
    uuid when the content differs; the journal, not the uuid, decides text versus card.
    """
    key = inbound_message_id if part == 0 else f"{inbound_message_id}#card{part}"
    return "gw-card-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def streaming_card(
    initial_text: str = PLACEHOLDER, element_id: str = ELEMENT_ID, summary: str = "[answering…]"
) -> dict[str, Any]:
    """A JSON 2.0 card in streaming mode with one markdown element the answer grows in."""
    return {
        "schema": "2.0",
        "config": {
            "update_multi": True,
            "streaming_mode": True,
            "summary": {"content": summary},
            "streaming_config": {"print_strategy": "fast"},
        },
        "body": {"elements": [{"tag": "markdown", "element_id": element_id, "content": initial_text}]},
    }


def card_budget(limit: int = CARD_JSON_LIMIT) -> Budget:
    """How much answer one card holds: its whole JSON within Feishu's card limit.

    Measured with the longest summary `finish` may set (60 characters of 3 bytes), so the card
    that fits while streaming still fits once finished.
    """
    return Budget(limit, lambda text: request_bytes(streaming_card(text, summary="字" * SUMMARY_CHARS)))


class ApiPace:
    """One API's per-app limits: at most `per_second` calls in any second, `per_minute` in any minute."""

    def __init__(self, per_second: int = API_PER_SECOND, per_minute: int = API_PER_MINUTE):
        self._second = RequestWindow(per_second, 1.0)
        self._minute = RequestWindow(per_minute, 60.0)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._minute.turn():
            async with self._second.turn():
                yield


class CardKitClient:
    """Creates, sends, grows and finishes streaming cards through the gateway's Feishu HTTP client."""

    def __init__(
        self,
        http: FeishuHttp,
        replies: ReplySender,
        *,
        updates_per_second: float = 5.0,
        api_per_second: int = API_PER_SECOND,
        api_per_minute: int = API_PER_MINUTE,
    ):
        self._http = http
        self._replies = replies
        self.updates_per_second = updates_per_second
        self._pace = {what: ApiPace(api_per_second, api_per_minute) for what in ("create", "content", "settings")}
        self._open: dict[tuple[str, int], StreamCheckpoint] = {}  # in-process memo: a retry reuses the card
        self.unavailable: str | None = None  # why CardKit is off for this app (remembered)

    async def _call(self, send: Awaitable[Any]) -> Any:
        """One request; a missing scope turns CardKit off for good, any other refusal raises."""
        try:
            return await send
        except FeishuRefused as refusal:
            if refusal.code == MISSING_SCOPE:
                self.unavailable = f"the app lacks the {CARDKIT_SCOPE} scope (Feishu code {MISSING_SCOPE})"
                log.warning("CardKit disabled: %s; replies fall back to plain text", self.unavailable)
                raise CardKitUnavailable(self.unavailable) from None
            raise CardKitFailed(refusal) from None

    async def _card_api(self, api: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request to one CardKit API (create, content, settings), in that API's per-app turn."""
        async with self._pace[api].turn():
            return await self._http.call(f"card {api}", method, path, body)

    # -- a stream ----------------------------------------------------------------------------

    async def open_stream(
        self,
        inbound_message_id: str,
        *,
        resume: StreamCheckpoint | None = None,
        on_checkpoint: CheckpointSink | None = None,
        reply_in_thread: bool = False,
        chat_id: str = "",
        part: int = 0,
    ) -> "CardStream":
        """Create (or resume) card `part` of the answer to one inbound message, and make sure it was sent.

        Raises CardKitUnavailable when the app cannot use CardKit (then at once on every later
        call, without asking Feishu again), CardKitFailed when Feishu refused or did not answer.
        """
        if self.unavailable is not None:
            raise CardKitUnavailable(self.unavailable)
        checkpoint = resume or self._open.get((inbound_message_id, part))
        sink = on_checkpoint or _no_sink
        if checkpoint is None:
            checkpoint = StreamCheckpoint(inbound_message_id, await self._create_card(), part=part)
            await sink(checkpoint)  # durable before the card can become visible
        self._open[(inbound_message_id, part)] = checkpoint
        stream = CardStream(self, checkpoint, sink)
        if checkpoint.reply_message_id is None and not checkpoint.finished:
            reply_id = await self._reply_with_card(
                inbound_message_id, checkpoint.card_id, chat_id, reply_in_thread, checkpoint.part
            )
            await stream._save(replace(stream.checkpoint, reply_message_id=reply_id))
        return stream

    def forget(self, inbound_message_id: str, part: int = 0) -> None:
        """Drop the in-process memo (done by `finish`; call it when giving an answer up)."""
        self._open.pop((inbound_message_id, part), None)

    async def _create_card(self) -> str:
        body = {"type": "card_json", "data": json.dumps(streaming_card(), ensure_ascii=False)}
        answer = await self._call(self._card_api("create", "POST", CARDS, body))
        data = answer.get("data")
        card_id = data.get("card_id") if isinstance(data, dict) else None
        if not isinstance(card_id, str) or not card_id:
            raise CardKitFailed(FeishuRefused("card create", None, "the answer has no card_id"))
        return card_id

    async def _reply_with_card(
        self, inbound_message_id: str, card_id: str, chat_id: str, in_thread: bool, part: int
    ) -> str:
        content = json.dumps({"type": "card", "data": {"card_id": card_id}})
        send = self._replies.reply(
            inbound_message_id, "interactive", content, card_reply_uuid(inbound_message_id, part), chat_id, in_thread
        )
        return str(await self._call(send))

    async def _put_content(self, card_id: str, element_id: str, text: str, sequence: int) -> None:
        path = f"{CARDS}/{quote(card_id, safe='')}/elements/{quote(element_id, safe='')}/content"
        body = {"content": text, "sequence": sequence, "uuid": f"c-{card_id}-{sequence}"}
        await self._call(self._card_api("content", "PUT", path, body))

    async def _stop_streaming(self, card_id: str, summary: str, sequence: int) -> None:
        settings = {"config": {"streaming_mode": False, "summary": {"content": summary}}}
        body = {
            "settings": json.dumps(settings, ensure_ascii=False),
            "sequence": sequence,
            "uuid": f"s-{card_id}-{sequence}",
        }
        path = f"{CARDS}/{quote(card_id, safe='')}/settings"
        await self._call(self._card_api("settings", "PATCH", path, body))


class CardStream:
    """One card being written: `push` the text so far as often as you like, then `finish`.

    Pushes are coalesced: at most `updates_per_second` content updates go out, each carrying the
    newest text, the first one at once (the first visible content follows the first token).
    """

    FINISH_ATTEMPTS = 3

    def __init__(self, client: CardKitClient, checkpoint: StreamCheckpoint, sink: CheckpointSink):
        self._client = client
        self.checkpoint = checkpoint
        self._sink = sink
        self._sequence = checkpoint.sequence_reserved  # resume strictly above anything reserved
        self._latest: str | None = None
        self._shown: str | None = None
        # What the caller says each text stands for (delivery: the answer's offset it reaches), so
        # a card Feishu closes tells how much of the answer it shows.
        self._latest_mark: int | None = None
        self.shown_mark: int | None = None
        self._next_at = 0.0
        self._finishing = False  # finish() has begun: the pump stops at its next turn
        self._pump: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.updates_sent = 0

    @property
    def card_id(self) -> str:
        return self.checkpoint.card_id

    @property
    def finished(self) -> bool:
        return self.checkpoint.finished

    @property
    def ended(self) -> CardKitFailed | None:
        """The refusal that ended this card for good (streaming closed, too large, gone), or None."""
        error = self._error
        return error if isinstance(error, CardKitFailed) and error.ends_card else None

    async def push(self, text: str, mark: int | None = None) -> None:
        """Show `text` (the whole answer so far) soon; returns at once. Raises an earlier failure."""
        self._raise_failure()
        if self.finished or not text:
            return
        self._latest, self._latest_mark = text, mark
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._drain(), name=f"card-{self.card_id}")

    async def finish(self, text: str, mark: int | None = None) -> StreamCheckpoint:
        """Show the final `text`, turn streaming off, checkpoint `finished`; retried a few times.

        A card Feishu has ended (`ended`) is not asked again: its refusal is raised at once.
        """
        if self.finished:
            return self.checkpoint
        final = text or PLACEHOLDER
        self._latest, self._latest_mark = final, mark
        self._finishing = True  # the progress pump stops retrying: the final send below supersedes it
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)
        if self.ended is not None:
            raise self.ended
        self._error = None  # the final push below supersedes whatever a progress update hit
        for attempt in range(self.FINISH_ATTEMPTS):
            try:
                if self._shown != final:
                    await self._send(final, mark)
                await self._client._stop_streaming(self.card_id, _summary(final), await self._next_sequence())
                break
            except CardKitFailed as exc:
                if exc.ends_card:
                    self._error = exc
                    raise
                if not exc.retryable or attempt == self.FINISH_ATTEMPTS - 1:
                    raise
                log.info("finishing card %s: %s; retrying", self.card_id, exc)
                await asyncio.sleep(self._interval() * (attempt + 1))
        await self._save(replace(self.checkpoint, finished=True))
        self._client.forget(self.checkpoint.inbound_message_id, self.checkpoint.part)  # the journal has the rest
        return self.checkpoint

    async def close_as_shown(self) -> StreamCheckpoint:
        """Turn streaming off with what the card shows, once, if Feishu still allows (a card Feishu
        ended, or one whose answer changed under it).

        Whatever Feishu answers, the card is done here: it is checkpointed finished and never
        written again.
        """
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if not self.finished and not (self.ended is not None and self.ended.card_gone):
            try:
                summary = _summary(self._shown or "")
                await self._client._stop_streaming(self.card_id, summary, await self._next_sequence())
            except CardKitFailed as exc:
                log.info("card %s stays as it is (%s)", self.card_id, exc)
        await self._save(replace(self.checkpoint, finished=True))
        self._client.forget(self.checkpoint.inbound_message_id, self.checkpoint.part)
        return self.checkpoint

    async def abandon(self) -> None:
        """Stop pushing without finishing (the caller falls back or gives up); keeps the checkpoint."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    # -- internals --------------------------------------------------------------------------

    def _interval(self) -> float:
        return 1.0 / self._client.updates_per_second

    async def _drain(self) -> None:
        """Send the newest text until what is shown is what was pushed, at the coalescing rate."""
        loop = asyncio.get_running_loop()
        try:
            while self._latest is not None and self._latest != self._shown:
                delay = self._next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the rate limit: later pushes merge meanwhile
                if self._finishing:
                    # finish() sends the final text itself, with a bounded number of attempts: a
                    # progress update refused again and again (a 429 that lasts) must not hold it.
                    return
                try:
                    await self._send(self._latest, self._latest_mark)
                except CardKitFailed as exc:
                    if not exc.retryable:
                        raise
                    log.info("card %s update deferred: %s", self.card_id, exc)
                    self._next_at = loop.time() + 2 * self._interval()
        except (CardKitFailed, CardKitUnavailable) as exc:
            self._error = exc

    async def _send(self, text: str, mark: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        sequence = await self._next_sequence()
        self._next_at = loop.time() + self._interval()
        await self._client._put_content(self.card_id, self.checkpoint.element_id, text, sequence)
        self._shown, self.shown_mark = text, mark
        self.updates_sent += 1

    async def _next_sequence(self) -> int:
        """The next sequence; the reserved ceiling is raised (and checkpointed) before it is passed."""
        self._sequence += 1
        if self._sequence > self.checkpoint.sequence_reserved:
            await self._save(replace(self.checkpoint, sequence_reserved=self._sequence + SEQUENCE_BLOCK - 1))
        return self._sequence

    async def _save(self, checkpoint: StreamCheckpoint) -> None:
        self.checkpoint = checkpoint
        self._client._open[(checkpoint.inbound_message_id, checkpoint.part)] = checkpoint
        await self._sink(checkpoint)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error


def _summary(text: str) -> str:
    """What the chat list shows for the card: the answer's first line, short."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:SUMMARY_CHARS]


async def _no_sink(checkpoint: StreamCheckpoint) -> None:
    """Without a journal, checkpoints live only in the client's in-process memo."""
