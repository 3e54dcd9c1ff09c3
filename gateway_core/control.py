"""The control socket: how an operator or a script reaches a running gateway without owning it.

`$GATEWATCH_HOME/run/<profile>.sock`, in a 0700 directory, mode 0600, and a peer-credential check
on every connection: only the gateway's own user gets in. The protocol is newline-delimited
JSON, one request object per line, each answered by one response line (`subscribe` then keeps
streaming). Everything a client sends is untrusted: malformed, oversized or unknown requests get
an error response and cannot disturb the gateway, and a slow subscriber loses batches (counted)
instead of slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any, AsyncGenerator, Protocol

from .access import AccessError
from .llm import UnknownModel
from .logs import GatewayLogging, LogLine
from .snapshots import GatewaySnapshot, snapshot_to_dict

log = logging.getLogger("gatewatch.control")

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024
BROADCAST_INTERVAL = 0.5
SUBSCRIBE_EVERY_MAX = 20  # a subscriber may take one snapshot in every N ticks (the fleet view: 2)
SUBSCRIBER_BUFFER_LIMIT = 1024 * 1024  # bytes waiting in one subscriber's socket before we drop
SUBSCRIBER_STUCK_AFTER = 30.0  # seconds of dropped batches before a subscriber is disconnected
SUBSCRIBE_BACKLOG = 500
ACCESS_OPS = ("access_list", "access_approve", "access_deny", "access_revoke")  # issue 19
OPS = ("status", "subscribe", "switch_model", "restart_feishu", "rebuild_executor", "stop", *ACCESS_OPS)


# -- peer credentials ---------------------------------------------------------------------------


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, or None if it cannot be told."""
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", raw)[1])
        # macOS: LOCAL_PEERCRED (1) at SOL_LOCAL (0) gives struct xucred {version, uid, ...}
        raw = sock.getsockopt(0, 1, struct.calcsize("IIh16I") + 8)
        return int(struct.unpack_from("II", raw)[1])
    except (OSError, struct.error):
        return None


def is_allowed_peer(uid: int | None, own_uid: int | None = None) -> bool:
    """Only the gateway's own user may control it; an unknown peer is refused."""
    return uid is not None and uid == (os.getuid() if own_uid is None else own_uid)


# -- wire codec (snapshots: see snapshots.py) -----------------------------------------------


def log_line_from_dict(data: dict[str, Any]) -> LogLine:
    return LogLine(**{f.name: data[f.name] for f in dataclasses.fields(LogLine)})


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps({"v": PROTOCOL_VERSION, **message}, separators=(",", ":")) + "\n").encode()


# -- server -------------------------------------------------------------------------------------


class Controllable(Protocol):
    """What the control server needs from a gateway — all of it, and nothing of how it is built.

    `Gateway` is one; the server depends on this, not on `Gateway` (which builds the server).
    """

    @property
    def logging(self) -> GatewayLogging | None: ...  # its ring buffer feeds `subscribe`

    def snapshot(self) -> GatewaySnapshot: ...

    def switch_model(self, name: str) -> str: ...

    async def restart_feishu(self, cause: str = ...) -> bool: ...

    def rebuild_executor(self, cause: str = ...) -> None: ...

    def request_stop(self, cause: str) -> None: ...

    def access_request(self, op: str, argument: str | None = ...) -> dict[str, Any]: ...


@dataclasses.dataclass(eq=False)
class _Subscriber:
    writer: asyncio.StreamWriter
    dropped: int = 0
    dropping_since: float | None = None
    every: int = 1  # a snapshot in every `every` ticks; log lines at every tick, none skipped
    ticks: int = 0


