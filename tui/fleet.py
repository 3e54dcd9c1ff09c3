"""Where the fleet view's rows come from: the gateways (gateway_core/fleet.py) and the service
manager (launchd/fleet.py), put together — the console is the one layer that knows both.

`FleetSource` is what the fleet screen reads; `LiveFleet` is the real one, and tests of the
screen give it frozen rows. Reading (`rows`) is cheap and never blocks; `watch` runs the
subscriptions on the console's loop (a worker), `sample_services` blocks (a thread worker).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Protocol

from gateway_core.config import Home
from gateway_core.fleet import FleetRow, FleetWatch
from gateway_core.states import FleetVerdict, OwnerKind
from launchd.fleet import SAMPLE_INTERVAL, DoctorFile, ForeignJob, ServiceView, ServiceWatch

__all__ = ["SAMPLE_INTERVAL", "FleetSource", "LiveFleet"]


class FleetSource(Protocol):
    home: Home | None

    def rows(self) -> list[FleetRow]: ...

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Follow every gateway until cancelled, calling `on_change` when a row's verdict changes."""
        ...

    def sample_services(self) -> bool | None:
        """One look at the service manager and the doctor's files (blocking); True if it changed,
        None if it cannot look yet (the profiles are not known yet)."""
        ...

    def doctor_file(self, row: FleetRow) -> DoctorFile | None: ...

    @property
    def manager_name(self) -> str: ...


class LiveFleet:
    def __init__(self, home: Home, services: ServiceWatch | None = None, clock: Callable[[], float] = time.time):
        self.home: Home | None = home
        self.gateways = FleetWatch(home, clock=clock)
        self.services = services
        self._views: dict[str, ServiceView] = {}
        self._foreign: list[ForeignJob] = []

    @property
    def manager_name(self) -> str:
        return self.services.name if self.services is not None else "launchd"

    async def watch(self, on_change: Callable[[], None]) -> None:
        self.gateways.on_change = on_change
        await self.gateways.run()

    def sample_services(self) -> bool | None:
        if self.services is None:
            return False
        if not self.gateways.scanned:
            return None  # the profiles first: a job's row must not come before its profile's
        profiles = [row.profile for row in self.gateways.rows()]
        was = self._views, self._foreign
        self._views, self._foreign = self.services.sample(profiles)
        return (self._views, self._foreign) != was

    def doctor_file(self, row: FleetRow) -> DoctorFile | None:
        if self.services is None:
            return None
        return self.services.doctor_file(row.label if row.foreign and row.label else row.profile)

    def rows(self) -> list[FleetRow]:
        rows = [with_service(row, self._views.get(row.profile)) for row in self.gateways.rows()]
        known = {row.profile for row in rows}
        # A job of ours for a profile with no file and no gateway: it would exit 2 at every start.
        for profile, view in sorted(self._views.items()):
            if profile not in known and view.installed:
                missing = FleetRow(
                    profile, FleetVerdict.INVALID, reason="a job is installed but the profile has no file"
                )
                rows.append(with_service(missing, view))
        rows.extend(foreign_row(job) for job in self._foreign)
        return rows


def with_service(row: FleetRow, view: ServiceView | None) -> FleetRow:
    """The row with its job's state and the doctor's findings; a stopped profile says how its job ended."""
    if view is None:
        return row
    reason = row.reason
    if row.verdict == FleetVerdict.STOPPED and not reason and view.state not in ("not installed", "loaded"):
        reason = f"{view.state}"
    return dataclasses.replace(row, service=view.state, findings=(*view.findings, *row.findings), reason=reason)


def foreign_row(job: ForeignJob) -> FleetRow:
    """Another gateway's job: not ours to run, shown for what the doctor finds in it."""
    first = job.findings[0] if job.findings else "another gateway's job"
    return FleetRow(
        profile=job.label,
        verdict=None,
        reason=f"doctor: {first}",
        owner=OwnerKind.LAUNCHD if job.path.suffix == ".plist" else OwnerKind.SYSTEMD,
        service=job.state,
        findings=job.findings,
        foreign=True,
        label=job.label,
    )
