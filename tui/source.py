"""Where the console's data comes from: a small protocol, and the in-process implementation.

Panels and screens depend only on `GatewaySource` and the snapshot dataclasses of gateway_core,
never on a `Gateway` object, so the same console drives a gateway in this process (`LocalSource`,
on a loop thread of its own) or in another one (`RemoteSource`, over the control socket), and
tests can render frozen snapshots.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Protocol, TypeVar, runtime_checkable

from gateway_core.executor import ExecutorSnapshot
from gateway_core.feishu import FeishuSnapshot
from gateway_core.llm import ModelsSnapshot
from gateway_core.logs import LogLine, Redactor
from gateway_core.ownership import OwnerInfo
from gateway_core.pipeline import PipelineSnapshot
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.states import ExecutorState, FeishuState, GatewayState
from gateway_core.threads import BackgroundLoop, in_own_thread

if TYPE_CHECKING:
    from gateway_core.gateway import Gateway  # made by the caller's factory, on the gateway's thread

T = TypeVar("T")

# Deadlines for what the console asks of a gateway, in this process or another (tui/remote.py).
OPERATION_TIMEOUT = 5.0  # switch the model, rebuild the executor
RESTART_TIMEOUT = 20.0  # restart the Feishu connection
# In this process: making the gateway (the demo starts its simulators, importing the SDK: seconds,
# more on a loaded machine), starting it (lock, journal, control socket), and what a stop may take
# beyond the profile's drain budget; the loop thread's join after that.
MAKE_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_MARGIN = 10.0
LOOP_JOIN_TIMEOUT = 5.0


class AttachMode(StrEnum):
    """How an attached console hears the gateway another process owns (RemoteSource)."""

    CONNECTING = "connecting"  # not reached yet
    SOCKET = "socket"  # its control socket streams to us
    UNREACHABLE = "unreachable"  # the owner lives but its socket is silent or gone
    EXITED = "exited"  # the owner is gone and nobody holds the profile

    @property
    def stale(self) -> bool:
        """What is shown is what the gateway said last, not what it says now."""
        return self in (AttachMode.UNREACHABLE, AttachMode.EXITED)


@dataclass(frozen=True)
class Attachment:
    """A source that reads a gateway in another process: who owns it and how it is heard."""

    mode: AttachMode
    owner: OwnerInfo
    attaches: int  # successful subscriptions: more than one means it was re-attached
    gone: str  # why the panels are stale, in one sentence ("" while it answers)

    @property
    def stale(self) -> bool:
        return self.mode.stale

    @property
    def lock_free(self) -> bool:
        """Nobody owns the profile any more: it could be served here."""
        return self.mode == AttachMode.EXITED


@runtime_checkable
class GatewaySource(Protocol):
    """What the console reads and the few operations it may ask for."""

    def snapshot(self) -> GatewaySnapshot: ...

    def log_since(self, seq: int) -> list[LogLine]: ...

    async def news_after(self, seq: int, timeout: float) -> bool:
        """Return True once a log record newer than `seq` is there, False after `timeout` seconds:
        the console redraws on news instead of polling (a state change is always logged)."""
        ...

    async def switch_model(self, name: str) -> str: ...

    async def restart_feishu(self) -> bool: ...

    async def rebuild_executor(self) -> None: ...

    async def access_request(self, op: str, argument: str | None = None) -> dict[str, Any]:
        """An access operation (access.AccessOp) on the gateway's journal; AccessError if refused."""
        ...

    def describe(self) -> str: ...

    def attachment(self) -> Attachment | None:
        """None: the gateway runs in this process. Otherwise how the one in another is heard."""
        ...

    def redact(self, text: str) -> str:
        """`text` with the profile's secrets replaced, for anything shown on screen."""
        ...

    async def start(self) -> None:
        """Begin serving (or connect to the gateway); raises ProfileBusy when another owns it."""
        ...

    async def stop(self) -> int:
        """Stop serving; returns the answers left unfinished."""
        ...

    @property
    def running(self) -> bool: ...

    @property
    def stop_requested(self) -> bool:
        """Someone asked the gateway to stop (e.g. `gatewatch` over the control socket)."""
        ...


def starting_snapshot(profile: str, since: float) -> GatewaySnapshot:
    """What there is to show before the gateway exists: nothing running yet, said in words."""
    return GatewaySnapshot(
        profile=profile,
        state=GatewayState.STARTING,
        owner=None,
        uptime=0.0,
        executor=ExecutorSnapshot(
            state=ExecutorState.STARTING,
            max_workers=0,
            live_threads=0,
            busy=0,
            queued=0,
            completed=0,
            failed=0,
            restarts=0,
            last_probe_latency=None,
            probe_p50=None,
            probe_p95=None,
            last_restart_at=None,
            last_restart_cause=None,
        ),
        feishu=FeishuSnapshot(
            state=FeishuState.CONNECTING,
            since=since,
            detail="loading SDK",
            conn_id="",
            last_frame_at=None,
            connects=0,
            reconnects=0,
            restarts=0,
            last_error=None,
        ),
        models=ModelsSnapshot(active="—", models=()),
        pipeline=PipelineSnapshot.empty(),
    )