class ControlServer:
    """Serves one gateway's socket on the gateway's own loop."""

    def __init__(self, gateway: Controllable, path: Path, allowed_uid: int | None = None):
        self.gateway = gateway
        self.path = path
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid  # the only user let in
        self._server: asyncio.AbstractServer | None = None
        self._subscribers: list[_Subscriber] = []
        self._broadcaster: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.refused_peers = 0
        self.bad_requests = 0

    async def start(self) -> None:
        """Bind the socket. A leftover file is a dead owner's: we hold the profile lock now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            log.info("removed a stale control socket left by a previous owner")
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._broadcaster = asyncio.get_running_loop().create_task(self._broadcast(), name="control-broadcast")

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        if self._broadcaster:
            self._broadcaster.cancel()
        for subscriber in self._subscribers:
            subscriber.writer.close()
        for task in list(self._handlers):
            task.cancel()
        pending = [*self._handlers, *filter(None, [self._broadcaster])]
        await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._handlers.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if not is_allowed_peer(peer_uid(sock) if sock is not None else None, self.allowed_uid):
                self.refused_peers += 1
                writer.write(encode({"ok": False, "error": "refused: not the gateway's user"}))
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # the client left, possibly mid-line: nothing to answer
                except asyncio.LimitOverrunError:
                    self.bad_requests += 1
                    await _discard_rest_of_line(reader)
                    writer.write(encode({"ok": False, "error": f"request larger than {MAX_REQUEST_BYTES} bytes"}))
                    continue
                if not line.strip():
                    continue
                response, every = await self._handle(line)
                writer.write(encode(response))
                await writer.drain()
                if every is not None:
                    await self._stream_to(writer, reader, every)
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # `stop` cancels open connections (an attached console's among them). Ending normally
            # instead of as cancelled: Python 3.11's stream callback calls `task.exception()` on
            # this task, which raises for a cancelled one and prints a traceback at every stop.
            return
        except Exception:
            log.exception("control connection failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                # Collect how the socket closed (a BrokenPipeError when the client left first):
                # left unread, it is printed as "Future exception was never retrieved" at exit.
                async with asyncio.timeout(1):
                    await writer.wait_closed()
            if task:
                self._handlers.discard(task)

    async def _handle(self, line: bytes) -> tuple[dict[str, Any], int | None]:
        """One request -> (response, stream a snapshot every N ticks, or None: no stream). Never
        raises for bad input."""
        try:
            request = json.loads(line)
        except ValueError:
            self.bad_requests += 1
            return {"ok": False, "error": "not JSON"}, None
        if not isinstance(request, dict):
            self.bad_requests += 1
            return {"ok": False, "error": "a request is a JSON object"}, None
        if request.get("v") != PROTOCOL_VERSION:
            self.bad_requests += 1
            return {
                "ok": False,
                "error": f"unsupported protocol version; this gateway speaks v{PROTOCOL_VERSION}",
            }, None
        op = request.get("op")
        if op not in OPS:
            self.bad_requests += 1
            return {"ok": False, "error": f"unknown op; one of: {', '.join(OPS)}"}, None
        gateway = self.gateway
        try:
            if op == "status":
                return {"ok": True, "status": snapshot_to_dict(gateway.snapshot())}, None
            if op == "subscribe":
                every = request.get("every", 1)
                if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= SUBSCRIBE_EVERY_MAX:
                    self.bad_requests += 1
                    return {
                        "ok": False,
                        "error": f"subscribe's 'every' is a whole number from 1 to {SUBSCRIBE_EVERY_MAX}",
                    }, None
                # The recent log comes with the first answer; the broadcaster sends what follows.
                ring = gateway.logging.ring if gateway.logging else None
                recent = [dataclasses.asdict(line) for line in ring.since(0, limit=SUBSCRIBE_BACKLOG)] if ring else []
                return {"ok": True, "status": snapshot_to_dict(gateway.snapshot()), "log": recent}, every
            if op == "switch_model":
                model = request.get("model")
                if not isinstance(model, str):
                    return {"ok": False, "error": "switch_model needs a string 'model'"}, None
                previous = gateway.switch_model(model)
                return {"ok": True, "previous": previous, "active": model}, None
            if op == "restart_feishu":
                restarted = await gateway.restart_feishu("requested over the control socket")
                return {"ok": True, "restarted": restarted}, None
            if op in ACCESS_OPS:
                argument = request.get("argument")
                if argument is not None and not isinstance(argument, str):
                    return {"ok": False, "error": f"{op} takes a string 'argument'"}, None
                return {"ok": True, **gateway.access_request(op.removeprefix("access_"), argument)}, None
            if op == "rebuild_executor":
                gateway.rebuild_executor("requested over the control socket")
                return {"ok": True}, None
            gateway.request_stop("requested over the control socket")
            return {"ok": True, "stopping": True}, None
        except (UnknownModel, AccessError) as exc:
            return {"ok": False, "error": str(exc)}, None

    async def _stream_to(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, every: int) -> None:
        """Register a subscriber; the broadcaster feeds it until it leaves."""
        subscriber = _Subscriber(writer, every=every)
        self._subscribers.append(subscriber)
        try:
            while await reader.read(4096):
                pass  # a subscriber has nothing more to say; EOF means it left
        finally:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    async def _broadcast(self) -> None:
        """One snapshot and the new log lines per tick, encoded once, written to every subscriber
        (the snapshot only every `every` ticks to a subscriber that asked for fewer).

        Writes never wait: a subscriber whose socket buffer is full loses the batch (counted), and
        one that stays stuck is disconnected, so no client can slow the gateway.
        """
        ring = self.gateway.logging.ring if self.gateway.logging else None
        last_seq = ring.last_seq if ring else 0
        while True:
            await asyncio.sleep(BROADCAST_INTERVAL)  # the subscription's refresh period
            lines = ring.since(last_seq) if ring else []
            if lines:
                last_seq = lines[-1].seq
            if not self._subscribers:
                continue
            snapshot: dict[str, Any] | None = None  # made once, and only if some subscriber is due
            batch = b"".join(encode({"event": "log", "line": dataclasses.asdict(line)}) for line in lines)
            now = time.monotonic()
            for subscriber in list(self._subscribers):
                transport = subscriber.writer.transport
                if transport.is_closing():
                    self._subscribers.remove(subscriber)
                    continue
                if transport.get_write_buffer_size() > SUBSCRIBER_BUFFER_LIMIT:
                    subscriber.dropped += 1
                    subscriber.dropping_since = subscriber.dropping_since or now
                    if now - subscriber.dropping_since > SUBSCRIBER_STUCK_AFTER:
                        log.warning("control subscriber stuck for %.0fs; disconnected", now - subscriber.dropping_since)
                        transport.abort()
                        self._subscribers.remove(subscriber)
                    continue
                subscriber.dropping_since = None
                subscriber.ticks += 1
                if subscriber.ticks % subscriber.every:
                    if batch:
                        transport.write(batch)
                    continue
                if snapshot is None:
                    snapshot = snapshot_to_dict(self.gateway.snapshot())
                message = encode({"event": "snapshot", "status": snapshot, "dropped": subscriber.dropped})
                transport.write(batch + message)


async def _discard_rest_of_line(reader: asyncio.StreamReader) -> None:
    """Drop an oversized line without ever buffering more than the limit of it."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as overrun:
            await reader.readexactly(overrun.consumed)


