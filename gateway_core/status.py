"""`gatewatch status`: is each profile's gateway really alive — not just "a process exists"?

For every profile: who owns it (from the lock), and what the owner itself says over its control
socket — its health model's verdict (health.py) and the reasons, as the console shows them. A
gateway whose process lives but whose executor is dead, whose WebSocket is down, whose replies are
refused or whose models do not answer is the "empty shell" of the incident, and is reported
unhealthy (exit 1); so is one that does not answer on its socket.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from .access import AccessSnapshot, pending_codes
from .config import ConfigError, Home, Profile, load_profile
from .control import ControlError, request
from .health import DEGRADED, HEALTHY, UNHEALTHY
from .journal import peek_access, peek_pending
from .ownership import read_owner
from .states import GatewayState


@dataclass(frozen=True)
class ProfileStatus:
    profile: str
    owner: str  # console | headless | launchd-managed headless | systemd-managed headless | none
    pid: int | None = None  # the rest is None when nothing runs
    uptime: float | None = None
    feishu: str | None = None
    executor: str | None = None
    model: str | None = None
    last_message_age: float | None = None
    healthy: bool | None = None
    problem: str | None = None
    pending: int | None = None  # journaled messages not yet answered (None: no journal yet)
    oldest_pending_age: float | None = None
    state: str = GatewayState.RUNNING  # running | stopped | invalid (not running, and could not start as it is)
    verdict: str | None = None  # healthy | degraded | unhealthy (health.py); None when nothing runs
    reasons: tuple[str, ...] = ()  # the verdict's reasons, worst first
    # Who may talk to the bot (issue 19): policy, declared (False: no [access], anyone is answered),
    # answers_anyone, pending (pairing requests, codes masked), refused_last_hour. None: unknown.
    access: dict[str, Any] | None = None


def collect_status(home: Home, timeout: float = 3.0) -> list[ProfileStatus]:
    names = set(home.profile_names())
    if home.run.is_dir():
        names |= {p.stem for p in home.run.glob("*.lock")}
    return [profile_status(home, name, timeout) for name in sorted(names)]


def profile_status(home: Home, name: str, timeout: float = 3.0) -> ProfileStatus:
    owner = read_owner(home.lock_file(name))
    if owner is None:
        return _not_running(home, name)
    kind = owner.owner
    if owner.owner == "headless" and owner.launchd_label:
        kind = f"{'systemd' if owner.launchd_label.endswith('.service') else 'launchd'}-managed headless"
    try:
        status = request(home.socket_file(name), "status", timeout=timeout)["status"]
    except ControlError as exc:
        reason = f"control socket: {exc}"
        return ProfileStatus(
            profile=name,
            owner=kind,
            pid=owner.pid,
            uptime=time.time() - owner.started_at,
            healthy=False,
            problem=reason,
            verdict=UNHEALTHY,
            reasons=(reason,),
        )
    last = status["pipeline"].get("last_message_at")
    oldest = status["pipeline"].get("oldest_pending_at")
    health = status.get("health") or {}
    verdict = health.get("verdict") or (UNHEALTHY if not status["healthy"] else HEALTHY)
    reasons = tuple(health.get("reasons") or ())
    return ProfileStatus(
        profile=name,
        owner=kind,
        pid=owner.pid,
        access=_access(status["pipeline"].get("access")),
        uptime=status["uptime"],
        feishu=status["feishu"]["state"],
        executor=status["executor"]["state"],
        model=status["models"]["active"],
        last_message_age=time.time() - last if last else None,
        healthy=bool(status["healthy"]),
        problem="; ".join(reasons) or None,
        pending=status["pipeline"].get("pending"),
        oldest_pending_age=time.time() - oldest if oldest else None,
        verdict=verdict,
        reasons=reasons,
    )


def _not_running(home: Home, name: str) -> ProfileStatus:
    """Stopped, or invalid: a profile that would refuse to start is worth saying so before anyone tries.

    Secrets are not required here: `status` runs in a shell whose environment is not the one the
    gateway gets (launchd passes none), so a missing one is `profile show`'s to report.
    """
    # Nobody serves it, but its journal may hold messages waiting for the next owner.
    backlog = peek_pending(home.state_file(name))
    pending = backlog.pending if backlog else None
    oldest = time.time() - backlog.oldest_pending_at if backlog and backlog.oldest_pending_at else None
    try:
        profile = load_profile(home, name, require_secrets=False)
    except ConfigError as error:
        why = str(error).removeprefix(f"{home.profiles / name}.toml: ")
        return ProfileStatus(
            profile=name,
            owner="none",
            problem=why,
            state="invalid",
            pending=pending,
            oldest_pending_age=oldest,
        )
    return ProfileStatus(
        profile=name,
        owner="none",
        state=GatewayState.STOPPED,
        pending=pending,
        oldest_pending_age=oldest,
        access=_access(asdict(_stored_access(home, profile))),
    )


def _stored_access(home: Home, profile: Profile) -> AccessSnapshot:
    """What the journal of a profile nobody serves says about access (read-only)."""
    now = time.time()
    stored = peek_access(home.state_file(profile.name), now - 3600.0)
    records, refused = stored if stored is not None else ([], 0)
    return AccessSnapshot(
        policy=profile.access.dm_policy,
        declared=profile.access.declared,
        pending=pending_codes(records, now),
        refused_last_hour=refused,
    )


def _access(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `access` object of `status --json`; None when the gateway sent none (an older one)."""
    if not snapshot:
        return None
    return {
        "policy": snapshot["policy"],
        "declared": snapshot["declared"],
        "answers_anyone": not snapshot["declared"] or snapshot["policy"] == "open",
        "pending": [
            {
                "open_id": p["open_id"],
                "chat_id": p["chat_id"],
                "requested_at": p["requested_at"],
                "code": p["masked_code"],
            }
            for p in snapshot.get("pending", [])
        ],
        "refused_last_hour": snapshot.get("refused_last_hour", 0),
    }


