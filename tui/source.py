"""Where the console's data comes from: a small protocol, and the in-process implementation.

Panels and screens depend only on `GatewaySource` and the snapshot dataclasses of gateway_core,
never on a `Gateway` object, so the same console can later drive a gateway in another process
(attach mode, over the control socket) and tests can render frozen snapshots.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Protocol, runtime_checkable

from gateway_core.executor import ExecutorSnapshot
from gateway_core.feishu import FeishuSnapshot
from gateway_core.gateway import Gateway
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.states import ExecutorState, FeishuState, GatewayState
from gateway_core.llm import ModelsSnapshot
from gateway_core.logs import LogLine, Redactor
from gateway_core.pipeline import PipelineSnapshot

from gateway_core.threads import in_own_thread


@runtime_checkable
class GatewaySource(Protocol):
    """What the console reads and the few operations it may ask for."""

    def snapshot(self) -> GatewaySnapshot: ...

    def log_since(self, seq: int) -> list[LogLine]: ...

    async def switch_model(self, name: str) -> str: ...

    async def restart_feishu(self) -> bool: ...

    async def rebuild_executor(self) -> None: ...

    def describe(self) -> str: ...

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
    """A gateway running in this process, on the console's own event loop.

    The gateway is made by `make_gateway` inside `start()`, on a thread of its own: making it may
    be slow (the demo starts simulators, which import the Feishu SDK), and the console paints and
    says "loading SDK" meanwhile instead of waiting for it.
    """

    def __init__(self, profile: str, make_gateway: Callable[[], Gateway]):
        self.profile = profile
        self._make_gateway = make_gateway
        self.gateway: Gateway | None = None
        self._redactor = Redactor()  # no secrets known until the gateway (and its profile) exists
        self._created = time.time()
        self._served = False

    def snapshot(self) -> GatewaySnapshot:
        if self.gateway is None:
            return starting_snapshot(self.profile, self._created)
        return self.gateway.snapshot()

    def log_since(self, seq: int) -> list[LogLine]:
        # Before start() (and after stop()) there are no handlers and so no records.
        ring = self.gateway.logging.ring if self.gateway and self.gateway.logging else None
        return ring.since(seq) if ring else []

    async def switch_model(self, name: str) -> str:
        return self._started().switch_model(name)

    async def restart_feishu(self) -> bool:
        return await self._started().restart_feishu("operator request from the console")

    async def rebuild_executor(self) -> None:
        self._started().rebuild_executor("operator request from the console")

    def describe(self) -> str:
        return f"console, PID {os.getpid()}"

    def redact(self, text: str) -> str:
        return self._redactor.redact(text)

    async def start(self) -> None:
        if self.gateway is None or self._served:
            # A gateway that has served and stopped is not restarted (its executor is shut down):
            # serving again, e.g. after a failed hand-back, takes a fresh one.
            self.gateway = await in_own_thread(self._make_gateway)
            self._redactor = Redactor(self.gateway.profile.secrets)
        await self.gateway.start()
        self._served = True

    async def stop(self) -> int:
        return await self.gateway.stop() if self.gateway else 0

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
