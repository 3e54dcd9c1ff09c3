"""The console's lifecycle in words: what it is doing with its profile's gateway."""

from __future__ import annotations

from enum import StrEnum

from gateway_core.states import GatewayState


class ConsolePhase(StrEnum):
    """What the console is doing with its profile's gateway."""

    STARTING = "starting"  # starting (or restarting) the gateway, or attaching to it
    SERVING = "serving"  # the gateway runs in this process
    ATTACHED = "attached"  # another process serves it; this console watches over the socket
    OWNED = "owned"  # another process serves it and this console did not attach
    FAILED = "failed"  # the gateway could not start
    STOPPING = "stopping"


# The gateway state the header shows while the console has no gateway of its own to ask.
PHASE_STATE: dict[str, str] = {
    ConsolePhase.STARTING: GatewayState.STARTING,
    ConsolePhase.OWNED: GatewayState.STOPPED,
    ConsolePhase.FAILED: GatewayState.STOPPED,
}


def header_state(phase: str, gateway_state: str) -> str:
    """While serving or stopping, the gateway's own state; otherwise what the console is doing."""
    return PHASE_STATE.get(phase, gateway_state)
