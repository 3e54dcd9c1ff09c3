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
- a refused token is backed off app-wide (1 s doubling to 60 s): meanwhile calls wait within their
  deadline, or share the last refusal, rather than each ask Feishu for a token again;
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # aiohttp is imported inside the methods that call out, not here: the console imports this module
    # for its snapshot types before its first frame, and aiohttp is the gateway's heaviest import. The
    # gateway pays for it once, on its loop thread, when it first opens a session.
    import aiohttp

from .config import FeishuConfig
from .logs import escape_untrusted
from .parts import request_bytes

REQUEST_TIMEOUT = 10.0  # total seconds per call: token if needed, connect, send, the whole answer
TOKEN_EARLY_REFRESH = 600.0  # like the SDK: a token is renewed 10 min before it expires
TOKEN_REJECTED = {99991661, 99991663, 99991668}  # missing, invalid, expired tenant token
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
TOKEN_BACKOFF_FIRST, TOKEN_BACKOFF_MAX = 1.0, 60.0  # after a refused token, seconds before asking again
BOT_INFO_PATH = "/open-apis/bot/v3/info"


class FeishuRefused(Exception):
    """Feishu answered `what` with a non-zero `code`, or did not answer at all (`code` None).

    `detail` is the one-line reason without the call's name ("code 230001: …", "no answer from
    Feishu within 10s"): what the health model and the console show.
    """

    def __init__(self, what: str, code: int | None, detail: str):
        super().__init__(f"{what} failed: {detail}")
        self.what, self.code, self.detail = what, code, detail


