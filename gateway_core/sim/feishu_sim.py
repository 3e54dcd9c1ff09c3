"""A local Feishu/Lark open platform that speaks the wire protocol of lark-oapi 1.7.5.

Why: the gateway's hardest behaviour (surviving drops, refusals, redeliveries and fatal auth
errors without becoming an "empty shell") cannot be tested against the real service, and mocks
would only test our assumptions. This simulator serves, on one aiohttp server on 127.0.0.1:

* ``POST /callback/ws/endpoint`` - long-connection endpoint discovery (the SDK calls it before
  every connect and reconnect);
* ``GET /ws/v2`` - the WebSocket carrying protobuf ``pbbp2.Frame`` messages (events out, acks and
  pings in, pongs out);
* ``POST /open-apis/auth/v3/tenant_access_token/internal`` - tenant tokens;
* ``POST /open-apis/im/v1/messages/{id}/reply`` and ``POST /open-apis/im/v1/messages`` - sends,
  with Feishu's ``uuid`` idempotency and its rate limits: at most 5 sends in any second to one
  chat (user or group) and 50 per app, or HTTP 400 with code 230020 (nothing is sent).
* CardKit streaming cards and ``GET /open-apis/bot/v3/info`` - see `cardkit_sim`;
* message resources (images, files, voice notes) and reactions - see `media_sim`.

Event text is untrusted input: it is only ever JSON-encoded, recorded and compared, never
evaluated. Secrets (app secret, tokens) are never logged. All controls are thread-safe; see
`ThreadSafeState`. Protocol reference: the SDK itself, `lark_oapi/ws/client.py` and
`lark_oapi/ws/pb/pbbp2_pb2.py` in the lark-oapi version pyproject.toml pins.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
import uuid as uuid_lib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .._lark_compat import frame_class
from .background import ThreadSafeState, call_on_loop, serve_on_loopback
from .cardkit_sim import CardKitSimulation
from .media_sim import MediaSimulation
from .platform import (
    INVALID_TOKEN,
    TENANT_KEY,
    InjectedEvent,
    SentMessage,
    SlidingWindow,
    event_id,
    json_object,
    message_id,
)

log = logging.getLogger(__name__)

METHOD_CONTROL, METHOD_DATA = 0, 1
FATAL_AUTH = {"code": 10003, "msg": "invalid app_id or app_secret", "data": None}
BUSY = {"code": 1, "msg": "system busy"}
IDEMPOTENCY_WINDOW = 3600.0  # seconds during which a repeated uuid sends nothing new
RATE_WINDOW = 1.0  # Feishu's send limits count requests in any one second
RATE_LIMITED = {"code": 230020, "msg": "request trigger frequency limit"}
# Feishu: a text or post message's request body may be at most 150 KB ("Send message" limits).
TEXT_BODY_LIMIT = 150 * 1024
TOO_LONG = {"code": 230025, "msg": "The message content is too long"}


@dataclass(eq=False)
class _Connection:
    """One accepted WebSocket; frames go out through `outbox` in order via one writer task."""

    device_id: str
    service_id: int
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    connected_at: float
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    closed: bool = False  # no longer live (dropped, or the peer went away)
    deaf: bool = False  # a half-open link: reads nothing, answers nothing, sends nothing, stays open
    finished: bool = False  # the handler has exited: the socket is gone


class FeishuSimulator(CardKitSimulation, MediaSimulation, ThreadSafeState):
    """Feishu open platform on 127.0.0.1: long connection, tokens and message sends."""

    def __init__(
        self,
        app_id: str = "cli_sim",
        app_secret: str = "sim-secret",
        reconnect_interval: int = 1,
        reconnect_nonce: int = 0,
        ping_interval: int = 120,
        redeliver_after: float | None = None,
        chat_rate_limit: int | None = 5,
        app_rate_limit: int | None = 50,
    ) -> None:
        """`chat_rate_limit` / `app_rate_limit`: sends allowed in any second to one chat / for the
        app, like Feishu (None: unlimited, for benchmarks that measure overhead, not Feishu)."""
        super().__init__()
        self.app_id = app_id
        self._app_secret = app_secret
        self.reconnect_interval = reconnect_interval
        self.reconnect_nonce = reconnect_nonce
        self.ping_interval = ping_interval
        self.redeliver_after = redeliver_after
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        # ids carry a per-instance tag so a restarted simulator never reuses one (persistent dedup)
        self._tag = secrets.token_hex(3)
        self._ids = itertools.count(1)
        self._frame_ids = itertools.count(1)
        # WebSocket side
        self._issued: dict[str, int] = {}  # device_id -> service_id, single use
        self._live: list[_Connection] = []
        self._current: _Connection | None = None
        self._conn_ids: list[str] = []
        self._connections_total = 0
        self._last_connect_at: float | None = None
        self._endpoint_requests = 0
        self._pings = 0
        self._refuse_until = 0.0
        self._reject_auth = False
        self._refuse_tokens = False
        self._silent = False
        self._hang_endpoint = 0  # endpoint POSTs still to hold (-1: every one, until released)
        self._endpoint_release: asyncio.Event | None = None
        self._endpoints_hanging = 0
        # events
        self._events: dict[str, InjectedEvent] = {}
        self._chat_of: dict[str, str] = {}  # message_id -> chat_id
        self._deliveries: Counter[str] = Counter()
        self._send_serial: dict[str, int] = {}  # event_id -> serial of its latest send
        self._ack_codes: dict[str, list[int | None]] = {}
        self._forced: list[InjectedEvent] = []  # redeliver() calls waiting for a connection
        # HTTP API side
        self._token_requests = 0
        self._tokens: set[str] = set()
        self._sent: list[SentMessage] = []
        self._uuids: dict[str, tuple[str, float]] = {}  # uuid -> (message_id, first send time)
        self._fail_sends = 0
        self._fail_after_send = False
        self._failed_posts = 0
        self._hold_responses = False  # sends are recorded, their HTTP responses withheld
        self._held_responses = 0
        self._responses_released = asyncio.Event()  # made anew on each start (its loop's)
        self.chat_rate_limit, self.app_rate_limit = chat_rate_limit, app_rate_limit
        self._chat_sends: dict[str, SlidingWindow] = {}  # chat -> its recent sends
        self._app_sends = SlidingWindow()
        self._rate_limited: list[tuple[str, str, float]] = []  # (kind, target, at) refused as too fast
        self.text_body_limit = TEXT_BODY_LIMIT  # bytes of a text/post send's request body
        self._too_long = 0  # sends refused with 230025
        self._init_cardkit()
        self._init_media()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind one HTTP+WebSocket server on a free 127.0.0.1 port."""
        self._loop = asyncio.get_running_loop()
        self._responses_released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/callback/ws/endpoint", self._handle_endpoint)
        app.router.add_get("/ws/v2", self._handle_websocket)
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._handle_token)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._handle_reply)
        app.router.add_post("/open-apis/im/v1/messages", self._handle_create)
        self._add_cardkit_routes(app)
        self._add_media_routes(app)
        self._runner, self._port = await serve_on_loopback(app)
        log.info("feishu simulator listening on %s", self.domain)

    async def stop(self) -> None:
        """Close every WebSocket (going away) and the server."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        self._release_held_responses()
        self._wake_downloads()
        with self._cond:
            conns = list(self._live)
            for conn in conns:
                self._forget(conn)
            self._hang_endpoint = 0
        if self._endpoint_release is not None:
            self._endpoint_release.set()  # held POSTs end, or cleanup would wait for them
        for conn in conns:
            if conn.deaf and conn.transport is not None:
                conn.transport.abort()  # it would not answer our close either
            else:
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator stopping")
        await runner.cleanup()
        log.info("feishu simulator stopped")

    @property
    def domain(self) -> str:
        """The base URL to give lark-oapi as ``domain`` ("http://127.0.0.1:PORT")."""
        if self._port is None:
            raise RuntimeError("FeishuSimulator is not started")
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------------ endpoint discovery

    async def _handle_endpoint(self, request: web.Request) -> web.Response:
        body = json_object(await request.read())
        with self._cond:
            self._endpoint_requests += 1
            self._notify()
            hold = self._hang_endpoint != 0
            if hold:
                self._hang_endpoint -= self._hang_endpoint > 0
                self._endpoints_hanging += 1
                if self._endpoint_release is None or self._endpoint_release.is_set():
                    self._endpoint_release = asyncio.Event()
                release = self._endpoint_release
        if hold:
            # Accepted and never answered until released: what a stuck load balancer does.
            try:
                await release.wait()
            finally:
                with self._cond:
                    self._endpoints_hanging -= 1
                    self._notify()
        with self._cond:
            good = body.get("AppID") == self.app_id and body.get("AppSecret") == self._app_secret
            if self._reject_auth or not good:
                log.info("endpoint: credentials rejected")
                return web.json_response(FATAL_AUTH)
            if time.monotonic() < self._refuse_until:
                return web.json_response(BUSY, status=503)
            n = next(self._ids)
            device_id = f"sim_dev_{self._tag}_{n}"
            service_id = 1000 + n
            self._issued[device_id] = service_id
        url = f"ws://127.0.0.1:{self._port}/ws/v2?device_id={device_id}&service_id={service_id}"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self._client_config()}})

    def _client_config(self) -> dict[str, int]:
        """Feishu's ClientConfig, sent on discovery and in every pong: all four fields, always."""
        return {
            "ReconnectCount": -1,
            "ReconnectInterval": self.reconnect_interval,
            "ReconnectNonce": self.reconnect_nonce,
            "PingInterval": self.ping_interval,
        }

    # ------------------------------------------------------------------ WebSocket

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id", "")
        with self._cond:
            service_id = self._issued.pop(device_id, None)
        if service_id is None or request.query.get("service_id") != str(service_id):
            # a URL not just handed out by the endpoint: refuse the way Feishu does (fatal 403)
            headers = {"handshake-status": "403", "handshake-msg": "unknown or reused device_id"}
            return web.Response(status=403, headers=headers)
        ws = web.WebSocketResponse(timeout=2)
        await ws.prepare(request)
        conn = _Connection(device_id, service_id, ws, request.transport, time.time())
        with self._cond:
            self._live.append(conn)
            self._current = conn
            self._connections_total += 1
            self._conn_ids.append(device_id)
            self._last_connect_at = conn.connected_at
            # Feishu redelivers every un-acked event on a new connection (and delivers the queue)
            backlog = {e.event_id: e for e in self._events.values() if not self.is_acked(e.event_id)}
            backlog.update((e.event_id, e) for e in self._forced)
            self._forced.clear()
            self._notify()
        log.info("ws connected: %s", device_id)
        writer = asyncio.create_task(self._write_loop(conn))
        for event in backlog.values():
            self._send_event(conn, event)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    self._on_client_frame(conn, msg.data)
        finally:
            writer.cancel()
            with self._cond:
                self._forget(conn)
                conn.finished = True
                self._notify()
            log.info("ws closed: %s", device_id)
        return ws

    def _forget(self, conn: _Connection) -> None:
        """Mark `conn` not live (lock held); the newest remaining live one becomes current."""
        conn.closed = True
        if conn in self._live:
            self._live.remove(conn)
        if self._current is conn:
            self._current = self._live[-1] if self._live else None
        self._notify()

    async def _write_loop(self, conn: _Connection) -> None:
        """Single writer per connection, so frames leave in the order they were queued."""
        while True:
            data = await conn.outbox.get()
            if conn.deaf:
                continue  # swallowed: nothing leaves a half-open link
            try:
                await conn.ws.send_bytes(data)
            except Exception as exc:  # the peer is gone; the reader side cleans up
                log.debug("ws write failed on %s: %s", conn.device_id, exc)
                return

    def _frame(self, conn: _Connection, method: int, headers: dict[str, str], payload: bytes = b"") -> bytes:
        """Encode a frame; SeqID/LogID/service/method are always set, or the SDK cannot ack."""
        frame = frame_class()()
        n = next(self._frame_ids)
        frame.SeqID, frame.LogID, frame.service, frame.method = n, n, conn.service_id, method
        for key, value in headers.items():
            header = frame.headers.add()
            header.key, header.value = key, value
        frame.payload = payload
        return bytes(frame.SerializeToString())

    def _send_event(self, conn: _Connection, event: InjectedEvent) -> None:
        """Queue one delivery of `event` on `conn` (loop thread only)."""
        if conn.closed:
            return
        headers = {
            "type": "event",
            "message_id": event.event_id,
            "trace_id": uuid_lib.uuid4().hex,
            "sum": "1",
            "seq": "0",
        }
        conn.outbox.put_nowait(self._frame(conn, METHOD_DATA, headers, event.payload))
        with self._cond:
            self._deliveries[event.event_id] += 1
            serial = self._send_serial[event.event_id] = self._send_serial.get(event.event_id, 0) + 1
            self._notify()
        log.debug("event %s sent on %s", event.event_id, conn.device_id)
        if self.redeliver_after is not None:
            self.loop.call_later(self.redeliver_after, self._redeliver_if_unacked, conn, event, serial)

    def _redeliver_if_unacked(self, conn: _Connection, event: InjectedEvent, serial: int) -> None:
        """Timer for `redeliver_after`: resend on the same current connection if still un-acked."""
        with self._cond:
            due = (
                self._runner is not None
                and self._current is conn
                and self._send_serial.get(event.event_id) == serial
                and not self.is_acked(event.event_id)
            )
        if due:
            self._send_event(conn, event)

    def _on_client_frame(self, conn: _Connection, data: bytes) -> None:
        """Handle a client frame: pings get a pong; data frames are acks of our events."""
        frame = frame_class()()
        try:
            frame.ParseFromString(data)
        except Exception:
            log.warning("undecodable frame from %s ignored", conn.device_id)
            return
        headers = {h.key: h.value for h in frame.headers}
        if frame.method == METHOD_CONTROL:
            if headers.get("type") == "ping":
                with self._cond:
                    self._pings += 1
                    self._notify()
                    silent = self._silent
                if not silent:
                    config = json.dumps(self._client_config()).encode()
                    conn.outbox.put_nowait(self._frame(conn, METHOD_CONTROL, {"type": "pong"}, config))
            return
        event_id = headers.get("message_id", "")
        try:
            code = int(json.loads(frame.payload)["code"])
        except Exception:
            code = None
        with self._cond:
            self._ack_codes.setdefault(event_id, []).append(code)
            self._notify()
        log.debug("ack %s for %s", code, event_id)

    # ------------------------------------------------------------------ HTTP API

    async def _handle_token(self, request: web.Request) -> web.Response:
        body = json_object(await request.read())  # the SDK sends no Content-Type
        with self._cond:
            self._token_requests += 1
            self._notify()
            if self._refuse_tokens or body.get("app_id") != self.app_id or body.get("app_secret") != self._app_secret:
                return web.json_response({"code": 10014, "msg": "app secret invalid"})
            token = f"t-{secrets.token_hex(16)}"
            self._tokens.add(token)
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200})

    async def _handle_reply(self, request: web.Request) -> web.Response:
        return await self._handle_send(request, "reply", request.match_info["message_id"])

    async def _handle_create(self, request: web.Request) -> web.Response:
        return await self._handle_send(request, "create", None)

    async def _handle_send(self, request: web.Request, kind: str, target: str | None) -> web.Response:
        """Shared reply/create logic: auth, validation, injected failures, uuid idempotency."""
        auth = request.headers.get("Authorization", "")
        raw = await request.read()
        body = json_object(raw)
        content, msg_type, send_uuid = body.get("content"), body.get("msg_type"), body.get("uuid") or None
        if kind == "create":
            target = body.get("receive_id")
            if request.query.get("receive_id_type") is None:
                target = None
        with self._cond:
            if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self._tokens:
                self._failed_posts += 1
                return web.json_response(INVALID_TOKEN, status=400)
            try:
                if not (isinstance(content, str) and isinstance(msg_type, str) and isinstance(target, str)):
                    raise ValueError
                parsed = json.loads(content)
                text = parsed.get("text") if msg_type == "text" else None
            except (ValueError, AttributeError):
                self._failed_posts += 1
                return web.json_response({"code": 230001, "msg": "invalid request body"}, status=400)
            if msg_type in ("text", "post") and len(raw) > self.text_body_limit:
                self._failed_posts += 1
                self._too_long += 1
                self._notify()
                return web.json_response(TOO_LONG, status=400)
            chat = self._chat_of.get(target, target) if kind == "reply" else target
            if self._over_rate_limit(chat):
                self._rate_limited.append((kind, target, time.time()))
                self._failed_posts += 1
                self._notify()
                return web.json_response(RATE_LIMITED, status=400)
            if self._fail_sends and not self._fail_after_send:
                self._fail_sends -= 1
                self._failed_posts += 1
                return web.json_response({"code": 1, "msg": "internal error (simulated)"}, status=500)
            now = time.time()
            first = self._uuids.get(send_uuid) if send_uuid else None
            # a repeat of a send within the window: the first send's message, not a new one
            duplicate_of = first[0] if first is not None and now - first[1] < IDEMPOTENCY_WINDOW else None
            duplicate = duplicate_of is not None
            card_refusal = None if duplicate else self._card_send_error(msg_type, parsed)
            if card_refusal is not None:
                self._failed_posts += 1
                return web.json_response(card_refusal, status=400)
            message_id = duplicate_of or f"om_r{self._tag}_{next(self._ids)}"
            self._card_sent(msg_type, parsed, message_id)
            if send_uuid and not duplicate:
                self._uuids[send_uuid] = (message_id, now)
            self._sent.append(SentMessage(kind, target, msg_type, text, content, send_uuid, message_id, duplicate, now))
            self._notify()
            if self._fail_sends:  # after_send: the message went out but the answer is lost
                self._fail_sends -= 1
                self._failed_posts += 1
                return web.json_response({"code": 1, "msg": "internal error (simulated)"}, status=500)
            chat_id = self._chat_of.get(target, "") if kind == "reply" else target
            hold = self._hold_responses
        if hold:
            await self._withhold_response()
        millis = str(int(now * 1000))
        data = {
            "message_id": message_id,
            "root_id": target if kind == "reply" else "",
            "parent_id": target if kind == "reply" else "",
            "msg_type": msg_type,
            "create_time": millis,
            "update_time": millis,
            "deleted": False,
            "updated": False,
            "chat_id": chat_id,
            "sender": {
                "id": self.app_id,
                "id_type": "app_id",
                "sender_type": "app",
                "tenant_key": TENANT_KEY,
            },
            "body": {"content": content},
        }
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _withhold_response(self) -> None:
        """Park a send that Feishu already accepted until `hold_send_responses(False)` (or stop)."""
        with self._cond:
            self._held_responses += 1
            self._notify()
        try:
            while True:
                released = self._responses_released
                with self._cond:
                    if not self._hold_responses or self._runner is None:
                        return
                await released.wait()
        finally:
            with self._cond:
                self._held_responses -= 1
                self._notify()

    def _release_held_responses(self) -> None:
        """Loop thread: wake parked sends so they re-read the hold flag."""
        self._responses_released.set()
        self._responses_released = asyncio.Event()

    def _over_rate_limit(self, chat: str) -> bool:
        """Lock held: True if one more send now would exceed a limit; else count it as sent."""
        now = time.monotonic()
        chat_sends = self._chat_sends.setdefault(chat, SlidingWindow())
        if chat_sends.full([(self.chat_rate_limit, RATE_WINDOW)], now) or self._app_sends.full(
            [(self.app_rate_limit, RATE_WINDOW)], now
        ):
            return True
        chat_sends.record(now)
        self._app_sends.record(now)
        return False

    # ------------------------------------------------------------------ controls

    def inject_text(
        self,
        text: str,
        chat_id: str = "oc_chat1",
        sender_open_id: str = "ou_user1",
        chat_type: str = "p2p",
        message_type: str = "text",
        content: str | None = None,
        mentions: list[dict[str, Any]] | None = None,
        message_id: str | None = None,
    ) -> InjectedEvent:
        """Queue a user message event: sent now on the current connection, else on the next one.

        `message_id=""` sends an event without one, as Feishu sometimes does (never to be answered).
        """
        if content is None:
            if message_type != "text":
                raise ValueError("pass content= (a JSON string) for non-text messages")
            content = json.dumps({"text": text}, ensure_ascii=False)
        n = next(self._ids)
        event_id = f"ev_{self._tag}_{n}"
        message_id = f"om_{self._tag}_{n}" if message_id is None else message_id
        millis = str(int(time.time() * 1000))
        message: dict[str, Any] = {
            "message_id": message_id,
            "root_id": "",
            "parent_id": "",
            "create_time": millis,
            "update_time": millis,
            "chat_id": chat_id,
            "chat_type": chat_type,
            "message_type": message_type,
            "content": content,
        }
        if mentions:
            message["mentions"] = mentions
        payload = {
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": "im.message.receive_v1",
                "create_time": millis,
                "token": "",
                "app_id": self.app_id,
                "tenant_key": TENANT_KEY,
            },
            "event": {
                "sender": {
                    "sender_id": {
                        "open_id": sender_open_id,
                        "union_id": f"on_{sender_open_id}",
                        "user_id": None,
                    },
                    "sender_type": "user",
                    "tenant_key": TENANT_KEY,
                },
                "message": message,
            },
        }
        event = InjectedEvent(
            event_id=event_id,
            message_id=message_id,
            chat_id=chat_id,
            chat_type=chat_type,
            sender_open_id=sender_open_id,
            message_type=message_type,
            text=text if message_type == "text" else None,
            content=content,
            payload=json.dumps(payload, ensure_ascii=False).encode(),
        )
        with self._cond:
            self._events[event_id] = event
            self._chat_of[message_id] = chat_id
            conn = self._current
            self._notify()
        if conn is not None:
            self.loop.call_soon_threadsafe(self._send_event, conn, event)
        return event

    def redeliver(self, event: InjectedEvent | str) -> None:
        """Send the same event (same ids) again now, acked or not; on the next connection if none."""
        with self._cond:
            event = self._events[event_id(event)]
            conn = self._current
            if conn is None:
                self._forced.append(event)
        if conn is not None:
            self.loop.call_soon_threadsafe(self._send_event, conn, event)

    def drop_connection(self, timeout: float = 5) -> bool:
        """Abort the current WebSocket (TCP reset, no close frame); False if none was live."""
        with self._cond:
            conn = self._current
            if conn is None:
                return False
            self._forget(conn)

        def abort() -> None:
            if conn.transport is not None:
                conn.transport.abort()

        call_on_loop(self.loop, abort, timeout)
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if not on_loop:  # wait until the handler saw the socket go
            self.wait_for(lambda: conn.finished, timeout, lambda: f"{conn.device_id} still open")
        log.info("dropped connection %s", conn.device_id)
        return True

    def deafen_connection(self, timeout: float = 5) -> str:
        """Turn the current WebSocket into a half-open link; return its device id.

        TCP stays open, but the server reads nothing more from it (so no protocol pong, no
        WebSocket pong, no answer to a close frame) and sends nothing (events queued for it are
        lost, as on a dead route). It stays the connection events go to until a new one arrives.
        """
        with self._cond:
            conn = self._current
            if conn is None:
                raise RuntimeError("no live connection to deafen")

        def deafen() -> None:
            conn.deaf = True
            if conn.transport is not None:
                conn.transport.pause_reading()

        call_on_loop(self.loop, deafen, timeout)
        log.info("deafened connection %s", conn.device_id)
        return conn.device_id

    def hang_endpoint(self, on: bool = True, count: int | None = None) -> None:
        """Hold endpoint discovery POSTs unanswered: every one while on, or only the next `count`.

        `hang_endpoint(False)` releases the held ones (they are then answered as usual) and
        answers new ones at once.
        """
        with self._cond:
            self._hang_endpoint = (-1 if count is None else count) if on else 0
            release = None if on else self._endpoint_release
        if release is not None:
            self.loop.call_soon_threadsafe(release.set)

    def refuse_reconnects(self, seconds: float) -> None:
        """Answer endpoint discovery with 503 "system busy" for `seconds` (0 stops refusing)."""
        with self._cond:
            self._refuse_until = time.monotonic() + seconds if seconds > 0 else 0.0

    def go_silent(self, on: bool = True) -> None:
        """Keep connections open but stop answering pings: a half-dead link, as seen from the client."""
        with self._cond:
            self._silent = on

    def reject_auth(self, on: bool = True) -> None:
        """While on, endpoint discovery answers the fatal invalid-credentials code."""
        with self._cond:
            self._reject_auth = on

    def refuse_tokens(self, on: bool = True) -> None:
        """While on, the app secret is refused when a tenant token is asked for (10014, as after the
        secret was reset in the developer console) and every token issued so far is invalid
        (sends answer 99991663). The long connection is not touched: it stays up, replies fail."""
        with self._cond:
            self._refuse_tokens = on
            if on:
                self._tokens.clear()

    def fail_replies(self, n: int, after_send: bool = False) -> None:
        """Answer the next `n` sends (reply or create) with HTTP 500; `after_send` records them first."""
        with self._cond:
            self._fail_sends, self._fail_after_send = n, after_send

    def hold_send_responses(self, on: bool = True) -> None:
        """While on, sends are accepted and recorded (the reply exists) but the HTTP response is
        withheld: the client cannot learn it succeeded. Tests kill a gateway in exactly this gap."""
        with self._cond:
            self._hold_responses = on
            self._notify()
        if not on and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._release_held_responses)

    def wait_held_responses(self, count: int = 1, timeout: float = 10) -> None:
        """Wait until at least `count` send responses are being withheld."""
        self.wait_for(
            lambda: self.held_responses >= count or None,
            timeout,
            lambda: f"wanted {count} withheld send responses, have {self.held_responses}",
        )

    @property
    def held_responses(self) -> int:
        with self._cond:
            return self._held_responses

    @property
    def shown(self) -> list[SentMessage]:
        """The sends a user actually sees: every accepted send except uuid repeats."""
        with self._cond:
            return [m for m in self._sent if not m.duplicate]

    # ------------------------------------------------------------------ observations

    @property
    def sent(self) -> list[SentMessage]:
        """Every accepted send POST, in order, duplicates included."""
        with self._cond:
            return list(self._sent)

    def replies_to(self, message: InjectedEvent | str) -> list[SentMessage]:
        """All reply POSTs to one message id, duplicates included."""
        mid = message_id(message)
        with self._cond:
            return [m for m in self._sent if m.kind == "reply" and m.in_reply_to == mid]

    def wait_for_replies(self, message: InjectedEvent | str, count: int = 1, timeout: float = 10) -> list[SentMessage]:
        """Wait until `count` replies to the message were recorded and return them all."""
        mid = message_id(message)

        def seen() -> str:
            texts = [m.text for m in self.replies_to(mid)]
            others = [(m.kind, m.in_reply_to, m.text) for m in self.sent if m.in_reply_to != mid]
            return f"wanted {count} replies to {mid}, saw {texts!r}; other sends: {others!r}"

        def enough() -> list[SentMessage] | None:
            replies = self.replies_to(mid)
            return replies if len(replies) >= count else None

        return self.wait_for(enough, timeout, seen)

    @property
    def events(self) -> list[InjectedEvent]:
        """Every injected event, in order."""
        with self._cond:
            return list(self._events.values())

    def deliveries(self, event: InjectedEvent | str) -> int:
        """How many times the event was sent on a connection (first delivery and redeliveries)."""
        with self._cond:
            return self._deliveries[event_id(event)]

    def ack_codes(self, event: InjectedEvent | str) -> list[int | None]:
        """The payload codes of every ack received for the event (200 ok, 500 handler failed)."""
        with self._cond:
            return list(self._ack_codes.get(event_id(event), []))

    def is_acked(self, event: InjectedEvent | str) -> bool:
        """True once a {"code": 200} ack arrived for the event."""
        with self._cond:
            return 200 in self._ack_codes.get(event_id(event), [])

    def wait_acked(self, event: InjectedEvent | str, timeout: float = 10) -> None:
        """Wait for a 200 ack of the event."""
        eid = event_id(event)
        self.wait_for(
            lambda: self.is_acked(eid),
            timeout,
            lambda: f"{eid} not acked; acks {self.ack_codes(eid)}, deliveries {self.deliveries(eid)}",
        )

    def wait_for_connection(self, count: int = 1, timeout: float = 10) -> str:
        """Wait until `count` connections were accepted in total and one is live; return its device id."""

        def ready() -> str | None:
            with self._cond:
                if self._connections_total >= count and self._current is not None:
                    return self._current.device_id
                return None

        def seen() -> str:
            return (
                f"wanted {count} connections, saw {self.connections_total} "
                f"({self.live_connections} live, {self.endpoint_requests} endpoint requests)"
            )

        return self.wait_for(ready, timeout, seen)

    @property
    def current_conn_id(self) -> str | None:
        """Device id of the connection events go to, or None."""
        with self._cond:
            return self._current.device_id if self._current else None

    @property
    def live_connections(self) -> int:
        """WebSockets currently open."""
        with self._cond:
            return len(self._live)

    @property
    def connections_total(self) -> int:
        """WebSockets accepted since start."""
        with self._cond:
            return self._connections_total

    @property
    def conn_ids(self) -> list[str]:
        """Device ids of accepted connections, in order."""
        with self._cond:
            return list(self._conn_ids)

    @property
    def last_connect_at(self) -> float | None:
        """time.time() of the latest accepted connection."""
        with self._cond:
            return self._last_connect_at

    @property
    def endpoint_requests(self) -> int:
        """Endpoint discovery POSTs, failed ones included."""
        with self._cond:
            return self._endpoint_requests

    @property
    def endpoints_hanging(self) -> int:
        """Endpoint POSTs held unanswered right now (see `hang_endpoint`)."""
        with self._cond:
            return self._endpoints_hanging

    @property
    def token_requests(self) -> int:
        """Tenant token POSTs, failed ones included."""
        with self._cond:
            return self._token_requests

    @property
    def pings(self) -> int:
        """Client ping frames received."""
        with self._cond:
            return self._pings

    @property
    def failed_posts(self) -> int:
        """Send POSTs answered with an error (bad token, bad body, injected 500, rate limit)."""
        with self._cond:
            return self._failed_posts

    @property
    def too_long(self) -> int:
        """Text/post sends refused with 230025 for a request body over `text_body_limit`."""
        with self._cond:
            return self._too_long

    @property
    def rate_limited(self) -> list[tuple[str, str, float]]:
        """Sends refused with 230020 as (kind, target message or receive id, time.time())."""
        with self._cond:
            return list(self._rate_limited)
