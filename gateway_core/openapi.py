"""Feishu's HTTP OpenAPI through lark-oapi, each call off the loop and under a deadline.

The SDK's calls block (`requests`; even its async `a*` variants fetch the tenant token with a
blocking call), so each runs through `run_blocking` — the gateway passes its held executor's
`run`, tests `threads.in_own_thread` — with the SDK client's own timeout and an outer deadline a
little longer, so a stuck attempt is given up, never waited on. Also here: the bot's identity
(`/open-apis/bot/v3/info`), which the SDK has no typed request for.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .logs import adopt_sdk_logger, escape_untrusted

RunBlocking = Callable[..., Awaitable[Any]]


class OpenApiRefused(Exception):
    """Feishu answered with a non-zero code (`code`), or did not answer at all (`code` None)."""

    def __init__(self, what: str, code: int | None, detail: str):
        super().__init__(f"{what} failed: {f'code {code}: ' if code is not None else ''}{detail}")
        self.what, self.code = what, code


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is: its open_id tells its own @-mention from anyone else's."""

    open_id: str
    app_name: str


class OpenApi:
    """One lark-oapi client (built lazily: importing the SDK takes seconds) and a way to call it."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        domain: str,
        *,
        run_blocking: RunBlocking,
        request_timeout: float = 10.0,
        lark_client: Any = None,
    ):
        self._app_id, self._app_secret, self._domain = app_id, app_secret, domain
        self._run_blocking = run_blocking
        self.request_timeout = request_timeout
        self._client = lark_client
        self._guard = threading.Lock()

    def lark(self) -> Any:
        """The SDK client (blocking on first use: call it from a worker thread)."""
        with self._guard:
            if self._client is None:
                import lark_oapi as lark

                adopt_sdk_logger()
                self._client = (
                    lark.Client.builder()
                    .app_id(self._app_id)
                    .app_secret(self._app_secret)
                    .domain(self._domain)
                    .timeout(self.request_timeout)
                    .log_level(lark.LogLevel.WARNING)
                    .build()
                )
                adopt_sdk_logger()
            return self._client

    async def call(self, what: str, send: Callable[[Any], Any]) -> Any:
        """`send(client)` on a worker thread; the successful response, or OpenApiRefused.

        `send` builds its request there too: the SDK's first import takes seconds and must
        never run on the caller's loop.
        """

        def blocking() -> Any:
            return send(self.lark())

        deadline = self.request_timeout + 2
        try:
            response = await asyncio.wait_for(self._run_blocking(blocking), deadline)
        except asyncio.TimeoutError:
            raise OpenApiRefused(what, None, f"no answer within {deadline:g}s") from None
        except Exception as exc:  # requests errors, or a body the SDK could not parse
            raise OpenApiRefused(what, None, escape_untrusted(f"{type(exc).__name__}: {exc}", limit=200)) from None
        if not response.success():
            raise OpenApiRefused(what, response.code, escape_untrusted(str(response.msg), limit=200))
        return response

    async def bot_identity(self) -> BotIdentity:
        """GET /open-apis/bot/v3/info: the bot's open_id and app name (answered under "bot")."""

        def send(client: Any) -> Any:
            from lark_oapi import AccessTokenType, BaseRequest, HttpMethod

            return client.request(
                BaseRequest.builder()
                .http_method(HttpMethod.GET)
                .uri("/open-apis/bot/v3/info")
                .token_types({AccessTokenType.TENANT})
                .build()
            )

        response = await self.call("bot info", send)
        try:
            bot = json.loads(response.raw.content)["bot"]
            return BotIdentity(str(bot["open_id"]), str(bot.get("app_name") or ""))
        except (ValueError, KeyError, TypeError):
            raise OpenApiRefused("bot info", None, "the answer has no bot.open_id") from None
