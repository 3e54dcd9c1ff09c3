"""Everything gatewatch takes from lark-oapi beyond its public API, in one place.

Checked on lark-oapi 1.7.5 (pyproject pins >=1.7.5,<1.8). Three things reach inside the SDK, each
for a reason:

1. **Lean loading** (`load_ws_client`). `import lark_oapi` runs the package `__init__`, which
   imports every API and every event model: ~11,000 modules, 3-8 s and ~170 MB here, paid at every
   start of every gateway. The gateway uses the WebSocket client and one event. So the package is
   registered without running its `__init__` (a later attribute access on it runs the `__init__`
   then, so code that does `import lark_oapi` still gets the whole SDK), and the one module the
   client imports only for a type annotation — the event dispatcher, which loads every event
   model — is stood in for while the client is imported. What is left is the client, its frames
   and its protocol handling, lark-oapi's own code, unchanged: ~400 modules, ~40 MB.
2. **The event handler** (`MessageEvents`). The client hands each event's payload to
   `event_handler._do_without_validation(payload)`; the gateway decodes the JSON itself
   (`messages.incoming_from_event` reads dicts), so the dispatcher is never needed.
3. **The observed client** (`observed_client_class`). `ws.Client` runs on a module-level loop,
   blocks forever in `start()`, has no deadline on endpoint discovery or handshake and no stop;
   the subclass runs it on a loop of our own, gives every phase a deadline and reports its life.
   The module-level loop itself is made at the client module's import; the connection imports it
   on a thread of its own so that loop is that thread's.

`SDK_INTERNALS` names every internal relied on; `tests/test_lark_compat.py` checks each still
exists with the expected shape, so an upgrade of lark-oapi fails in CI, never at a user's, and
that no other module of gateway_core uses lark-oapi.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .logs import adopt_sdk_logger, escape_untrusted

if TYPE_CHECKING:
    from .feishu import PhaseDeadlines

log = logging.getLogger("gatewatch.feishu")

LARK_OAPI_CHECKED = "1.7.5"
MESSAGE_RECEIVED = "im.message.receive_v1"
_DISPATCHER = "lark_oapi.event.dispatcher_handler"

# What of the SDK's internals the gateway relies on: module -> names (methods as Class.name).
SDK_INTERNALS: dict[str, tuple[str, ...]] = {
    "lark_oapi.ws.client": (
        "Client",
        "Client._connect",
        "Client._disconnect",
        "Client._reconnect",
        "Client._receive_message_loop",
        "Client._handle_message",
        "Client._handle_data_frame",
        "Client._write_message",
        "Client._configure",
        "Client._fmt_log",
        "Client._get_conn_url",
        "_new_ping_frame",
        "_ws_connect_kwargs",
        "_parse_ws_conn_exception",
        "_ordinal",
        "build_connection_url",
        "parse_qs",
        "urlparse",
        "websockets",
        "requests",
        "logger",
        "loop",
        "JSON",
        "UTF_8",
        "USER_AGENT",
        "GEN_ENDPOINT_URI",
        "DEVICE_ID",
        "SERVICE_ID",
        "EndpointResp",
        "SYSTEM_BUSY",
        "INTERNAL_ERROR",
        "OK",
        "NO_CREDENTIAL",
        "ClientException",
        "ServerException",
        "ConnectionClosedException",
        "InvalidHandshake",
    ),
    "lark_oapi.ws.exception": ("ClientException",),
    "lark_oapi.ws.pb.pbbp2_pb2": ("Frame",),
}

_loading = threading.Lock()


class StaleAttempt(RuntimeError):
    """An abandoned attempt got an event: the SDK acks it as failed so Feishu redelivers it."""


class AttemptObserver(Protocol):
    """What the observed client reports to: the Feishu connection (feishu.py)."""

    def _current(self, generation: int) -> bool: ...
    def _on_phase(self, generation: int, detail: str, budget: float | None) -> None: ...
    def _on_connected(self, generation: int, conn_id: str) -> bool: ...
    def _on_disconnected(self, generation: int) -> None: ...
    def _on_frame(self, generation: int, is_pong: bool) -> None: ...
    def _on_ping_sent(self, generation: int) -> None: ...
    def _on_configured(self, generation: int, ping_interval: float) -> None: ...
    def _on_attempt_failed(self, generation: int, exc: BaseException, retry_in: float | None) -> None: ...
    def _on_reconnecting(self, generation: int) -> None: ...
    def _on_gave_up(self, generation: int, exc: BaseException) -> None: ...


# ---------------------------------------------------------------------------- lean loading


def load_ws_client() -> Any:
    """`lark_oapi.ws.client`, loaded lean (see the module), its logger adopted. Slow the first time
    (~0.3-0.8 s): call it on the connection's thread, never on the gateway's loop."""
    with _loading:
        module = sys.modules.get("lark_oapi.ws.client")
        if module is None:
            _register_package_without_init()
            module = _import_without_dispatcher("lark_oapi.ws.client")
    adopt_sdk_logger()
    return module


def sdk_module(name: str) -> Any:
    """Another module of the SDK's WebSocket side (its exceptions, its frames), loaded as lean."""
    with _loading:
        module = sys.modules.get(name)
        if module is None:
            _register_package_without_init()
            module = _import_without_dispatcher(name)
    return module


