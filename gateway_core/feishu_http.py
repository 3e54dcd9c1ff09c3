"""Feishu's HTTP API, the one way the gateway calls it: asyncio on the gateway's loop, one token.

Everything the gateway asks Feishu over HTTP — replies (text and card), CardKit's card entities and
their streaming updates, the bot's own identity — goes through one `FeishuHttp`: one pooled
`aiohttp.ClientSession` (see llm.py for why not httpx), one tenant-token cache, one deadline
policy and one mapping of Feishu's answers to errors. The rate limits sit above it, with their
callers (`replies.ReplySender` for messages, `cardkit.CardKitClient` for cards).

Why not lark-oapi's HTTP client: its calls block (`requests`; even the async `a*` variants fetch
the tenant token with a blocking call), so each held a pool thread; its `areply` builds a new
`httpx.AsyncClient` per request, loading the CA bundle each time (~30 ms of CPU here) with no
connection kept alive; and it keeps a token cache of its own, process-wide per app id. The SDK
stays for the WebSocket long connection only (feishu.py); the requests here have the same
endpoints and bodies as the SDK's.

The rules:
- every call has one total deadline (`request_timeout`, 10 s): fetching a token if one is needed,
  the request, and the one retry with a fresh token; a stuck call is given up, never waited on;
- the tenant token (`/open-apis/auth/v3/tenant_access_token/internal`) is fetched once for all the
  calls waiting on it and renewed 10 minutes before it expires, like the SDK; a token Feishu calls
  missing, invalid or expired is renewed once, and refused again means `TokenRefused`;
- a proxy set for Feishu's domain (HTTPS_PROXY/HTTP_PROXY, minus NO_PROXY) is used, looked up once;
- an answer with a non-zero `code` raises `FeishuRefused` carrying that code; no answer (timeout,
  connection refused, not JSON) raises it with `code` None. Texts are escaped and hold no secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp

from .config import FeishuConfig
from .logs import escape_untrusted

REQUEST_TIMEOUT = 10.0  # total seconds per call: token if needed, connect, send, the whole answer
TOKEN_EARLY_REFRESH = 600.0  # like the SDK: a token is renewed 10 min before it expires
TOKEN_REJECTED = {99991661, 99991663, 99991668}  # missing, invalid, expired tenant token
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
BOT_INFO_PATH = "/open-apis/bot/v3/info"


class FeishuRefused(Exception):
    """Feishu answered `what` with a non-zero `code`, or did not answer at all (`code` None).

    `detail` is the one-line reason without the call's name ("code 230001: …", "no answer from
    Feishu within 10s"): what the health model and the console show.
    """

    def __init__(self, what: str, code: int | None, detail: str):
        super().__init__(f"{what} failed: {detail}")
        self.what, self.code, self.detail = what, code, detail


class TokenRefused(FeishuRefused):
    """Feishu issued no tenant token for the app, or refused a fresh one: no call can succeed."""


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is: its open_id tells its own @-mention from anyone else's."""

    open_id: str
    app_name: str


