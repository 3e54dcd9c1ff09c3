"""Replies to Feishu: within Feishu's rate limits, never dropped for being too fast.

Feishu accepts at most 5 messages a second to one user or group and 50 a second per app; over
that it answers HTTP 400 with code 230020. Hundreds of answers finishing together would hit both,
so every reply — a plain text or a streaming card's message — first waits its turn in two
limiters (its chat's, then the app's), and a 230020 that still happens (another bot in the same
group, clocks a little apart) is backed off and retried: the reply is late, never lost, and never
turned into an apology. The request itself (`POST /open-apis/im/v1/messages/:id/reply`, with its
idempotency uuid) goes through the gateway's one Feishu HTTP client (feishu_http.py), under its
deadline; the time spent waiting for a turn is not part of that deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from typing import AsyncIterator, Callable
from urllib.parse import quote

from .config.schema import FeishuConfig
from .feishu_http import FeishuHttp, FeishuRefused, TokenRefused, reply_uuid

log = logging.getLogger("gatewatch.replies")

RATE_LIMITED = 230020  # Feishu: too many requests to this chat or for this app
WINDOW = 1.0  # Feishu's limits are per second
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0  # after a 230020, seconds before the retry (doubling)


class RequestWindow:
    """At most `limit` requests in flight or finished less than `window` seconds ago.

    Feishu counts a request when it arrives, which we cannot see: it is after we start sending
    and before the answer comes back. So a request keeps its permit until `window` seconds after
    its answer: whatever the loop's or the network's delays, the next request using that permit
    arrives more than a window after this one did. Waiters are served first come, first served.
    """

    def __init__(self, limit: int, window: float = WINDOW):
        self.limit, self.window = limit, window
        self._permits = asyncio.Semaphore(limit)
        self.holding = 0  # permits taken and not yet given back
        self.waiting = 0  # callers waiting for a permit

    @property
    def idle(self) -> bool:
        return self.holding == 0 and self.waiting == 0

    @contextlib.asynccontextmanager
    async def turn(self, on_free: Callable[[], None] | None = None) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._permits.acquire()
        finally:
            self.waiting -= 1
        self.holding += 1
        try:
            yield
        finally:
            asyncio.get_running_loop().call_later(self.window, self._give_back, on_free)

    def _give_back(self, on_free: Callable[[], None] | None) -> None:
        self.holding -= 1
        self._permits.release()
        if on_free is not None:
            on_free()


class ReplyLimiter:
    """Feishu's two limits: per chat (user or group) and per app."""

    def __init__(self, per_chat: int, per_app: int):
        self.per_chat = per_chat
        self._app = RequestWindow(per_app)
        self._chats: dict[str, RequestWindow] = {}

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: str) -> AsyncIterator[None]:
        """Wait until one more request to `chat_id` is within both limits; send it inside."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = RequestWindow(self.per_chat)
        async with chat.turn(on_free=lambda: self._forget_if_idle(chat_id, chat)):
            async with self._app.turn():
                yield

    def _forget_if_idle(self, chat_id: str, chat: RequestWindow) -> None:
        # A chat nobody sent to for a window needs no memory: the dict stays as small as the
        # set of chats answered in the last second.
        if chat.idle and self._chats.get(chat_id) is chat:
            del self._chats[chat_id]


@dataclass(frozen=True)
class ReplyStats:
    sent: int
    rate_limited: int  # 230020 answers, each backed off and retried
    failed_attempts: int  # attempts that failed otherwise (the pipeline retries those)
    failures_in_a_row: int = 0  # failed attempts since the last reply Feishu accepted
    last_error: str | None = None  # why the last attempt failed (one line, no secrets)
    token_refused: bool = False  # the last failure: Feishu refused our tenant token or issued none


class ReplySender:
    """Sends replies for one app through its Feishu HTTP client, on the gateway's loop."""

    def __init__(
        self,
        http: FeishuHttp,
        chat_replies_per_second: int = FeishuConfig.chat_replies_per_second,  # the declared defaults
        app_replies_per_second: int = FeishuConfig.app_replies_per_second,
    ):
        self.http = http
        self.limiter = ReplyLimiter(chat_replies_per_second, app_replies_per_second)
        self._sent = self._rate_limited = self._failed = 0
        # Failures in a row, not a total: one refused token fails every reply from then on, and
        # the health model must see that at once, not after a rate.
        self._failed_in_a_row = 0
        self._last_error: str | None = None
        self._token_refused = False

    async def reply_text(self, message_id: str, text: str, chat_id: str = "", part: int = 0) -> str:
        """Reply to `message_id` in `chat_id` with plain text; the reply's id, or FeishuRefused.

        The request's uuid is derived from the inbound message id (and the part of a long answer):
        Feishu sends a given uuid once per hour, so a retried or re-driven reply can never be
        delivered twice.
        """
        content = json.dumps({"text": text}, ensure_ascii=False)
        return await self.reply(message_id, "text", content, reply_uuid(message_id, part), chat_id)

    async def reply(
        self, message_id: str, msg_type: str, content: str, uuid: str, chat_id: str = "", in_thread: bool = False
    ) -> str:
        """Send one reply (`content` a JSON string of `msg_type`); return Feishu's id of it.

        Over Feishu's rate limit it waits and tries again, as long as it takes; any other refusal
        (or no answer within the client's deadline) raises FeishuRefused and is counted.
        """
        body: dict[str, object] = {"content": content, "msg_type": msg_type, "uuid": uuid}
        if in_thread:
            body["reply_in_thread"] = True
        path = f"/open-apis/im/v1/messages/{quote(message_id, safe='')}/reply"
        backoff = BACKOFF_FIRST
        while True:
            try:
                async with self.limiter.turn(chat_id):
                    answer = await self.http.call("reply", "POST", path, body)
            except FeishuRefused as exc:
                if exc.code == RATE_LIMITED:
                    self._rate_limited += 1
                    delay = backoff * random.uniform(1.0, 1.5)  # jitter: waiting replies spread out
                    log.warning("Feishu rate limit (230020) for the reply to %s; retrying in %.2fs", message_id, delay)
                    await asyncio.sleep(delay)
                    backoff = min(BACKOFF_MAX, backoff * 2)
                    continue
                self._failed += 1
                self._failed_in_a_row += 1
                self._last_error = exc.detail
                self._token_refused = isinstance(exc, TokenRefused)
                raise
            self._sent += 1
            self._failed_in_a_row, self._token_refused = 0, False
            data = answer.get("data") or {}
            return str(data.get("message_id") or "") if isinstance(data, dict) else ""

    def stats(self) -> ReplyStats:
        return ReplyStats(
            self._sent, self._rate_limited, self._failed, self._failed_in_a_row, self._last_error, self._token_refused
        )


