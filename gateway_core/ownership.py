"""One owner per profile: an flock held for the life of the gateway.

The incident's second act: a restart with `--replace` killed launchd's gateway, launchd respawned
its own, and two gateways fought over one Feishu app. Here a second gateway for a profile is
refused, told who owns it and what to do instead, and never kills anyone. The kernel drops an
flock when its holder dies, so a crashed owner frees the profile by itself — no stale-PID guessing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

OWNER_KINDS = ("console", "headless", "cli")  # cli: `gatewatch access` on a profile nobody serves, briefly


@dataclass(frozen=True)
class OwnerInfo:
    pid: int
    owner: str  # console | headless | cli
    started_at: float
    profile: str = ""
    # The service manager's name for the job that started this gateway: launchd's label
    # (XPC_SERVICE_NAME, set by launchd) or a systemd unit (GATEWATCH_SYSTEMD_UNIT, set by our unit:
    # systemd sets no variable naming the unit).
    launchd_label: str | None = None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        kind = "systemd unit" if (self.launchd_label or "").endswith(".service") else "launchd job"
        managed = f", {kind} {self.launchd_label}" if self.launchd_label else ""
        return f"PID {self.pid} ({self.owner}{managed}, since {since})"


class ProfileBusy(Exception):
    """Another live process holds the profile."""

    def __init__(self, profile: str, holder: OwnerInfo | None):
        self.profile, self.holder = profile, holder
        who = holder.describe() if holder else "another process (owner unknown)"
        manager = "systemd" if holder and (holder.launchd_label or "").endswith(".service") else "launchd"
        super().__init__(
            f"profile '{profile}' is already served by {who}; "
            f"see it with 'gatewatch status', or hand it over with 'gatewatch {manager} takeover --profile {profile}'"
            " — gatewatch never kills the running owner"
        )


class AppIdBusy(Exception):
    """Another live gateway, of another profile, serves the same Feishu app.

    Feishu's long connection runs in cluster mode: two clients of one app split its events at
    random, so half the users would meet the wrong model and history. One gateway per app_id.
    """

    def __init__(self, app_id: str, profile: str, holder: OwnerInfo | None):
        self.app_id, self.profile, self.holder = app_id, profile, holder
        if holder is not None:
            who = f"profile '{holder.profile}' ({holder.describe()})"
        else:
            who = "another gateway (owner unknown)"
        super().__init__(
            f"Feishu app {app_id} of profile '{profile}' is already served by {who}; two gateways on one app "
            f"split its events at random — give '{profile}' an app of its own, or stop the other first"
        )


class ProfileLock:
    """The flock on `run/<profile>.lock`, with the owner's JSON inside for others to read."""

    def __init__(self, path: Path, profile: str):
        self.path, self.profile = path, profile
        self._fd: int | None = None
        self.info: OwnerInfo | None = None

    def acquire(self, owner: str) -> OwnerInfo:
        """Take the lock or raise ProfileBusy; never waits and never touches the holder."""
        if owner not in OWNER_KINDS:
            raise ValueError(f"owner must be one of {OWNER_KINDS}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy(read_owner(self.path)) from None
        info = OwnerInfo(
            pid=os.getpid(),
            owner=owner,
            started_at=time.time(),
            profile=self.profile,
            launchd_label=os.environ.get("XPC_SERVICE_NAME") or os.environ.get("GATEWATCH_SYSTEMD_UNIT") or None,
        )
        payload = json.dumps(asdict(info)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        os.fsync(fd)
        self._fd, self.info = fd, info
        return info

    def _busy(self, holder: OwnerInfo | None) -> Exception:
        return ProfileBusy(self.profile, holder)

    def release(self) -> None:
        """Let go; the file stays (truncated) so a reader never sees a half-written owner."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd, self.info = None, None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "ProfileLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AppIdLock(ProfileLock):
    """The flock on `run/apps/<app_id>.lock`, beside the profile's: one gateway per Feishu app.

    Taken right after the profile's lock and released right before it, held the same way (the
    kernel drops it when its holder dies, kill -9 included), with the same owner JSON inside,
    which names the profile, for the refused gateway's one line and for the fleet view.
    """

    def __init__(self, path: Path, app_id: str, profile: str):
        super().__init__(path, profile)
        self.app_id = app_id

    def _busy(self, holder: OwnerInfo | None) -> Exception:
        return AppIdBusy(self.app_id, self.profile, holder)


def app_lock_file(run: Path, app_id: str) -> Path:
    """Where the app's lock lives: run/apps/, apart from the profiles' run/*.lock (which `status`
    and the fleet read as profiles). Named by the app_id itself when it is a plain word (Feishu's
    are `cli_` and hex), else by a digest, so no app_id can walk out of the directory."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", app_id):
        return run / "apps" / f"{app_id}.lock"
    return run / "apps" / f"{hashlib.sha256(app_id.encode()).hexdigest()[:24]}.lock"


def read_owner(path: Path) -> OwnerInfo | None:
    """Who holds the profile now, or None.

    Reads the owner's JSON and checks that process is alive and is the one that wrote it (its
    start time is not after the lock's). It never probes the flock itself: a probe could make a
    gateway starting at that instant believe the profile is taken.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw or b"{}")
        info = OwnerInfo(
            pid=int(data["pid"]),
            owner=str(data["owner"]),
            started_at=float(data["started_at"]),
            profile=str(data.get("profile", "")),
            launchd_label=data.get("launchd_label"),
        )
    except (ValueError, KeyError, TypeError):
        return None
    try:
        process = psutil.Process(info.pid)
        created = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return info if created <= info.started_at + 1.0 else None