def frame_class() -> Any:
    """The SDK's protobuf `Frame` (the long connection's frames)."""
    return sdk_module("lark_oapi.ws.pb.pbbp2_pb2").Frame


def is_client_exception(exc: BaseException) -> bool:
    """The SDK's ClientException: Feishu refused the app (bad credentials): not worth retrying."""
    return isinstance(exc, sdk_module("lark_oapi.ws.exception").ClientException)


def sdk_error_text(exc: BaseException) -> str:
    return escape_untrusted(str(getattr(exc, "msg", None) or exc) or type(exc).__name__, limit=200)


def _register_package_without_init() -> None:
    """Make `lark_oapi` importable as a package without running its `__init__` (lock held).

    The `__init__` still runs the first time anyone reads an attribute the package does not have
    yet (`lark_oapi.Client`, `from lark_oapi import X`): code that wants the whole SDK gets it.
    """
    if "lark_oapi" in sys.modules:
        return
    spec = importlib.util.find_spec("lark_oapi")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        raise ImportError("lark-oapi is not installed")
    package = importlib.util.module_from_spec(spec)
    running = threading.local()

    def complete_on_first_use(name: str) -> Any:
        if getattr(running, "init", False) or name.startswith("__"):
            raise AttributeError(name)
        running.init = True
        try:
            del package.__dict__["__getattr__"]  # from now on an ordinary module
            assert spec.loader is not None
            spec.loader.exec_module(package)
        finally:
            running.init = False
        return getattr(package, name)

    package.__getattr__ = complete_on_first_use  # type: ignore[method-assign]
    sys.modules["lark_oapi"] = package


def _import_without_dispatcher(name: str) -> Any:
    """Import `name`; the dispatcher module it may import (for an annotation) is stood in for
    meanwhile, then forgotten, so a later real import of it loads the real one."""
    if _DISPATCHER in sys.modules:
        return importlib.import_module(name)
    stand_in = types.ModuleType(_DISPATCHER, "Stands in while lark_oapi.ws.client is imported lean.")
    stand_in.EventDispatcherHandler = MessageEvents  # type: ignore[attr-defined]
    sys.modules[_DISPATCHER] = stand_in
    try:
        return importlib.import_module(name)
    finally:
        if sys.modules.get(_DISPATCHER) is stand_in:
            del sys.modules[_DISPATCHER]


# ---------------------------------------------------------------------------- events


class MessageEvents:
    """The client's event handler: decodes each event payload (JSON) and hands a message on.

    The SDK calls `_do_without_validation(payload)` on its loop thread and acks when it returns
    (code 500 when it raises, and Feishu redelivers). Only `im.message.receive_v1` is handed on;
    any other event the app is subscribed to is acked and left alone — redelivering it would
    only come back again.
    """

    def __init__(self, on_message: Callable[[dict[str, Any]], None]):
        self._on_message = on_message

    def _do_without_validation(self, payload: bytes) -> None:
        event = json.loads(payload.decode("utf-8"))
        header = event.get("header") if isinstance(event, dict) else None
        event_type = header.get("event_type") if isinstance(header, dict) else None
        if event_type != MESSAGE_RECEIVED:
            log.info("Feishu event of type %s acked and not handled", escape_untrusted(str(event_type), limit=80))
            return None
        self._on_message(event)
        return None


