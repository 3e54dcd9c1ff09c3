"""Attach mode: the console on a gateway that runs in another process (usually launchd's).

The gateway is reached through its control socket: one subscription streams snapshots and log
records, and the operations are single requests. The console owns nothing here — `q` detaches,
the gateway keeps serving.

What is on screen must be the truth about the source, not the last thing it said:
- the gateway streams a snapshot every half second; no word for SILENCE_LIMIT seconds (a frozen
  or wedged process keeps its socket open) makes the source `unreachable`, its last snapshot
  shown as stale, and the gateway's log file is followed meanwhile — the only live view left;
- the owner gone (the profile's lock free) makes it `exited`, with launchd's last exit code when
  launchd ran it; the console then offers to serve the profile itself;
- a new owner (launchd restarted it, someone started another) is re-attached to automatically,
  and so is the same owner when it answers again.
Log lines are shown once whichever way they came (socket backlog, live stream, log file), and
renumbered here, so a new owner's records (numbered from 1 again) simply follow the old ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gateway_core.config import Home
from gateway_core.control import ControlError, arequest, log_line_from_dict, subscribe
from gateway_core.health import UNHEALTHY, Health
from gateway_core.logs import LogLine
from gateway_core.logtail import follow_log
from gateway_core.ownership import OwnerInfo, read_owner
from gateway_core.snapshots import GatewaySnapshot, snapshot_from_dict
from gateway_core.threads import in_own_thread

if TYPE_CHECKING:
    from launchd.service import JobView

from .source import OPERATION_TIMEOUT, RESTART_TIMEOUT, Attachment, AttachMode, starting_snapshot

LOG_KEEP = 5000
SILENCE_LIMIT = 3.0  # seconds without a streamed line before the gateway counts as unreachable
RETRY_INTERVAL = 1.0  # seconds between attempts to reach the owner (or find a new one) again
STOP_TIMEOUT = 2.0  # seconds detaching may wait for the follower to end
SEEN_KEEP = 4 * LOG_KEEP  # identities of lines already shown, for dropping repeats


class RemoteSource:
    """A `GatewaySource` for a gateway owned by another process."""

    def __init__(self, home: Home, profile: str, owner: OwnerInfo, clock: Callable[[], float] = time.time):
        self.profile = profile
        self.clock = clock
        self.owner = owner
        self.lock_path: Path = home.lock_file(profile)
        self.socket_path: Path = home.socket_file(profile)
        self.log_path: Path = home.log_file(profile)
        self._snapshot: GatewaySnapshot | None = None
        self._lines: deque[LogLine] = deque(maxlen=LOG_KEEP)
        self._seq = itertools.count(1)
        self._seen: deque[tuple[int, str, str]] = deque(maxlen=SEEN_KEEP)
        self._seen_set: set[tuple[int, str, str]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._log_file_task: asyncio.Task[None] | None = None
        self._created = time.time()
        self._news = asyncio.Event()  # set when a line is kept or the mode changes: news_after wakes the console
        self._mode = AttachMode.CONNECTING
        self.heard_at: float | None = None  # wall-clock time of the owner's last streamed line
        self.why: str = ""  # why the owner is not answering, in words
        self.exit_code: int | None = None  # launchd's record of the owner's exit, when it has one
        self.attaches = 0  # successful subscriptions (the first one and every re-attach)

    # -- reading --------------------------------------------------------------------------------

    @property
    def mode(self) -> AttachMode:
        return self._mode

    @mode.setter
    def mode(self, mode: AttachMode) -> None:
        if mode != self._mode:
            self._news.set()  # UNREACHABLE or EXITED is news: shown at once, not at the next tick
        self._mode = mode

    @property
    def stale(self) -> bool:
        """What is shown is what the gateway said last, not what it says now."""
        return self.mode.stale

    def attachment(self) -> Attachment:
        return Attachment(self.mode, self.owner, self.attaches, self.gone_sentence() if self.stale else "")

    def snapshot(self) -> GatewaySnapshot:
        snap = self._snapshot
        if snap is None:
            snap = starting_snapshot(self.profile, self._created)
            if not self.stale:
                return snap
            # never heard from the gateway: say that, not "starting"
            snap = dataclasses.replace(
                snap, feishu=dataclasses.replace(snap.feishu, state="unknown", detail="no answer")
            )
        if not self.stale:
            return snap
        # The gateway's last word, judged unhealthy for why it is stale; the header names the mode
        # (Reading.attachment), the snapshot keeps the gateway's own state.
        return dataclasses.replace(snap, health=Health(UNHEALTHY, (self.gone_sentence(),)))

    def gone_sentence(self) -> str:
        """Why the panels are stale, in one sentence."""
        if self.mode == AttachMode.EXITED:
            code = f" (code {self.exit_code})" if self.exit_code is not None else ""
            return f"gateway exited{code}: PID {self.owner.pid} no longer owns the profile"
        since = f" for {int(self.clock() - self.heard_at)}s" if self.heard_at else ""
        return f"no answer from PID {self.owner.pid}{since}: {self.why or 'control socket unavailable'}"

    def log_since(self, seq: int) -> list[LogLine]:
        return [line for line in self._lines if line.seq > seq]

    async def news_after(self, seq: int, timeout: float) -> bool:
        # Lines arrive on this loop (the subscription), so an asyncio.Event is enough.
        if self._lines and self._lines[-1].seq > seq:
            return True
        try:  # news that came while the console was drawing is still set: consumed here
            await asyncio.wait_for(self._news.wait(), timeout)
        except TimeoutError:
            return False
        self._news.clear()
        return True

    def redact(self, text: str) -> str:
        """The gateway redacts its own records; this console holds none of its secrets."""
        return text

    def describe(self) -> str:
        who = f"attached to PID {self.owner.pid} ({self.owner.owner})"
        if self.mode == AttachMode.UNREACHABLE:
            return f"{who} · following {self.log_path.name}"
        if self.mode == AttachMode.EXITED:
            return f"was PID {self.owner.pid} ({self.owner.owner}) · following {self.log_path.name}"
        return who

    # -- operations (one request each) ----------------------------------------------------------

    async def switch_model(self, name: str) -> str:
        response = await arequest(self.socket_path, "switch_model", OPERATION_TIMEOUT, model=name)
        return str(response["previous"])

    async def restart_feishu(self) -> bool:
        response = await arequest(self.socket_path, "restart_feishu", RESTART_TIMEOUT)
        return bool(response["restarted"])

    async def rebuild_executor(self) -> None:
        await arequest(self.socket_path, "rebuild_executor", OPERATION_TIMEOUT)

    async def access_request(self, op: str, argument: str | None = None) -> dict[str, Any]:
        response = await arequest(self.socket_path, f"access_{op}", OPERATION_TIMEOUT, argument=argument)
        return {k: v for k, v in response.items() if k not in ("ok", "v")}

    # -- lifecycle: attaching and detaching -----------------------------------------------------

    async def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="attach-follow")

    async def stop(self) -> int:
        """Detach; the remote gateway is not touched."""
        tasks = [t for t in (self._follower, self._log_file_task) if t is not None]
        self._follower = self._log_file_task = None
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: detaching never waits on a stream for long
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        return 0

    @property
    def running(self) -> bool:
        return self._follower is not None and not self._follower.done()

    @property
    def stop_requested(self) -> bool:
        return False

    async def _follow(self) -> None:
        """Attach, notice silence or exit, re-attach to whoever owns the profile next; until detached."""
        while self._follower is not None:  # None once detached
            owner = await in_own_thread(read_owner, self.lock_path)
            if owner is None:
                await self._owner_gone()
            else:
                self.owner = owner
                await self._listen()
            if self.stale:
                self._follow_log_file()
            await asyncio.sleep(RETRY_INTERVAL)  # between tries to reach an owner again

    async def _listen(self) -> None:
        """One subscription, until it ends; marks the source unreachable when it does."""
        try:
            async for event in subscribe(self.socket_path, silence_limit=SILENCE_LIMIT):
                if self.mode != AttachMode.SOCKET:
                    self.attaches += 1
                    self._stop_log_file()
                self.mode, self.heard_at = AttachMode.SOCKET, self.clock()
                if "status" in event:
                    self._snapshot = snapshot_from_dict(event["status"])
                for record in event.get("log", ()):
                    self._show(log_line_from_dict(record))
                if event.get("event") == "log":
                    self._show(log_line_from_dict(event["line"]))
            self.why = "the gateway closed its control socket"
        except (ControlError, ConnectionError, ValueError) as exc:
            # A silent stream is a process that is stopped or stuck; anything else, its own words.
            self.why = "its control socket is silent (stopped or hung?)" if self.mode == AttachMode.SOCKET else str(exc)
        if self.mode != AttachMode.EXITED:
            self.mode = AttachMode.UNREACHABLE

    async def _owner_gone(self) -> None:
        if self.mode == AttachMode.EXITED:
            return
        self.mode = AttachMode.EXITED
        if self.owner.launchd_label:
            self.exit_code = await in_own_thread(_launchd_last_exit, self.owner.launchd_label)

    def _show(self, line: LogLine) -> None:
        """Keep a line unless it was shown already (the backlog of a re-attach, or via the file)."""
        whole = int(line.created)  # milliseconds as the log file's asctime counts them
        identity = (whole * 1000 + int((line.created - whole) * 1000), line.level, line.message)
        if identity in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(identity)
        self._seen_set.add(identity)
        self._lines.append(dataclasses.replace(line, seq=next(self._seq)))
        self._news.set()

    def _follow_log_file(self) -> None:
        if self._log_file_task is None or self._log_file_task.done():
            self._log_file_task = asyncio.get_running_loop().create_task(self._read_log_file(), name="attach-log-file")

    def _stop_log_file(self) -> None:
        if self._log_file_task is not None:
            self._log_file_task.cancel()
            self._log_file_task = None

    async def _read_log_file(self) -> None:
        async for text in follow_log(self.log_path):
            line = parse_log_line(text)
            if line is not None:
                self._show(line)


def parse_log_line(text: str) -> LogLine | None:
    """A gatewatch log file line ('2026-01-01 00:00:00,123 LEVEL logger message') as a LogLine.

    Its own time, level and logger, so the pane prefixes it once; a line in another shape (a
    traceback from an older version, say) is kept whole as an INFO message.
    """
    parts = text.split(" ", 4)
    if len(parts) == 5 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        try:
            stamp, millis = f"{parts[0]} {parts[1]}".split(",")
            # mid-millisecond: the identity's floor is then the millisecond the file says
            at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + (int(millis) + 0.5) / 1000
        except ValueError:
            pass
        else:
            return LogLine(0, at, parts[2], parts[3], parts[4])
    return LogLine(0, time.time(), "INFO", "log file", text) if text.strip() else None


def _launchd_last_exit(label: str) -> int | None:
    """The service manager's last exit status of the job, or None (not a manager's, none here)."""
    job: JobView | None
    try:
        if label.endswith(".service"):  # a systemd unit (launchd/unit.py names them so)
            from launchd.systemctl import Systemctl

            job = Systemctl().show(label)
        else:
            from launchd.launchctl import find_job

            _, job = find_job(label)
    except Exception:  # no launchctl/systemctl on this machine, or it failed: the code is just unknown
        return None
    return job.last_exit_code if job is not None else None