class LocalSource:
    """A gateway in this process, serving on an event loop of its own (a `BackgroundLoop` thread).

    The console's loop only awaits: making the gateway, starting it, each operation and stopping
    it run on the gateway's loop, each waited for with a deadline — a stuck one is reported, never
    waited on forever. So Textual keeps its own default executor (the held pool is the gateway
    loop's), and a stalled terminal or a busy screen cannot hold up message handling. Reading
    (`snapshot`, `log_since`) needs no crossing: both are safe from any thread.

    Making the gateway may be slow (the demo starts simulators, which import the Feishu SDK); the
    console paints and says "loading SDK" meanwhile. The loop thread ends after `stop()` (or a
    failed start); serving again makes a fresh one.
    """

    def __init__(self, profile: str, make_gateway: Callable[[], Gateway]):
        self.profile = profile
        self._make_gateway = make_gateway
        self.gateway: Gateway | None = None
        self._redactor = Redactor()  # no secrets known until the gateway (and its profile) exists
        self._created = time.time()
        self._served = False
        self._gateway_loop: BackgroundLoop | None = None

    def snapshot(self) -> GatewaySnapshot:
        gateway = self.gateway
        if gateway is None:
            return starting_snapshot(self.profile, self._created)
        return gateway.snapshot()

    def attachment(self) -> Attachment | None:
        return None  # served in this process

    def log_since(self, seq: int) -> list[LogLine]:
        # Before start() (and after stop()) there are no handlers and so no records. Read once:
        # stop() clears it on the gateway's thread. The ring itself is locked.
        gateway = self.gateway
        handlers = gateway.logging if gateway is not None else None
        return handlers.ring.since(seq) if handlers is not None else []

    async def news_after(self, seq: int, timeout: float) -> bool:
        gateway = self.gateway
        handlers = gateway.logging if gateway is not None else None
        if handlers is None:
            await asyncio.sleep(timeout)  # not serving yet (or any more): nothing to wait on
            return False
        return await in_own_thread(handlers.ring.wait_beyond, seq, timeout)  # a daemon thread: exit never waits

    async def switch_model(self, name: str) -> str:
        gateway = self._started()
        return await self._on_gateway_loop(_called(gateway.switch_model, name), OPERATION_TIMEOUT, "switch the model")

    async def restart_feishu(self) -> bool:
        restart = self._started().restart_feishu("operator request from the console")
        return await self._on_gateway_loop(restart, RESTART_TIMEOUT, "restart the Feishu connection")

    async def rebuild_executor(self) -> None:
        gateway = self._started()
        cause = "operator request from the console"
        await self._on_gateway_loop(_called(gateway.rebuild_executor, cause), OPERATION_TIMEOUT, "rebuild the executor")

    async def access_request(self, op: str, argument: str | None = None) -> dict[str, Any]:
        gateway = self._started()
        work = _called(gateway.access_request, op, argument)
        return await self._on_gateway_loop(work, OPERATION_TIMEOUT, f"{op} access")

    def describe(self) -> str:
        return f"console, PID {os.getpid()}"

    def redact(self, text: str) -> str:
        return self._redactor.redact(text)

    async def start(self) -> None:
        self._open_gateway_loop()
        try:
            if self.gateway is None or self._served:
                # A gateway that has served and stopped is not restarted (its executor is shut
                # down): serving again, e.g. after a failed hand-back, takes a fresh one.
                made = _called(self._make_gateway)
                self.gateway = await self._on_gateway_loop(made, MAKE_TIMEOUT, "load")
                self._redactor = Redactor(self.gateway.profile.secrets)
                self._served = False
            await self._on_gateway_loop(self.gateway.start(), START_TIMEOUT, "start")
        except BaseException:
            await self._close_gateway_loop()  # e.g. ProfileBusy: a later start() opens a new one
            raise
        self._served = True

    async def stop(self) -> int:
        gateway = self.gateway
        if gateway is None or self._gateway_loop is None:
            return 0
        budget = gateway.profile.drain_timeout + STOP_MARGIN
        try:
            # Not cancelled at the deadline: a stop cut off half-way would leave the journal open
            # and the profile locked. It finishes there (or ends with the process); we stop waiting.
            return await self._on_gateway_loop(gateway.stop(), budget, "stop", cancel_on_timeout=False)
        except TimeoutError:
            self._gateway_loop = None  # still stopping: its thread (a daemon) is left to it
            raise
        finally:
            await self._close_gateway_loop()

    @property
    def running(self) -> bool:
        return self.gateway is not None and self.gateway.state in (GatewayState.STARTING, GatewayState.RUNNING)

    @property
    def stop_requested(self) -> bool:
        return self.gateway is not None and self.gateway.stop_requested.is_set()

    def _started(self) -> Gateway:
        if self.gateway is None:
            raise RuntimeError("the gateway has not started yet")
        return self.gateway

    async def _on_gateway_loop(
        self, work: Coroutine[Any, Any, T], timeout: float, what: str, *, cancel_on_timeout: bool = True
    ) -> T:
        """Await `work` run on the gateway's loop, up to `timeout`; TimeoutError says what it did not do."""
        if self._gateway_loop is None:
            work.close()  # never started: no "coroutine was never awaited" warning
            raise RuntimeError("the gateway is not running")
        try:
            return await self._gateway_loop.arun(work, timeout, cancel_on_timeout=cancel_on_timeout)
        except TimeoutError:
            raise TimeoutError(f"the gateway did not {what} within {timeout:g}s") from None

    def _open_gateway_loop(self) -> None:
        if self._gateway_loop is None:
            self._gateway_loop = BackgroundLoop(name=f"gateway-{self.profile}").start()

    async def _close_gateway_loop(self) -> None:
        """End the loop thread; the join is bounded (and off the console's loop)."""
        gateway_loop, self._gateway_loop = self._gateway_loop, None
        if gateway_loop is not None:
            await in_own_thread(gateway_loop.stop, LOOP_JOIN_TIMEOUT)


async def _called(fn: Callable[..., T], *args: object) -> T:
    """A plain call as a coroutine, so that it runs on the loop it is sent to."""
    return fn(*args)
