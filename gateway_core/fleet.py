"""The fleet: every profile of this gatewatch home at a glance, live — what the console's fleet view draws.

For each file under profiles/ (and each lock left in run/ for a profile whose file is gone): who
owns it (its lock), and what the owner itself says over its control socket — one subscription per
running gateway, the same stream an attached console reads. From that, one row per profile with a
`FleetVerdict`: the gateway's own health verdict while it answers; UNREACHABLE when its stream
has been silent for `silence_limit` (a frozen or wedged owner keeps its socket open, so only the
silence tells), and again its own verdict as soon as it answers; STOPPED when nobody owns it;
INVALID when its file would not load. Two profiles on one Feishu app are flagged on both rows:
Feishu would split the app's events between them at random.

No UI and no service manager here: the console adds the service manager's view (launchd/fleet.py)
to these rows, and draws them. Everything runs on the caller's event loop; file and process
reads go to a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .config import ConfigError, Home, load_profile
from .control import ControlError, subscribe
from .ownership import OwnerInfo, read_owner
from .states import FleetVerdict, OwnerKind
from .threads import in_own_thread

SILENCE_LIMIT = 5.0  # seconds without a streamed snapshot before an owner counts as unreachable
SNAPSHOT_EVERY = 2  # one snapshot a second from each gateway is enough for a row (the default: two)
SCAN_INTERVAL = 2.0  # seconds between looks at profiles/ and the locks: a start or stop shows within 3 s
RETRY_INTERVAL = 1.0  # seconds between attempts to reach a silent owner again
RATE_STEP = 10.0  # seconds per bar of the messages/minute sparkline
RATE_STEPS = 12  # bars: the last two minutes


@dataclass(frozen=True)
class FleetRow:
    """One profile (or one foreign gateway job) as the fleet view shows it."""

    profile: str
    verdict: FleetVerdict | None  # None: a foreign gateway's job, not a gatewatch profile
    reason: str = ""  # the verdict's first reason, or why there is none
    owner: OwnerKind = OwnerKind.NONE
    pid: int | None = None
    started_at: float | None = None  # the owner's start (uptime = now - started_at)
    feishu: str | None = None
    model: str | None = None
    models: tuple[str, ...] = ()  # what `m` may switch to
    per_minute: int | None = None  # messages received in the last minute
    rate: tuple[int, ...] = ()  # messages per RATE_STEP, oldest first (the sparkline)
    pending: int | None = None
    oldest_pending_at: float | None = None
    service: str = ""  # the service manager's state of its job, in words (launchd/fleet.py)
    findings: tuple[str, ...] = ()  # doctor findings and fleet findings (a shared Feishu app)
    app_id: str | None = None
    foreign: bool = False  # another gateway's job, found by the doctor
    label: str | None = None  # the service manager's job name, when it has one

    @property
    def live(self) -> bool:
        """Its owner answers: operations over its control socket can run."""
        return self.verdict in (FleetVerdict.HEALTHY, FleetVerdict.DEGRADED, FleetVerdict.UNHEALTHY)


def owner_kind(owner: OwnerInfo | None) -> OwnerKind:
    """Who runs the gateway, from what it wrote in its lock."""
    if owner is None:
        return OwnerKind.NONE
    if owner.owner == "headless" and owner.launchd_label:
        return OwnerKind.SYSTEMD if owner.launchd_label.endswith(".service") else OwnerKind.LAUNCHD
    return OwnerKind.CONSOLE if owner.owner == "console" else OwnerKind.HEADLESS


@dataclass
class _Watched:
    """What the fleet knows about one profile; changed on the loop only."""

    name: str
    owner: OwnerInfo | None = None
    problem: str | None = None  # why the profile would not load
    app_id: str | None = None
    status: dict[str, Any] | None = None  # the owner's last streamed status (control-socket JSON)
    heard_at: float | None = None
    answering: bool = False
    why: str = ""
    follower: asyncio.Task[None] | None = None
    received: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_STEPS + 1))


class FleetWatch:
    """Keeps one subscription per running gateway and a look at every profile, until stopped."""

    def __init__(
        self,
        home: Home,
        clock: Callable[[], float] = time.time,
        silence_limit: float = SILENCE_LIMIT,
        on_change: Callable[[], None] | None = None,
    ):
        self.home = home
        self.clock = clock
        self.silence_limit = silence_limit
        self.on_change = on_change or (lambda: None)
        self._watched: dict[str, _Watched] = {}
        self._profiles_seen: dict[str, float] = {}  # profile file -> mtime, loaded again when it changes
        self.scanned = False  # the first scan is done: the rows name every profile

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Scan and follow until cancelled; the followers end with it."""
        try:
            while True:
                await self.scan()
                await asyncio.sleep(SCAN_INTERVAL)  # the scan period: starts and stops show within it
        finally:
            followers = [w.follower for w in self._watched.values() if w.follower is not None]
            for task in followers:
                task.cancel()
            for task in followers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def scan(self) -> None:
        """Profiles and owners as they are now; start or end subscriptions to match."""
        found = await in_own_thread(self._look)
        changed = False
        for name in [n for n in self._watched if n not in found]:
            self._forget(self._watched.pop(name))
            changed = True
        for name, (owner, problem, app_id) in found.items():
            watched = self._watched.setdefault(name, _Watched(name))
            if (watched.problem, watched.app_id) != (problem, app_id):
                watched.problem, watched.app_id, changed = problem, app_id, True
            if _same_owner(watched.owner, owner):
                continue
            changed = True
            self._forget(watched)
            watched.owner = owner
            if owner is not None:
                watched.follower = asyncio.get_running_loop().create_task(self._follow(watched), name=f"fleet-{name}")
        self.scanned = True
        if changed:
            self.on_change()

    def _look(self) -> dict[str, tuple[OwnerInfo | None, str | None, str | None]]:
        """(owner, problem, app_id) per profile — on a thread: files and processes are read."""
        names = set(self.home.profile_names())
        if self.home.run.is_dir():
            names |= {p.stem for p in self.home.run.glob("*.lock")}
        found = {}
        for name in sorted(names):
            problem, app_id = self._load(name)
            found[name] = (read_owner(self.home.lock_file(name)), problem, app_id)
        return found

    def _load(self, name: str) -> tuple[str | None, str | None]:
        """Whether the profile loads (secrets aside: launchd's environment is not ours), and its app."""
        path = self.home.profiles / f"{name}.toml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return "no profile file (a gateway still holds its lock)", None
        watched = self._watched.get(name)
        if watched is not None and self._profiles_seen.get(name) == mtime:
            return watched.problem, watched.app_id
        self._profiles_seen[name] = mtime
        try:
            profile = load_profile(self.home, name, require_secrets=False)
        except ConfigError as error:
            return str(error).removeprefix(f"{path}: "), None
        return None, profile.feishu.app_id

    def _forget(self, watched: _Watched) -> None:
        if watched.follower is not None:
            watched.follower.cancel()
        watched.follower, watched.status, watched.heard_at, watched.answering, watched.why = None, None, None, False, ""
        watched.received.clear()

    async def _follow(self, watched: _Watched) -> None:
        """One owner's stream, again after each silence, until its owner changes."""
        path = self.home.socket_file(watched.name)
        while True:
            try:
                async for event in subscribe(path, silence_limit=self.silence_limit, every=SNAPSHOT_EVERY):
                    status = event.get("status")
                    if status is None:
                        continue  # a log line: the fleet shows none
                    self._heard(watched, status)
                watched.why = "it closed its control socket"
            except (ControlError, ConnectionError, OSError, ValueError) as exc:
                silent = watched.answering or watched.heard_at is not None
                watched.why = "its control socket is silent (stopped or hung?)" if silent else str(exc)
            if watched.answering:
                watched.answering = False
                self.on_change()
            await asyncio.sleep(RETRY_INTERVAL)  # between attempts to reach it again

    def _heard(self, watched: _Watched, status: dict[str, Any]) -> None:
        now = self.clock()
        was = watched.answering, _shown_of(watched.status)
        watched.status, watched.heard_at, watched.answering = status, now, True
        received = int((status.get("pipeline") or {}).get("received") or 0)
        if not watched.received or now - watched.received[-1][0] >= RATE_STEP:
            watched.received.append((now, received))
        if was != (True, _shown_of(status)):
            self.on_change()  # only news: the same status twice a second redraws nothing

    # -- reading --------------------------------------------------------------------------------

    def rows(self) -> list[FleetRow]:
        """One row per profile, by name; cheap (the stream's last word, nothing is asked)."""
        now = self.clock()
        rows = [self._row(w, now) for w in sorted(self._watched.values(), key=lambda w: w.name)]
        return flag_shared_apps(rows)

    def _row(self, watched: _Watched, now: float) -> FleetRow:
        owner = watched.owner
        base = FleetRow(profile=watched.name, verdict=FleetVerdict.STOPPED, app_id=watched.app_id)
        if owner is None:
            if watched.problem:
                return _replace(base, verdict=FleetVerdict.INVALID, reason=watched.problem)
            return base
        base = _replace(
            base, owner=owner_kind(owner), pid=owner.pid, started_at=owner.started_at, label=owner.launchd_label
        )
        status = watched.status
        if status is not None:
            base = _with_status(base, status, watched.received, now)
        if watched.answering and status is not None:
            return base
        if watched.heard_at is None:
            return _replace(base, verdict=FleetVerdict.UNREACHABLE, reason=f"no answer yet from PID {owner.pid}")
        silent = int(now - watched.heard_at)
        return _replace(
            base,
            verdict=FleetVerdict.UNREACHABLE,
            reason=f"no answer from PID {owner.pid} for {silent}s: {watched.why or 'control socket unavailable'}",
        )


