"""One look at the source: everything the main screen draws, taken at the same moment.

The app's refresh timer makes a `Reading` and sets it on the main screen; the panels are bound to
it and render from it (a frozen reading always draws the same screen: the SVG tests rely on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gateway_core.process_stats import ProcessStats
from gateway_core.snapshots import GatewaySnapshot

from .source import Attachment, GatewaySource


@dataclass(frozen=True)
class Reading:
    snapshot: GatewaySnapshot
    now: float
    described: str  # who serves the profile, in words (the source's own description)
    stats: ProcessStats | None  # CPU and RSS of the gateway's process, when it can be sampled
    attachment: Attachment | None  # None: served in this process; else how the owner is heard

    @property
    def stale(self) -> bool:
        """Attached to a gateway that stopped answering or exited: this is its last word."""
        return self.attachment is not None and self.attachment.stale


def read_source(
    source: GatewaySource,
    clock: Callable[[], float],
    process_stats: Callable[[int | None], ProcessStats | None],
) -> Reading:
    snapshot = source.snapshot()
    return Reading(
        snapshot=snapshot,
        now=clock(),
        described=source.describe(),
        stats=process_stats(snapshot.owner.pid if snapshot.owner else None),
        attachment=source.attachment(),
    )