TYPING_EMOJI = "Typing"  # Feishu's emoji_type for the "typing" reaction (hermes-agent uses it the same way)
TYPING_OFF_FOR = 300.0  # seconds the sign is left off after Feishu refused one


class TypingIndicator:
    """A "Typing" reaction on the user's message while its answer is prepared (text replies only).

    `POST /open-apis/im/v1/messages/{id}/reactions` when the answer starts, `DELETE
    …/reactions/{reaction_id}` once the reply was sent. It never delays or fails an answer: both
    calls run as tasks beside it, within a per-app window of their own (reactions are an API of
    their own, with the app's limits; they never take a reply's turn), each under the HTTP client's
    deadline. A refused reaction (missing scope, quota, rate) is logged once and the sign is then
    left off for TYPING_OFF_FOR seconds.
    """

    def __init__(
        self, http: FeishuHttp, per_second: int = FeishuConfig.app_replies_per_second, off_for: float = TYPING_OFF_FOR
    ):
        self.http = http
        self._window = RequestWindow(per_second)
        self._off_for = off_for
        self._off_until = 0.0
        self._adding: dict[str, asyncio.Task[str | None]] = {}
        self._in_call: set[str] = set()  # adds whose request is out: their reaction may exist
        self._tasks: set[asyncio.Task[None]] = set()
        self.added = self.removed = self.refused = 0

    def start(self, message_id: str) -> None:
        """Show the sign on `message_id` (in the background); nothing while it is left off."""
        loop = asyncio.get_running_loop()
        if message_id in self._adding or loop.time() < self._off_until:
            return
        self._adding[message_id] = loop.create_task(self._add(message_id), name=f"typing-{message_id}")

    def stop(self, message_id: str, leftovers: bool = False) -> None:
        """The reply is out (or the answer ended): take the sign away, in the background.

        `leftovers` (a re-driven message): also take away the sign a predecessor killed
        mid-answer left on it — its reaction id died with it, so the message's "Typing" reactions
        are listed (`GET …/reactions?reaction_type=Typing`) and this app's own are deleted.
        """
        task = self._adding.pop(message_id, None)
        if task is not None and not task.done() and message_id not in self._in_call:
            task.cancel()  # still waiting for its turn: nothing was shown
            task = None
        if task is None and not leftovers:
            return
        removal = asyncio.get_running_loop().create_task(
            self._remove(message_id, task, leftovers), name=f"untyping-{message_id}"
        )
        self._tasks.add(removal)
        removal.add_done_callback(self._tasks.discard)

    async def _clear(self, message_id: str) -> None:
        try:
            async with self._window.turn():
                answer = await self.http.call(
                    "typing reactions list",
                    "GET",
                    f"{self._path(message_id)}?reaction_type={TYPING_EMOJI}&page_size=50",
                )
            data = answer.get("data")
            items = data.get("items") if isinstance(data, dict) else None
            for item in items if isinstance(items, list) else ():
                operator = item.get("operator") if isinstance(item, dict) else None
                reaction_id = item.get("reaction_id") if isinstance(item, dict) else None
                if not (isinstance(operator, dict) and operator.get("operator_type") == "app"):
                    continue  # a person's reaction is theirs
                if operator.get("operator_id") != self.http.config.app_id or not isinstance(reaction_id, str):
                    continue
                async with self._window.turn():
                    await self.http.call(
                        "typing reaction removal", "DELETE", f"{self._path(message_id)}/{quote(reaction_id, safe='')}"
                    )
                self.removed += 1
        except FeishuRefused as exc:
            log.info("typing reactions left on %s not cleared: %s", message_id, exc.detail)

    async def close(self, timeout: float) -> None:
        """Let removals finish for up to `timeout` seconds, then cancel what is left."""
        for task in self._adding.values():
            task.cancel()
        self._adding.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in set(self._tasks):
            task.cancel()

    def _path(self, message_id: str) -> str:
        return f"/open-apis/im/v1/messages/{quote(message_id, safe='')}/reactions"

    async def _add(self, message_id: str) -> str | None:
        async with self._window.turn():
            self._in_call.add(message_id)
            try:
                answer = await self.http.call(
                    "typing reaction", "POST", self._path(message_id), {"reaction_type": {"emoji_type": TYPING_EMOJI}}
                )
            except FeishuRefused as exc:
                self._refused(exc)
                return None
            finally:
                self._in_call.discard(message_id)
        self.added += 1
        data = answer.get("data")
        reaction_id = data.get("reaction_id") if isinstance(data, dict) else None
        return reaction_id if isinstance(reaction_id, str) and reaction_id else None

    async def _remove(self, message_id: str, adding: asyncio.Task[str | None] | None, leftovers: bool) -> None:
        reaction_id = None
        if adding is not None:
            await asyncio.wait({adding})  # not `await adding`: cancelling this must not cancel it
            if not adding.cancelled() and adding.exception() is None:
                reaction_id = adding.result()
        if reaction_id is not None:
            async with self._window.turn():
                try:
                    await self.http.call(
                        "typing reaction removal", "DELETE", f"{self._path(message_id)}/{quote(reaction_id, safe='')}"
                    )
                    self.removed += 1
                except FeishuRefused as exc:
                    log.info("typing reaction on %s not removed: %s", message_id, exc.detail)
        if leftovers:
            await self._clear(message_id)

    def _refused(self, exc: FeishuRefused) -> None:
        self.refused += 1
        loop = asyncio.get_running_loop()
        if loop.time() >= self._off_until:
            log.warning(
                "typing reaction refused (%s); answers go on without it, and it is left off for %.0fs",
                exc.detail,
                self._off_for,
            )
        self._off_until = loop.time() + self._off_for