# ---------------------------------------------------------------------------- the observed client


_OBSERVED: dict[int, type] = {}


def observed_client_class(ws_client_module: Any) -> type:
    """A subclass of the SDK's ws.Client: deadlines on every phase, its own loop, and a report
    of its life (phases, frames, pings, failures) to its owner (an `AttemptObserver`), tagged
    with its generation. The one place that overrides SDK internals.

    Built after the lean import, so this module stays importable without loading the SDK.
    The SDK internals it overrides or calls are listed in SDK_INTERNALS (a test checks each).
    """
    key = id(ws_client_module)
    if key in _OBSERVED:
        return _OBSERVED[key]
    sdk = ws_client_module

    class ObservedClient(sdk.Client):  # type: ignore[misc, name-defined]
        _conn: Any  # the SDK's own attributes (set in its connect), declared for the type checker
        _service_id: Any

        def __init__(
            self,
            owner: AttemptObserver,
            generation: int,
            deadlines: PhaseDeadlines,
            max_interval: float,
            **kwargs: Any,
        ):
            self._owner, self._generation = owner, generation
            self._deadlines, self._max_interval = deadlines, max_interval
            super().__init__(**kwargs)
            self._cap_waits()

        # -- driving: the loop this attempt runs on, never the SDK's module global ------------

        def start_on(self, loop: asyncio.AbstractEventLoop) -> None:
            """The SDK's start(), on `loop`; returns when the loop is stopped (stop or restart)."""
            connecting = loop.create_task(self._connect())
            # A restart stops this loop mid-connect; the task then ends during teardown, with
            # nobody awaiting it: mark its outcome as seen so it is not reported as lost.
            connecting.add_done_callback(lambda task: task.cancelled() or task.exception())
            try:
                loop.run_until_complete(connecting)
            except sdk.ClientException:
                raise
            except StaleAttempt:
                return
            except Exception as exc:
                sdk.logger.error(self._fmt_log("connect failed, err: {}", exc))
                self._owner._on_attempt_failed(self._generation, exc, self._reconnect_nonce)
                loop.run_until_complete(self._disconnect())
                loop.run_until_complete(self._reconnect())
            if not self._owner._current(self._generation):
                # Abandoned while run_until_complete ran: its own end-of-run stop may have
                # swallowed ours (both land in one loop iteration), so do not run on forever.
                return
            loop.create_task(self._ping_loop())
            loop.run_forever()

        async def _receive_message_loop(self) -> None:
            loop = asyncio.get_running_loop()
            try:
                while True:
                    if self._conn is None:
                        raise sdk.ConnectionClosedException("connection is closed")
                    msg = await self._conn.recv()
                    loop.create_task(self._handle_message(msg))
            except Exception as exc:
                sdk.logger.error(self._fmt_log("receive message loop exit, err: {}", exc))
                await self._disconnect()
                await self._reconnect()

        async def _ping_loop(self) -> None:
            while True:
                try:
                    if self._conn is not None:
                        frame = sdk._new_ping_frame(int(self._service_id))
                        await self._write_message(frame.SerializeToString())
                        self._owner._on_ping_sent(self._generation)
                except Exception as exc:
                    sdk.logger.warning(self._fmt_log("ping failed, err: {}", exc))
                finally:
                    await asyncio.sleep(self._ping_interval)

        # -- phases with deadlines ---------------------------------------------------------------

        async def _connect(self) -> None:
            # The SDK's version returns with its lock still held when already connected; and
            # neither its POST nor its handshake has a deadline.
            owner, generation, deadlines = self._owner, self._generation, self._deadlines
            async with self._lock:
                if self._conn is not None:
                    return
                if not owner._current(generation):
                    raise StaleAttempt(f"attempt {generation} was abandoned; not connecting")
                try:
                    owner._on_phase(generation, "discovering endpoint", deadlines.endpoint + 1)
                    loop = asyncio.get_running_loop()
                    url = await asyncio.wait_for(loop.run_in_executor(None, self._get_conn_url), deadlines.endpoint + 1)
                    conn_url = sdk.build_connection_url(url, self._connection_host)
                    query = sdk.parse_qs(sdk.urlparse(conn_url).query)
                    conn_id, service_id = query[sdk.DEVICE_ID][0], query[sdk.SERVICE_ID][0]
                    owner._on_phase(generation, "opening the WebSocket", deadlines.handshake)
                    conn = await sdk.websockets.connect(
                        conn_url,
                        open_timeout=deadlines.handshake,
                        close_timeout=deadlines.close,
                        **sdk._ws_connect_kwargs(self._connection_headers),
                    )
                    self._conn, self._conn_url = conn, conn_url
                    self._conn_id, self._service_id = conn_id, service_id
                    if not owner._on_connected(generation, conn_id):
                        self._conn = None
                        await conn.close()  # bounded by close_timeout
                        raise StaleAttempt(f"attempt {generation} was abandoned while connecting")
                    sdk.logger.info(self._fmt_log("connected to {}", conn_url))
                    loop.create_task(self._receive_message_loop())
                except sdk.InvalidHandshake as exc:
                    sdk._parse_ws_conn_exception(exc)

        def _get_conn_url(self) -> str:
            """The SDK's endpoint discovery with a deadline on the POST (runs on an executor thread)."""
            if not self._app_id or not self._app_secret:
                raise sdk.ClientException(sdk.NO_CREDENTIAL, "app_id and app_secret are required")
            headers = {**self._headers, "locale": "zh", sdk.USER_AGENT: self._user_agent}
            response = sdk.requests.post(
                self._domain + sdk.GEN_ENDPOINT_URI,
                headers=headers,
                json={"AppID": self._app_id, "AppSecret": self._app_secret},
                timeout=(self._deadlines.endpoint, self._deadlines.endpoint),
            )
            if response.status_code != 200:
                try:
                    msg = json.loads(response.content).get("msg") or "system busy"
                except Exception:
                    msg = "system busy"
                raise sdk.ServerException(response.status_code, msg)
            resp = sdk.JSON.unmarshal(str(response.content, sdk.UTF_8), sdk.EndpointResp)
            if resp.code in (sdk.SYSTEM_BUSY, sdk.INTERNAL_ERROR):
                raise sdk.ServerException(resp.code, resp.msg or "system busy")
            if resp.code != sdk.OK:
                raise sdk.ClientException(resp.code, resp.msg)
            if resp.data.ClientConfig is not None:
                self._configure(resp.data.ClientConfig)
            return str(resp.data.URL)

        async def _try_connect(self, cnt: int) -> bool:
            sdk.logger.info(self._fmt_log("trying to reconnect for the {} time", sdk._ordinal(cnt + 1)))
            try:
                await self._connect()
                return True
            except (sdk.ClientException, StaleAttempt):
                raise  # fatal, or abandoned: either way no more attempts from this client
            except Exception as exc:
                sdk.logger.error(self._fmt_log("connect failed, err: {}", exc))
                self._owner._on_attempt_failed(self._generation, exc, self._reconnect_interval)
                return False

        async def _disconnect(self) -> None:
            was_connected = self._conn is not None
            await super()._disconnect()
            if was_connected:
                self._owner._on_disconnected(self._generation)

        async def _reconnect(self) -> None:
            self._owner._on_reconnecting(self._generation)
            try:
                await super()._reconnect()
            except Exception as exc:
                # The SDK would let this kill its receive task silently while start() blocks on.
                self._owner._on_gave_up(self._generation, exc)

        # -- observation -------------------------------------------------------------------------

        async def _handle_message(self, msg: bytes) -> None:
            self._owner._on_frame(self._generation, _is_pong(msg))
            await super()._handle_message(msg)

        def _configure(self, conf: Any) -> None:
            super()._configure(conf)
            self._cap_waits()
            self._owner._on_configured(self._generation, self._ping_interval)

        def _cap_waits(self) -> None:
            # Feishu's defaults (30 s jitter, 120 s between attempts) suit a fleet; one operator's
            # gateway should be back within seconds.
            for name in ("_reconnect_interval", "_reconnect_nonce"):
                value = getattr(self, name, None)
                if isinstance(value, (int, float)):
                    setattr(self, name, min(value, self._max_interval))

    _OBSERVED[key] = ObservedClient
    return ObservedClient


def _is_pong(msg: bytes) -> bool:
    frame = frame_class()()
    try:
        frame.ParseFromString(msg)
    except Exception:
        return False
    return frame.method == 0 and any(h.key == "type" and h.value == "pong" for h in frame.headers)