class FeishuHttp:
    """One app's HTTP client for Feishu, on the loop that first uses it."""

    def __init__(self, config: FeishuConfig, *, request_timeout: float = REQUEST_TIMEOUT):
        self.config = config
        self.request_timeout = request_timeout
        self._http: aiohttp.ClientSession | None = None
        self._token: tuple[str, float] | None = None  # (token, monotonic time to renew it)
        self._token_lock: asyncio.Lock | None = None
        # Like the SDK's requests, a proxy set for Feishu's domain is used; looked up once here,
        # not per request (aiohttp's trust_env would ask the executor on every call).
        self._proxy = proxy_for(config.domain)

    async def call(self, what: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with the app's tenant token; Feishu's whole answer when its code is 0.

        Raises FeishuRefused (TokenRefused when no token is to be had), all within one deadline.
        """
        try:
            async with asyncio.timeout(self.request_timeout):
                for fresh_token in (False, True):
                    token = await self._tenant_token(what, renew=fresh_token)
                    answer = await self._exchange(what, method, path, body, token)
                    code = answer.get("code")
                    if code == 0:
                        return answer
                    if code in TOKEN_REJECTED and not fresh_token:
                        continue  # revoked or expired early: fetch a new one, once
                    refusal = TokenRefused if code in TOKEN_REJECTED else FeishuRefused
                    raise refusal(what, code if isinstance(code, int) else None, _code_and_msg(answer))
        except TimeoutError:  # the deadline, or one of aiohttp's own socket timeouts
            raise FeishuRefused(what, None, f"no answer from Feishu within {self.request_timeout:g}s") from None
        raise AssertionError("unreachable")

    async def bot_identity(self) -> BotIdentity:
        """GET /open-apis/bot/v3/info: the bot's open_id and app name (answered under "bot")."""
        answer = await self.call("bot info", "GET", BOT_INFO_PATH)
        bot = answer.get("bot")
        if not isinstance(bot, dict) or not isinstance(bot.get("open_id"), str) or not bot["open_id"]:
            raise FeishuRefused("bot info", None, "the answer has no bot.open_id")
        return BotIdentity(bot["open_id"], str(bot.get("app_name") or ""))

    async def _tenant_token(self, what: str, renew: bool = False) -> str:
        """The app's tenant access token, fetched once and renewed before it expires."""
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:  # one fetch for all the calls waiting on it
            now = time.monotonic()
            if self._token is not None and not renew and now < self._token[1]:
                return self._token[0]
            answer = await self._exchange(
                what, "POST", TOKEN_PATH, {"app_id": self.config.app_id, "app_secret": self.config.app_secret}, None
            )
            token, code = answer.get("tenant_access_token"), answer.get("code")
            if code != 0 or not isinstance(token, str) or not token:
                raise TokenRefused(
                    what, code if isinstance(code, int) else None, f"tenant token refused: {_code_and_msg(answer)}"
                )
            expire = answer.get("expire")
            lifetime = float(expire) if isinstance(expire, (int, float)) else 7200.0
            self._token = (token, now + max(60.0, lifetime - TOKEN_EARLY_REFRESH))
            return token

    async def _exchange(
        self, what: str, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> dict[str, Any]:
        """One HTTP exchange (the caller holds the deadline); Feishu's JSON answer whatever the status."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._client().request(
                method, self.config.domain + path, json=body, headers=headers, proxy=self._proxy
            ) as response:
                status, raw = response.status, await response.read()
        except TimeoutError:
            raise  # aiohttp's socket timeouts too: the caller says "no answer within the deadline"
        except aiohttp.ClientError as exc:
            raise FeishuRefused(what, None, f"{type(exc).__name__} talking to Feishu") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise FeishuRefused(what, None, f"HTTP {status}, not a Feishu answer") from None
        if not isinstance(answer, dict):
            raise FeishuRefused(what, None, f"HTTP {status}, not a Feishu answer")
        return answer

    def _client(self) -> aiohttp.ClientSession:
        """The pooled client, made on first use: it belongs to the loop that uses it."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                connector=aiohttp.TCPConnector(limit=0, resolver=aiohttp.ThreadedResolver()),
                trust_env=False,  # the proxy, if any, is self._proxy
            )
        return self._http

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()


def _code_and_msg(answer: dict[str, Any]) -> str:
    return f"code {answer.get('code')}: {escape_untrusted(str(answer.get('msg')), limit=200)}"


def reply_uuid(message_id: str) -> str:
    """The text reply's idempotency key: Feishu sends one reply per uuid within an hour."""
    return "gw-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def proxy_for(url: str) -> str | None:
    """The environment's proxy for `url` (HTTPS_PROXY/HTTP_PROXY, minus NO_PROXY), or None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
