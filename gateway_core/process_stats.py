"""CPU and memory of a gateway's process, as an operator's screen shows them.

Kept apart from any widget: the console's header samples the gateway it shows, and anything else
that lists gateways (by PID, in this process or not) can sample them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessStats:
    cpu_percent: float
    rss: int


class ProcessSampler:
    """CPU and RSS of one process at a time, sampled with psutil.

    CPU percent is measured between two calls on the same psutil.Process, so the object is kept
    per PID (an attached console may watch another process than its own).
    """

    def __init__(self) -> None:
        self._process: psutil.Process | None = None

    def __call__(self, pid: int | None) -> ProcessStats | None:
        if pid is None:
            return None
        try:
            if self._process is None or self._process.pid != pid:
                self._process = psutil.Process(pid)
                self._process.cpu_percent(None)  # the first call only starts the measurement
            with self._process.oneshot():
                return ProcessStats(self._process.cpu_percent(None), self._process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._process = None
            return None
