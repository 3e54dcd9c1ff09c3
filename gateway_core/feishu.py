"""The Feishu side: the SDK's WebSocket long connection, owned and watched (replies: replies.py).

What lark-oapi 1.7.5's `ws.Client` does that shapes this class (read from its source):
- it runs on a *module-level* event loop captured at import, `start()` blocks forever and there is
  no `stop()`; so each connection runs in a thread of ours with a new loop assigned to that global,
  and is stopped by stopping that loop and disconnecting on it;
- its reconnect waits follow the server's ClientConfig (120 s by default); we cap them, and
  `restart()` tears down and reconnects at once;
- after giving up reconnecting, its receive task dies but `start()` keeps blocking with no
  connection — the "empty shell"; we observe connect/disconnect/frames through a subclass, so the
  state machine below always tells the truth, and a watchdog restarts a silent connection.
The SDK calls our event handler synchronously on its loop thread and acks when it returns: the
handler only converts the event and hands it to the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .config import FeishuConfig
from .executor import HeldExecutor
from .logs import adopt_sdk_logger, escape_untrusted

log = logging.getLogger("gatewatch.feishu")

STATES = ("idle", "connecting", "connected", "reconnecting", "stopped", "failed")
STOP_TIMEOUT = 5.0
MENTION = re.compile(r"@_user_\d+\s?")


@dataclass(frozen=True)
class InboundMessage:
    """One `im.message.receive_v1` event, reduced to what the gateway needs."""

    event_id: str
    message_id: str
    chat_id: str
    chat_type: str
    sender_id: str
    message_type: str
    text: str | None  # None for anything but a text message
    received_at: float


@dataclass(frozen=True)
class FeishuSnapshot:
    state: str
    since: float
    detail: str
    conn_id: str
    last_frame_at: float | None
    connects: int
    reconnects: int
    restarts: int
    last_error: str | None


class FeishuConnection:
    """One WebSocket long connection at a time, in its own thread, with an honest state."""

    def __init__(
        self,
        config: FeishuConfig,
        on_message: Callable[[InboundMessage], None],
        executor: HeldExecutor | None = None,
    ):
        self.config = config
        self._on_message = on_message
        self._executor = executor
        self._guard = threading.RLock()
        self._state, self._since, self._detail = "idle", time.time(), ""
        self._conn_id = ""
        self._last_frame_at: float | None = None
        self._connects = self._restarts = 0
        self._last_error: str | None = None
        self._retryable = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._stopping = False
        self._watchdog_backoff = 1.0
        self._next_auto_restart = 0.0

    # -- public operations (blocking: the gateway calls them on the held executor) -------------

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        with self._guard:
            if self._thread and self._thread.is_alive():
                return
            self._stopping = False
            self._set_state("connecting", "loading SDK")
            self._thread = threading.Thread(target=self._run, name="gw-feishu-ws", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close the connection cleanly and wait for its thread; the SDK will not reconnect."""
        with self._guard:
            thread, loop = self._thread, self._loop
            self._stopping = True
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # closed between the check and the call: already stopping
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the SDK thread did not stop within %.0fs (blocked in a request); abandoned", timeout)
        with self._guard:
            if self._state != "failed" or thread is None:
                self._set_state("stopped")

    def restart(self, cause: str) -> None:
        """Tear down and reconnect now, without waiting for the SDK's own reconnect schedule."""
        log.warning("restarting the Feishu connection: %s", cause)
        with self._guard:
            self._restarts += 1
        self.stop()
        self.start()

    def check_liveness(self) -> str | None:
        """Why the connection needs a restart now, or None. Called by the gateway's supervisor."""
        now = time.time()
        with self._guard:
            state, thread = self._state, self._thread
            if self._stopping:
                return None
            if state == "connected" and self._last_frame_at is not None:
                silent = now - self._last_frame_at
                if silent > self.config.liveness_timeout:
                    return f"no frame for {silent:.0f}s (liveness timeout {self.config.liveness_timeout:g}s)"
            if state in ("connecting", "connected", "reconnecting") and thread is not None and not thread.is_alive():
                return "the SDK thread ended unexpectedly"
            if state == "failed" and self._retryable and time.monotonic() >= self._next_auto_restart:
                # Bounded: each automatic retry of a given-up connection waits twice as long.
                self._next_auto_restart = time.monotonic() + self._watchdog_backoff
                self._watchdog_backoff = min(60.0, self._watchdog_backoff * 2)
                return f"retrying after: {self._last_error}"
        return None

    def snapshot(self) -> FeishuSnapshot:
        with self._guard:
            return FeishuSnapshot(
                state=self._state,
                since=self._since,
                detail=self._detail,
                conn_id=self._conn_id,
                last_frame_at=self._last_frame_at,
                connects=self._connects,
                reconnects=max(0, self._connects - 1),
                restarts=self._restarts,
                last_error=self._last_error,
            )

    @property
    def state(self) -> str:
        return self._state

    def failed_for_good(self) -> bool:
        """True when the connection failed in a way only a person can fix (credentials refused)."""
        with self._guard:
            return self._state == "failed" and not self._retryable

    # -- the connection thread ----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        client = None
        try:
            ws_client_module = _import_ws_sdk()
            # The SDK schedules everything on this module global: point it at our loop.
            ws_client_module.loop = loop
            if self._executor is not None:
                self._executor.install_on(loop)
            client = _observed_client_class(ws_client_module)(
                owner=self,
                max_interval=self.config.max_reconnect_interval,
                app_id=self.config.app_id,
                app_secret=self.config.app_secret,
                event_handler=self._build_dispatcher(),
                domain=self.config.domain,
            )
            with self._guard:
                self._loop, self._client = loop, client
                if self._stopping:
                    return
            self._set_state("connecting", "discovering endpoint")
            client.start()
        except RuntimeError as exc:
            if not self._stopping:  # loop.stop() from stop() surfaces here as RuntimeError
                self._fail(f"SDK loop ended: {exc}", retryable=True)
        except Exception as exc:
            if _is_client_exception(exc):
                self._fail(_sdk_error_text(exc), retryable=False)
            else:
                self._fail(f"{type(exc).__name__}: {_sdk_error_text(exc)}", retryable=True)
        finally:
            self._close_loop(loop, client)

    def _close_loop(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        """Cancel what the SDK left running and close the socket cleanly (close code 1000)."""
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            if client is not None:
                loop.run_until_complete(asyncio.wait_for(client._disconnect(), STOP_TIMEOUT))
        except Exception as exc:  # teardown must not raise out of the thread
            log.debug("SDK teardown: %s", exc)
        finally:
            if self._executor is not None:
                self._executor.forget(loop)
            loop.close()
            with self._guard:
                if self._loop is loop:
                    self._loop, self._client = None, None

    def _build_dispatcher(self) -> Any:
        import lark_oapi as lark

        return (
            lark.EventDispatcherHandler.builder("", "")
            .register_p2_im_message_receive_v1(self._on_sdk_event)
            .build()
        )

    def _on_sdk_event(self, data: Any) -> None:
        """SDK handler, on the SDK's loop thread: convert, hand over, return (the SDK then acks).

        If the hand-over raises, the SDK acks with code 500 and Feishu redelivers the event.
        """
        self._on_message(inbound_from_event(data))

    # -- callbacks from the observed SDK client (SDK thread) -----------------------------------

    def _on_connected(self, conn_id: str) -> None:
        with self._guard:
            self._connects += 1
            self._conn_id = conn_id
            self._last_frame_at = time.time()
            self._retryable = False
            self._watchdog_backoff = 1.0
            self._set_state("connected")
        log.info("Feishu connected (conn_id %s)", conn_id)

    def _on_disconnected(self) -> None:
        if self._stopping:
            return
        self._set_state("reconnecting", "connection lost")
        log.warning("Feishu connection lost; reconnecting")

    def _on_frame(self) -> None:
        self._last_frame_at = time.time()

    def _on_reconnecting(self) -> None:
        if not self._stopping:
            self._set_state("reconnecting", "SDK reconnecting")

    def _on_gave_up(self, exc: BaseException) -> None:
        if self._stopping:
            return
        if _is_client_exception(exc):
            self._fail(_sdk_error_text(exc), retryable=False)
        else:
            self._fail(f"SDK gave up reconnecting: {_sdk_error_text(exc)}", retryable=True)

    # -- state ----------------------------------------------------------------------------------

    def _fail(self, reason: str, retryable: bool) -> None:
        reason = escape_untrusted(reason, limit=200)
        with self._guard:
            self._last_error = reason
            self._retryable = retryable
            self._set_state("failed", reason)
        log.error("Feishu connection failed: %s%s", reason, "" if retryable else " (not retried: fix and restart)")

    def _set_state(self, state: str, detail: str = "") -> None:
        with self._guard:
            if state != self._state:
                self._since = time.time()
            self._state, self._detail = state, detail
            if state != "connected":
                self._conn_id = ""


class ReplyFailed(Exception):
    """Feishu did not accept a reply."""


def reply_uuid(message_id: str) -> str:
    return "gw-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def inbound_from_event(data: Any) -> InboundMessage:
    """Turn the SDK's P2ImMessageReceiveV1 into our plain record; text is left untrusted."""
    header, event = data.header, data.event
    message, sender = event.message, event.sender
    text = None
    if message.message_type == "text":
        try:
            text = json.loads(message.content or "{}").get("text", "")
        except (ValueError, AttributeError):
            text = ""
        text = MENTION.sub("", text or "").strip()
    sender_id = ""
    if sender is not None and sender.sender_id is not None:
        sender_id = sender.sender_id.open_id or sender.sender_id.user_id or ""
    return InboundMessage(
        event_id=(header.event_id if header else "") or "",
        message_id=message.message_id or "",
        chat_id=message.chat_id or "",
        chat_type=message.chat_type or "",
        sender_id=sender_id,
        message_type=message.message_type or "",
        text=text,
        received_at=time.time(),
    )


def _import_ws_sdk() -> Any:
    """Import the SDK (slow: ~2 s) on the connection thread, never on the gateway's loop."""
    import lark_oapi.ws.client as ws_client_module

    adopt_sdk_logger()
    return ws_client_module


def _is_client_exception(exc: BaseException) -> bool:
    from lark_oapi.ws.exception import ClientException

    return isinstance(exc, ClientException)


def _sdk_error_text(exc: BaseException) -> str:
    return escape_untrusted(str(getattr(exc, "msg", None) or exc) or type(exc).__name__, limit=200)


_OBSERVED: dict[int, type] = {}


def _observed_client_class(ws_client_module: Any) -> type:
    """A subclass of the SDK's ws.Client that reports its life to a FeishuConnection.

    Built after the lazy import so this module stays importable without paying for the SDK.
    """
    key = id(ws_client_module)
    if key in _OBSERVED:
        return _OBSERVED[key]

    class ObservedClient(ws_client_module.Client):  # type: ignore[misc, name-defined]
        def __init__(self, owner: FeishuConnection, max_interval: float, **kwargs: Any):
            super().__init__(**kwargs)
            self._owner, self._max_interval = owner, max_interval
            self._cap_waits()

        def _configure(self, conf: Any) -> None:
            super()._configure(conf)
            self._cap_waits()

        def _cap_waits(self) -> None:
            # Feishu's defaults (30 s jitter, 120 s between attempts) suit a fleet; one operator's
            # gateway should be back within seconds.
            for name in ("_reconnect_interval", "_reconnect_nonce"):
                value = getattr(self, name, None)
                if isinstance(value, (int, float)):
                    setattr(self, name, min(value, self._max_interval))

        async def _connect(self) -> None:
            await super()._connect()
            if self._conn is not None:
                self._owner._on_connected(self._conn_id)

        async def _disconnect(self) -> None:
            was_connected = self._conn is not None
            await super()._disconnect()
            if was_connected:
                self._owner._on_disconnected()

        async def _handle_message(self, msg: bytes) -> None:
            self._owner._on_frame()
            await super()._handle_message(msg)

        async def _reconnect(self) -> None:
            self._owner._on_reconnecting()
            try:
                await super()._reconnect()
            except Exception as exc:
                # The SDK would let this kill its receive task silently while start() blocks on.
                self._owner._on_gave_up(exc)

    _OBSERVED[key] = ObservedClient
    return ObservedClient
