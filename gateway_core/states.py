"""The named states of the gateway's parts, and the health verdict judged from them.

They are `StrEnum`s: a member equals its word ("connected" == FeishuState.CONNECTED), formats as
that word and is written by `json.dumps` as that word, so the control socket's JSON and every
snapshot rebuilt from it stay plain strings while the code names each state once, here.
"""

from __future__ import annotations

from enum import StrEnum


class FeishuState(StrEnum):
    """The Feishu long connection (feishu.py)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


class ExecutorState(StrEnum):
    """The held thread pool (executor.py), as its probes see it."""

    STARTING = "starting"  # no pool yet: what the console shows before the gateway exists
    HEALTHY = "healthy"
    BUSY = "busy"
    DEGRADED = "degraded"  # the queue moves, but slower than the probe deadline
    REPLACED = "replaced"  # rebuilt recently
    DEAD = "dead"


class GatewayState(StrEnum):
    """The gateway as a whole (gateway.py)."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Verdict(StrEnum):
    """The health model's one verdict (health.py): do users get answers?"""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class DmPolicy(StrEnum):
    """Who may talk to the bot in a direct message (access.py, profile key access.dm_policy)."""

    PAIRING = "pairing"  # a stranger gets a code the owner approves
    ALLOWLIST = "allowlist"  # only access.allow and approved open_ids; others a polite refusal
    OPEN = "open"  # anyone in the tenant (also a profile without [access])


class InboxState(StrEnum):
    """A journaled message's state (journal.py). `refused`: stopped at the access gate, final."""

    RECEIVED = "received"
    ANSWERING = "answering"
    ANSWERED = "answered"
    APOLOGISED = "apologised"
    DROPPED = "dropped"
    REFUSED = "refused"


class FleetVerdict(StrEnum):
    """A profile's verdict in the console's fleet view (gateway_core/fleet.py).

    The health model's three for a gateway that answers — the same words as `Verdict`, judged by
    the gateway itself — and, for one with no verdict to give, why: its owner does not answer
    (UNREACHABLE), nobody serves it (STOPPED), or it could not start as it is written (INVALID).
    """

    HEALTHY = Verdict.HEALTHY.value
    DEGRADED = Verdict.DEGRADED.value
    UNHEALTHY = Verdict.UNHEALTHY.value
    UNREACHABLE = "unreachable"
    STOPPED = "stopped"
    INVALID = "invalid"


class OwnerKind(StrEnum):
    """Who runs a profile's gateway, as the fleet view names it."""

    LAUNCHD = "launchd"  # a headless gateway its LaunchAgent started
    SYSTEMD = "systemd"  # a headless gateway its systemd --user unit started
    CONSOLE = "console"
    HEADLESS = "headless"  # started by hand (`gatewatch run --headless`), no service manager
    NONE = "none"