def _with_status(row: FleetRow, status: dict[str, Any], received: deque[tuple[float, int]], now: float) -> FleetRow:
    """What the owner said about itself: its verdict (judged by the owner, never here), and its figures."""
    health = status.get("health") or {}
    reasons = health.get("reasons") or []
    pipeline = status.get("pipeline") or {}
    models = status.get("models") or {}
    rate = _rate(received)
    return _replace(
        row,
        verdict=FleetVerdict(health.get("verdict") or FleetVerdict.UNHEALTHY),
        reason=str(reasons[0]) if reasons else "",
        feishu=(status.get("feishu") or {}).get("state"),
        model=models.get("active"),
        models=tuple(m["name"] for m in models.get("models") or ()),
        per_minute=sum(rate[-int(60 / RATE_STEP) :]) if rate else 0,
        rate=rate,
        pending=pipeline.get("pending"),
        oldest_pending_at=pipeline.get("oldest_pending_at"),
    )


def _rate(received: deque[tuple[float, int]]) -> tuple[int, ...]:
    """Messages per step from the received counter sampled about every RATE_STEP seconds."""
    samples = list(received)
    return tuple(max(0, b[1] - a[1]) for a, b in zip(samples, samples[1:]))


def _shown_of(status: dict[str, Any] | None) -> tuple[Any, ...]:
    """What a row shows of a status that is news when it changes (ages and counts in reasons are
    not: they move every second, and the view redraws those on its own slower clock)."""
    status = status or {}
    pipeline = status.get("pipeline") or {}
    return (
        (status.get("health") or {}).get("verdict"),
        (status.get("feishu") or {}).get("state"),
        (status.get("models") or {}).get("active"),
        pipeline.get("pending"),
        pipeline.get("received"),
    )


def _same_owner(a: OwnerInfo | None, b: OwnerInfo | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.pid, a.started_at) == (b.pid, b.started_at)


def _replace(row: FleetRow, **changes: Any) -> FleetRow:
    return replace(row, **changes)


def flag_shared_apps(rows: list[FleetRow]) -> list[FleetRow]:
    """Profiles on one Feishu app get a finding each: only one of them can serve it at a time."""
    by_app: dict[str, list[str]] = {}
    for row in rows:
        if row.app_id and not row.foreign:
            by_app.setdefault(row.app_id, []).append(row.profile)
    flagged = []
    for row in rows:
        others = [p for p in by_app.get(row.app_id or "", []) if p != row.profile]
        if others:
            finding = (
                f"shares Feishu app {row.app_id} with {', '.join(repr(o) for o in others)}: Feishu would split "
                "its events between them, so only one can serve it (the other is refused, exit 3)"
            )
            row = _replace(row, findings=(*row.findings, finding))
        flagged.append(row)
    return flagged