class ResourceTooLarge(FeishuRefused):
    """A download was larger than the caller's cap: reading stopped there, nothing was kept."""


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
        # The app-wide back-off after Feishu refused a token: nothing asks again before
        # `_token_retry_at` (monotonic), and a call that waited while a fetch was refused shares
        # that refusal (`_token_fetches` tells it one happened) instead of asking once more.
        self._token_refusal: TokenRefused | None = None
        self._token_retry_at = 0.0
        self._token_backoff = TOKEN_BACKOFF_FIRST
        self._token_fetches = 0
        self.token_requests = 0  # tenant-token requests sent (the back-off's figure)
        # Like the SDK's requests, a proxy set for Feishu's domain is used; looked up once here,
        # not per request (aiohttp's trust_env would ask the executor on every call).
        self._proxy = proxy_for(config.domain)

    async def call(self, what: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with the app's tenant token; Feishu's whole answer when its code is 0.

        Raises FeishuRefused (TokenRefused when no token is to be had), all within one deadline.
        """
        try:
            async with asyncio.timeout(self.request_timeout) as deadline:
                for fresh_token in (False, True):
                    token = await self._tenant_token(what, deadline.when(), renew=fresh_token)
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

    async def download(self, what: str, path: str, max_bytes: int) -> tuple[bytes, str]:
        """GET a binary resource (a message's image, file or voice note): (bytes, content type).

        The same token and deadline rules as `call`: one total deadline for the token, the request
        and the whole body; a token Feishu calls invalid is renewed once. Feishu answers a refusal
        as JSON with a non-zero code (FeishuRefused). More than `max_bytes` raises ResourceTooLarge
        as soon as the body (or its Content-Length) says so: the rest is never read.
        """
        try:
            async with asyncio.timeout(self.request_timeout) as deadline:
                for fresh_token in (False, True):
                    token = await self._tenant_token(what, deadline.when(), renew=fresh_token)
                    status, content_type, data = await self._fetch(what, path, token, max_bytes)
                    # A refusal is a JSON answer with a non-zero code; a JSON *file* is not one.
                    answer = _json_or_none(data) if content_type == "application/json" or status != 200 else None
                    code = answer.get("code") if answer is not None else None
                    if status == 200 and not (isinstance(code, int) and code != 0):
                        return data, content_type
                    if code in TOKEN_REJECTED and not fresh_token:
                        continue  # revoked or expired early: fetch a new one, once
                    if answer is None:
                        raise FeishuRefused(what, None, f"HTTP {status}, not a Feishu answer")
                    refusal = TokenRefused if code in TOKEN_REJECTED else FeishuRefused
                    detail = f"HTTP {status}, {_code_and_msg(answer)}"
                    raise refusal(what, code if isinstance(code, int) else None, detail)
        except TimeoutError:
            raise FeishuRefused(what, None, f"no answer from Feishu within {self.request_timeout:g}s") from None
        raise AssertionError("unreachable")

    async def _fetch(self, what: str, path: str, token: str, max_bytes: int) -> tuple[int, str, bytes]:
        """One GET (the caller holds the deadline): status, content type and at most `max_bytes`."""
        import aiohttp

        try:
            async with self._client().get(
                self.config.domain + path, headers={"Authorization": f"Bearer {token}"}, proxy=self._proxy
            ) as response:
                content_type = response.content_type
                too_large = ResourceTooLarge(what, None, f"larger than {max_bytes} bytes")
                if response.content_length is not None and response.content_length > max_bytes:
                    raise too_large
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > max_bytes:
                        raise too_large  # leaving the block drops the connection: no more is read
                    chunks.append(chunk)
                return response.status, content_type, b"".join(chunks)
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise FeishuRefused(what, None, f"{type(exc).__name__} talking to Feishu") from None

    async def bot_identity(self) -> BotIdentity:
        """GET /open-apis/bot/v3/info: the bot's open_id and app name (answered under "bot")."""
        answer = await self.call("bot info", "GET", BOT_INFO_PATH)
        bot = answer.get("bot")
        if not isinstance(bot, dict) or not isinstance(bot.get("open_id"), str) or not bot["open_id"]:
            raise FeishuRefused("bot info", None, "the answer has no bot.open_id")
        return BotIdentity(bot["open_id"], str(bot.get("app_name") or ""))

    async def _tenant_token(self, what: str, deadline: float | None, renew: bool = False) -> str:
        """The app's tenant access token, fetched once for every caller and renewed before it expires.

        After a refusal the whole app backs off (1 s, doubling to a minute): a call waits out the
        back-off when its deadline allows, else it is refused at once with the last reason, and
        calls that waited while a fetch was refused share that refusal. So a refused token costs
        Feishu's auth endpoint a handful of requests, however many replies are waiting.
        """
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        fetches_seen = self._token_fetches
        if renew:
            self._token = None  # Feishu called it invalid: no other call may use it meanwhile
        async with self._token_lock:  # one fetch for all the calls waiting on it
            loop = asyncio.get_running_loop()
            if self._token is not None and not renew and time.monotonic() < self._token[1]:
                return self._token[0]
            refusal = self._token_refusal
            if refusal is not None:
                wait = self._token_retry_at - time.monotonic()
                if self._token_fetches != fetches_seen or (
                    wait > 0 and deadline is not None and loop.time() + wait >= deadline
                ):
                    raise TokenRefused(what, refusal.code, refusal.detail)
                if wait > 0:
                    await asyncio.sleep(wait)  # the app-wide back-off, within this call's deadline
            return await self._fetch_token(what)

    async def _fetch_token(self, what: str) -> str:
        """Ask Feishu for a tenant token (the lock held); a refusal starts or lengthens the back-off."""
        self.token_requests += 1
        self._token_fetches += 1
        answer = await self._exchange(  # no answer at all raises as any call's would: no back-off
            what, "POST", TOKEN_PATH, {"app_id": self.config.app_id, "app_secret": self.config.app_secret}, None
        )
        token, code = answer.get("tenant_access_token"), answer.get("code")
        if code != 0 or not isinstance(token, str) or not token:
            refusal = TokenRefused(
                what, code if isinstance(code, int) else None, f"tenant token refused: {_code_and_msg(answer)}"
            )
            self._back_off(refusal)
            raise refusal
        self._token_refusal, self._token_backoff = None, TOKEN_BACKOFF_FIRST
        expire = answer.get("expire")
        lifetime = float(expire) if isinstance(expire, (int, float)) else 7200.0
        self._token = (token, time.monotonic() + max(60.0, lifetime - TOKEN_EARLY_REFRESH))
        return token

    def _back_off(self, refusal: TokenRefused) -> None:
        self._token_refusal = refusal
        self._token_retry_at = time.monotonic() + self._token_backoff
        self._token_backoff = min(TOKEN_BACKOFF_MAX, self._token_backoff * 2)

    async def _exchange(
        self, what: str, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> dict[str, Any]:
        """One HTTP exchange (the caller holds the deadline); Feishu's JSON answer whatever the status."""
        import aiohttp

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            if body is not None:
                # Serialised here, as parts.request_bytes measures it against Feishu's size limits.
                headers["Content-Type"] = "application/json; charset=utf-8"
            data = request_bytes(body) if body is not None else None
            async with self._client().request(
                method, self.config.domain + path, data=data, headers=headers, proxy=self._proxy
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
        import aiohttp

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


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _code_and_msg(answer: dict[str, Any]) -> str:
    return f"code {answer.get('code')}: {escape_untrusted(str(answer.get('msg')), limit=200)}"


def reply_uuid(message_id: str, part: int = 0) -> str:
    """A text reply's idempotency key: Feishu sends one reply per uuid within an hour.

    Part N of a long answer has its own, derived from the message id and N (part 0 keeps the key
    a one-part answer always had).
    """
    key = message_id if part == 0 else f"{message_id}#part{part}"
    return "gw-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def proxy_for(url: str) -> str | None:
    """The environment's proxy for `url` (HTTPS_PROXY/HTTP_PROXY, minus NO_PROXY), or None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
