"""Replies to Feishu: over asyncio, within Feishu's rate limits, never dropped for being too fast.

Feishu accepts at most 5 messages a second to one user or group and 50 a second per app; over
that it answers HTTP 400 with code 230020. Hundreds of answers finishing together would hit both,
so every reply first waits its turn in two limiters (its chat's, then the app's), and a 230020
that still happens (another bot in the same group, clocks a little apart) is backed off and
retried — the reply is late, never lost, and never turned into an apology.

Why not the SDK's `areply`: lark-oapi 1.7.5 builds a new `httpx.AsyncClient` for every request,
which loads the CA bundle each time (~30 ms of CPU here: at 50 replies/s, most of a core) and
keeps no connection alive; its blocking `reply` would hold a pool thread per send. So replies go
through one pooled `httpx.AsyncClient` on the gateway's loop, to the same endpoints with the same
bodies as the SDK (`POST /open-apis/im/v1/messages/:id/reply`, a tenant token from
`/open-apis/auth/v3/tenant_access_token/internal`), each attempt within a total deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from .config import FeishuConfig
from .feishu import ReplyFailed, reply_uuid
from .logs import escape_untrusted

log = logging.getLogger("gatewatch.replies")

RATE_LIMITED = 230020  # Feishu: too many requests to this chat or for this app
TOKEN_REJECTED = {99991661, 99991663, 99991668}  # missing, invalid, expired tenant token
REPLY_TIMEOUT = 10.0  # total seconds per attempt: connect, send, whole answer
TOKEN_EARLY_REFRESH = 600.0  # like the SDK: a token is renewed 10 min before it expires
WINDOW = 1.0  # Feishu's limits are per second
WINDOW_MARGIN = 0.02  # requests leave us this much further apart than the limit needs (jitter)
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0  # after a 230020, seconds before the retry (doubling)


class SlidingWindow:
    """At most `limit` starts in any `window` seconds, granted first come, first served.

    Each caller reserves the earliest start the window allows and sleeps until then: one sleep
    per caller however many wait, and a strict bound over every window (a token bucket would
    let a burst straddle a window boundary, which Feishu counts as over the limit).
    """

    def __init__(self, limit: int, window: float = WINDOW + WINDOW_MARGIN):
        self.limit, self.window = limit, window
        self._starts: deque[float] = deque(maxlen=limit)  # the latest `limit` reservations

    def reserve(self, now: float) -> float:
        """Reserve the next start at or after `now`; return it."""
        start = now
        if len(self._starts) == self.limit:
            start = max(now, self._starts[0] + self.window)
        self._starts.append(start)
        return start

    def push_back(self, until: float) -> None:
        """Nothing new starts before `until` (after Feishu said we were too fast)."""
        self._starts.clear()
        self._starts.extend([until - self.window] * self.limit)

    def idle_since(self, now: float) -> bool:
        return not self._starts or self._starts[-1] + self.window <= now


class ReplyLimiter:
    """Feishu's two limits: per chat (user or group) and per app; chats idle for a window are forgotten."""

    def __init__(self, per_chat: int, per_app: int):
        self.per_chat = per_chat
        self._app = SlidingWindow(per_app)
        self._chats: dict[str, SlidingWindow] = {}

    async def wait_turn(self, chat_id: str) -> None:
        loop = asyncio.get_running_loop()
        chat = self._chat(chat_id, loop.time())
        await _sleep_until(loop, chat.reserve(loop.time()))
        await _sleep_until(loop, self._app.reserve(loop.time()))

    def slow_down(self, chat_id: str, seconds: float) -> None:
        """Feishu refused for speed: hold this chat back (the app limit may be the cause, too)."""
        loop = asyncio.get_running_loop()
        self._chat(chat_id, loop.time()).push_back(loop.time() + seconds)

    def _chat(self, chat_id: str, now: float) -> SlidingWindow:
        window = self._chats.get(chat_id)
        if window is None:
            if len(self._chats) >= 1024:  # bounded memory: drop chats with nothing recent
                self._chats = {k: w for k, w in self._chats.items() if not w.idle_since(now)}
            window = self._chats[chat_id] = SlidingWindow(self.per_chat)
        return window


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


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
        self._http: httpx.AsyncClient | None = None
        self._token: tuple[str, float] | None = None  # (token, monotonic time to renew it)
        self._token_lock: asyncio.Lock | None = None
        self._sent = self._rate_limited = self._failed = 0

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
            await self.limiter.wait_turn(chat_id)
            try:
                reply_id = await self._post_reply(message_id, body)
            except _RateLimited:
                self._rate_limited += 1
                delay = backoff * random.uniform(1.0, 1.5)  # jitter: waiting replies spread out
                log.warning("Feishu rate limit (230020) for the reply to %s; retrying in %.2fs", message_id, delay)
                self.limiter.slow_down(chat_id, delay)
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
                response = await self._client().post(path, json=body, headers=headers)
        except TimeoutError:
            raise ReplyFailed(f"no answer from Feishu within {REPLY_TIMEOUT:g}s") from None
        except httpx.HTTPError as exc:
            raise ReplyFailed(f"{type(exc).__name__} talking to Feishu") from None
        try:
            answer = response.json()
        except ValueError:
            raise ReplyFailed(f"HTTP {response.status_code}, not a Feishu answer") from None
        if not isinstance(answer, dict):
            raise ReplyFailed(f"HTTP {response.status_code}, not a Feishu answer")
        return answer

    def _client(self) -> httpx.AsyncClient:
        """The pooled client, made on first use so it belongs to the gateway's loop."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.config.domain,
                timeout=httpx.Timeout(REPLY_TIMEOUT),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return self._http

    def stats(self) -> ReplyStats:
        return ReplyStats(self._sent, self._rate_limited, self._failed)

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


class _RateLimited(Exception):
    """Feishu answered 230020."""