# -- clients ------------------------------------------------------------------------------------


class ControlError(Exception):
    """The gateway could not be reached, or it answered with an error."""


def request(path: Path, op: str, timeout: float = 3.0, **arguments: Any) -> dict[str, Any]:
    """One request, one response (blocking). Raises ControlError with a one-line reason."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path} (is the gateway running?)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(encode({"op": op, **arguments}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # a refusal is written and the socket closed before our request is read: read the refusal
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("the gateway closed the connection without answering")
            buffer += chunk
    except ConnectionResetError:
        raise ControlError("the gateway closed the connection without answering") from None
    except socket.timeout:
        raise ControlError(f"no answer from the gateway within {timeout:g}s") from None
    finally:
        sock.close()
    response: dict[str, Any] = json.loads(buffer.split(b"\n", 1)[0])
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "request failed")))
    return response


async def subscribe(
    path: Path, silence_limit: float | None = None, every: int = 1
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the first status, then every event the gateway streams, until it goes away.

    A gateway streams a snapshot every BROADCAST_INTERVAL (`every` N of them: one in N); with
    `silence_limit`, no line for that
    long raises ControlError. A stopped (SIGSTOP) or wedged process keeps its socket open and
    its kernel even accepts new connections for it — only the silence tells.
    """
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as
    # the line does, and a console detaching would then wait on this stream forever.
    try:
        async with asyncio.timeout(silence_limit):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024)
    except (FileNotFoundError, ConnectionError, TimeoutError) as exc:
        raise ControlError(f"cannot connect to {path}: {exc or 'timeout'}") from None
    try:
        writer.write(encode({"op": "subscribe", "every": every} if every != 1 else {"op": "subscribe"}))
        while True:
            try:
                async with asyncio.timeout(silence_limit):
                    line = await reader.readline()
            except TimeoutError:
                raise ControlError(f"no answer from the gateway for {silence_limit:g}s") from None
            if not line:
                return
            yield json.loads(line)
    finally:
        writer.close()


async def arequest(path: Path, op: str, timeout: float = 5.0, **arguments: Any) -> dict[str, Any]:
    """The async twin of `request`, for the console's own loop."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionError, asyncio.TimeoutError) as exc:
        raise ControlError(f"cannot connect to {path}: {exc or 'timeout'}") from None
    try:
        writer.write(encode({"op": op, **arguments}))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        raise ControlError(f"no answer from the gateway within {timeout:g}s") from None
    finally:
        writer.close()
    if not line:
        raise ControlError("the gateway closed the connection without answering")
    response: dict[str, Any] = json.loads(line)
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "request failed")))
    return response
