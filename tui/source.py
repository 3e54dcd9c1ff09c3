"""Where the console's data comes from: a small protocol, and the in-process implementation.

Panels and screens depend only on `GatewaySource` and the snapshot dataclasses of gateway_core,
never on a `Gateway` object, so the same console can later drive a gateway in another process
(attach mode, over the control socket) and tests can render frozen snapshots.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from gateway_core.gateway import Gateway, GatewaySnapshot
from gateway_core.logs import LogLine


@runtime_checkable
class GatewaySource(Protocol):
    """What the console reads and the few operations it may ask for."""

    def snapshot(self) -> GatewaySnapshot: ...

    def log_since(self, seq: int) -> list[LogLine]: ...

    def switch_model(self, name: str) -> str: ...

    async def restart_feishu(self) -> bool: ...

    def rebuild_executor(self) -> None: ...

    def describe(self) -> str: ...

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


class LocalSource:
    """A gateway running in this process, on the console's own event loop."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def snapshot(self) -> GatewaySnapshot:
        return self.gateway.snapshot()

    def log_since(self, seq: int) -> list[LogLine]:
        # Before start() (and after stop()) there are no handlers and so no records.
        ring = self.gateway.logging.ring if self.gateway.logging else None
        return ring.since(seq) if ring else []

    def switch_model(self, name: str) -> str:
        return self.gateway.switch_model(name)

    async def restart_feishu(self) -> bool:
        return await self.gateway.restart_feishu("operator request from the console")

    def rebuild_executor(self) -> None:
        self.gateway.rebuild_executor("operator request from the console")

    def describe(self) -> str:
        return f"console, PID {os.getpid()}"

    async def start(self) -> None:
        await self.gateway.start()

    async def stop(self) -> int:
        return await self.gateway.stop()

    @property
    def running(self) -> bool:
        return self.gateway.state in ("starting", "running")

    @property
    def stop_requested(self) -> bool:
        return self.gateway.stop_requested.is_set()
