"""Attach mode: the console on a gateway that runs in another process (usually launchd's).

The gateway is reached through its control socket: one subscription streams snapshots and log
records, and the operations are single requests. The console owns nothing here — `q` detaches,
the gateway keeps serving. If the socket does not answer, the gateway's log file is followed
instead (and the screen says so), because the log is then the only live view there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections import deque
from pathlib import Path

from gateway_core.config import Home
from gateway_core.control import ControlError, arequest, log_line_from_dict, snapshot_from_dict, subscribe
from gateway_core.gateway import GatewaySnapshot
from gateway_core.logs import LogLine
from gateway_core.logtail import follow_log
from gateway_core.ownership import OwnerInfo

from .source import starting_snapshot

LOG_KEEP = 5000
OPERATION_TIMEOUT = 5.0
RESTART_TIMEOUT = 20.0


class RemoteSource:
    """A `GatewaySource` for a gateway owned by another process."""

    def __init__(self, home: Home, profile: str, owner: OwnerInfo):
        self.profile = profile
        self.owner = owner
        self.socket_path: Path = home.socket_file(profile)
        self.log_path: Path = home.log_file(profile)
        self._snapshot: GatewaySnapshot | None = None
        self._lines: deque[LogLine] = deque(maxlen=LOG_KEEP)
        self._follower: asyncio.Task | None = None
        self._created = time.time()
        self.mode = "connecting"  # socket | log file | connecting

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> GatewaySnapshot:
        if self._snapshot is not None:
            return self._snapshot
        waiting = starting_snapshot(self.profile, self._created)
        if self.mode == "log file":  # never heard from the gateway: say that, not "starting"
            feishu = dataclasses.replace(waiting.feishu, state="unknown", detail="no control socket")
            return dataclasses.replace(waiting, state="unreachable", feishu=feishu)
        return waiting

    def log_since(self, seq: int) -> list[LogLine]:
        return [line for line in self._lines if line.seq > seq]

    def redact(self, text: str) -> str:
        """The gateway redacts its own records; this console holds none of its secrets."""
        return text

    def describe(self) -> str:
        who = f"attached to PID {self.owner.pid} ({self.owner.owner})"
        if self.mode == "log file":
            return f"{who} — control socket unavailable, following {self.log_path.name}"
        return who

    # -- operations (one request each) ----------------------------------------------------------

    async def switch_model(self, name: str) -> str:
        response = await arequest(self.socket_path, "switch_model", OPERATION_TIMEOUT, model=name)
        return response["previous"]

    async def restart_feishu(self) -> bool:
        response = await arequest(self.socket_path, "restart_feishu", RESTART_TIMEOUT)
        return bool(response["restarted"])

    async def rebuild_executor(self) -> None:
        await arequest(self.socket_path, "rebuild_executor", OPERATION_TIMEOUT)

    # -- lifecycle: attaching and detaching -----------------------------------------------------

    async def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="attach-follow")

    async def stop(self) -> int:
        """Detach; the remote gateway is not touched."""
        if self._follower:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        return 0

    @property
    def running(self) -> bool:
        return self._follower is not None and not self._follower.done()

    @property
    def stop_requested(self) -> bool:
        return False

    async def _follow(self) -> None:
        try:
            async for event in subscribe(self.socket_path):
                self.mode = "socket"
                if "status" in event:
                    self._snapshot = snapshot_from_dict(event["status"])
                for record in event.get("log", ()):
                    self._lines.append(log_line_from_dict(record))
                if event.get("event") == "log":
                    self._lines.append(log_line_from_dict(event["line"]))
        except (ControlError, ConnectionError, ValueError):
            pass
        # The socket is gone or never answered: the log file is what is left to watch, and what
        # was last heard is no longer the gateway's state.
        self.mode = "log file"
        if self._snapshot is not None:
            self._snapshot = dataclasses.replace(self._snapshot, state="unreachable")
        seq = itertools.count(max((line.seq for line in self._lines), default=0) + 1)
        async for text in follow_log(self.log_path):
            level = _level_of(text)
            self._lines.append(LogLine(next(seq), time.time(), level, "log file", text))


def _level_of(line: str) -> str:
    """The level field of a gatewatch log line ('date time LEVEL logger message')."""
    parts = line.split(" ", 3)
    return parts[2] if len(parts) > 2 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"
