"""Replies to Feishu: over asyncio, within Feishu's rate limits, never dropped for being too fast.

Feishu accepts at most 5 messages a second to one user or group and 50 a second per app; over
that it answers HTTP 400 with code 230020. Hundreds of answers finishing together would hit both,
so every reply first waits its turn in two limiters (its chat's, then the app's), and a 230020
that still happens (another bot in the same group, clocks a little apart) is backed off and
retried — the reply is late, never lost, and never turned into an apology.

Why not the SDK's `areply`: lark-oapi 1.7.5 builds a new `httpx.AsyncClient` for every request,
which loads the CA bundle each time (~30 ms of CPU here: at 50 replies/s, most of a core) and
keeps no connection alive; its blocking `reply` would hold a pool thread per send. So replies go
through one pooled `aiohttp.ClientSession` on the gateway's loop (see llm.py for why not httpx),
to the same endpoints with the same bodies as the SDK (`POST /open-apis/im/v1/messages/:id/reply`,
a tenant token from `/open-apis/auth/v3/tenant_access_token/internal`), each attempt within a
total deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import AsyncIterator, Callable
from urllib.parse import quote

import aiohttp

from .config import FeishuConfig
from .feishu import ReplyFailed, reply_uuid
from .logs import escape_untrusted

log = logging.getLogger("gatewatch.replies")

RATE_LIMITED = 230020  # Feishu: too many requests to this chat or for this app
TOKEN_REJECTED = {99991661, 99991663, 99991668}  # missing, invalid, expired tenant token
REPLY_TIMEOUT = 10.0  # total seconds per attempt: connect, send, whole answer
TOKEN_EARLY_REFRESH = 600.0  # like the SDK: a token is renewed 10 min before it expires
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


class ReplySender:
    """Sends text replies for one app, on the gateway's loop."""

    def __init__(self, config: FeishuConfig):
        self.config = config
        self.limiter = ReplyLimiter(config.chat_replies_per_second, config.app_replies_per_second)
        self._http: aiohttp.ClientSession | None = None
        self._token: tuple[str, float] | None = None  # (token, monotonic time to renew it)
        self._token_lock: asyncio.Lock | None = None
        self._sent = self._rate_limited = self._failed = 0
        # Like the SDK's requests, a proxy set for Feishu's domain is used; looked up once here,
        # not per request (aiohttp's trust_env would ask the executor on every send).
        self._proxy = proxy_for(config.domain)

    async def reply_text(self, message_id: str, text: str, chat_id: str = "") -> str:
        """Reply to `message_id` in `chat_id`; return the reply's id or raise ReplyFailed.

        The request's uuid is derived from the inbound message id: Feishu sends a given uuid
        once per hour, so a retried or re-driven reply can never be delivered twice. Over
        Feishu's rate limit it waits and tries again, as long as it takes.
        """
        body = {
            "content": json.dumps({"text": text}, ensure_ascii=False),
            "msg_type": "text",
            "uuid": reply_uuid(message_id),
        }
        backoff = BACKOFF_FIRST
        while True:
            try:
                async with self.limiter.turn(chat_id):
                    reply_id = await self._post_reply(message_id, body)
            except _RateLimited:
                self._rate_limited += 1
                delay = backoff * random.uniform(1.0, 1.5)  # jitter: waiting replies spread out
                log.warning("Feishu rate limit (230020) for the reply to %s; retrying in %.2fs", message_id, delay)
                await asyncio.sleep(delay)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            except ReplyFailed:
                self._failed += 1
                raise
            self._sent += 1
            return reply_id

    async def _post_reply(self, message_id: str, body: dict[str, str]) -> str:
        path = f"/open-apis/im/v1/messages/{quote(message_id, safe='')}/reply"
        for fresh_token in (False, True):
            token = await self._tenant_token(renew=fresh_token)
            answer = await self._post(path, body, token)
            code = answer.get("code")
            if code == 0:
                data = answer.get("data") or {}
                return str(data.get("message_id") or "")
            if code == RATE_LIMITED:
                raise _RateLimited()
            if code in TOKEN_REJECTED and not fresh_token:
                continue  # revoked or expired early: fetch a new one, once
            raise ReplyFailed(f"code {code}: {escape_untrusted(str(answer.get('msg')), limit=200)}")
        raise AssertionError("unreachable")

    async def _tenant_token(self, renew: bool = False) -> str:
        """The app's tenant access token, fetched once and renewed before it expires."""
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:  # one fetch for all the replies waiting on it
            now = time.monotonic()
            if self._token is not None and not renew and now < self._token[1]:
                return self._token[0]
            answer = await self._post(
                "/open-apis/auth/v3/tenant_access_token/internal",
                {"app_id": self.config.app_id, "app_secret": self.config.app_secret},
                token=None,
            )
            token = answer.get("tenant_access_token")
            if answer.get("code") != 0 or not isinstance(token, str) or not token:
                raise ReplyFailed(
                    f"tenant token refused: code {answer.get('code')}: "
                    f"{escape_untrusted(str(answer.get('msg')), limit=200)}"
                )
            expire = answer.get("expire")
            lifetime = float(expire) if isinstance(expire, (int, float)) else 7200.0
            self._token = (token, now + max(60.0, lifetime - TOKEN_EARLY_REFRESH))
            return token

    async def _post(self, path: str, body: dict[str, str], token: str | None) -> dict:
        """One POST within REPLY_TIMEOUT; Feishu's JSON answer whatever the HTTP status."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                async with self._client().post(
                    self.config.domain + path, json=body, headers=headers, proxy=self._proxy
                ) as response:
                    status, raw = response.status, await response.read()
        except TimeoutError:  # the deadline, or one of aiohttp's own socket timeouts
            raise ReplyFailed(f"no answer from Feishu within {REPLY_TIMEOUT:g}s") from None
        except aiohttp.ClientError as exc:
            raise ReplyFailed(f"{type(exc).__name__} talking to Feishu") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ReplyFailed(f"HTTP {status}, not a Feishu answer") from None
        if not isinstance(answer, dict):
            raise ReplyFailed(f"HTTP {status}, not a Feishu answer")
        return answer

    def _client(self) -> aiohttp.ClientSession:
        """The pooled client, made on first use: it belongs to the loop that uses it."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REPLY_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=0, resolver=aiohttp.ThreadedResolver()),
                trust_env=False,  # the proxy, if any, is self._proxy
            )
        return self._http

    def stats(self) -> ReplyStats:
        return ReplyStats(self._sent, self._rate_limited, self._failed)

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()


class _RateLimited(Exception):
    """Feishu answered 230020."""


def proxy_for(url: str) -> str | None:
    """The environment's proxy for `url` (HTTPS_PROXY/HTTP_PROXY, minus NO_PROXY), or None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