def render_status(statuses: list[ProfileStatus], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(s) for s in statuses], indent=2)
    if not statuses:
        return "no profiles; create one with: gatewatch profile init default"
    rows = [("PROFILE", "OWNER", "PID", "UPTIME", "FEISHU", "EXECUTOR", "MODEL", "LAST MSG", "PENDING", "HEALTH")]
    for s in statuses:
        if s.state == "invalid":
            health = f"invalid: {s.problem}"
        elif s.healthy is None:
            health = "stopped"
        else:
            health = _verdict(s)
        rows.append(
            (
                s.profile,
                s.owner,
                str(s.pid or "-"),
                _age(s.uptime),
                s.feishu or "-",
                s.executor or "-",
                s.model or "-",
                _age(s.last_message_age),
                _pending(s),
                health,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(table + [note for s in statuses for note in _access_notes(s)])


def _access_notes(status: ProfileStatus) -> list[str]:
    """Lines under the table: a profile that answers anyone, pairing requests waiting."""
    access = status.access
    if access is None or status.state == "invalid":
        return []
    notes = []
    if not access["declared"]:
        notes.append(f"{status.profile}: answers anyone (no [access] section in the profile)")
    if access["pending"]:
        notes.append(
            f"{status.profile}: {len(access['pending'])} pairing requests waiting:"
            f" gatewatch access list --profile {status.profile}"
        )
    return notes


def status_exit_code(statuses: list[ProfileStatus]) -> int:
    """0 when every running profile is healthy, 1 otherwise."""
    return 0 if all(s.healthy is not False for s in statuses) else 1


def _verdict(status: ProfileStatus) -> str:
    """The health model's word, upper case when it needs a look, and its reasons."""
    word = status.verdict or (HEALTHY if status.healthy else UNHEALTHY)
    if word in (DEGRADED, UNHEALTHY):
        word = word.upper()
    return f"{word}: {'; '.join(status.reasons)}" if status.reasons else word


def _pending(status: ProfileStatus) -> str:
    if not status.pending:
        return "-" if status.pending is None else "0"
    return f"{status.pending} (oldest {_age(status.oldest_pending_age)})"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
