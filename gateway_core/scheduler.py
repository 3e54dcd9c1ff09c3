"""The answer scheduler: at most `max_in_flight` answers at once, one at a time per chat.

Why both rules: a chat's turns must be answered in order (its history is the context of the next
turn, and replies must not overtake each other), while different chats are independent and each
mostly waits on a model for seconds. So concurrency is a setting (`gateway.max_in_flight`), not
a thread count: an answer in progress is one asyncio task, a queued one is a tuple.

Whatever feeds the gateway — a Feishu event now, a journal re-drive after a restart — submits
here, so every answer goes through the same limit. Jobs of one chat run in the order they were
submitted; chats waiting for a free slot are served first come, first served, and a chat with
more turns queued goes to the back of the line after each one, so a busy chat cannot starve the
others. Must be used on one event loop (the gateway's).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from .config.schema import Profile

log = logging.getLogger("gatewatch.scheduler")

DEFAULT_MAX_IN_FLIGHT = Profile.max_in_flight  # the declared default of gateway.max_in_flight

Job = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class SchedulerSnapshot:
    max_in_flight: int
    running: int  # answers in progress
    queued: int  # answers waiting for their chat's turn or for a free slot
    chats_waiting: int  # chats with a turn waiting for a free slot


class AnswerScheduler:
    """Runs submitted jobs as tasks: one per key at a time, at most `max_in_flight` in all."""

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._pending: dict[str, deque[tuple[Job, tuple[Any, ...]]]] = {}  # per key, FIFO
        self._running_keys: set[str] = set()
        self._ready: deque[str] = deque()  # keys with a job waiting and none running, FIFO
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: str, job: Job, *args: Any) -> None:
        """Run `job(*args)` after the jobs already submitted for `key`, when a slot is free.

        The coroutine is created only when the job starts, so a queued job costs no task.
        """
        queue = self._pending.setdefault(key, deque())
        queue.append((job, args))
        self._unfinished += 1
        self._idle.clear()
        if len(queue) == 1 and key not in self._running_keys:
            self._ready.append(key)
        self._start_ready()

    def _start_ready(self) -> None:
        loop = asyncio.get_running_loop()
        while self._ready and len(self._tasks) < self.max_in_flight:
            key = self._ready.popleft()
            job, args = self._pending[key].popleft()
            self._running_keys.add(key)
            task: asyncio.Task[Any] = loop.create_task(job(*args))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._running_keys.discard(key)
        self._unfinished -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("an answer failed unexpectedly", exc_info=task.exception())
        if self._pending.get(key):
            self._ready.append(key)  # its next turn queues behind the chats already waiting
        else:
            self._pending.pop(key, None)
        if self._unfinished == 0:
            self._idle.set()
        self._start_ready()

    async def wait_idle(self, timeout: float) -> int:
        """Wait until every submitted job finished; return how many were unfinished at the deadline."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self._unfinished

    async def cancel_all(self) -> int:
        """Drop the queued jobs and cancel the running ones; return how many were unfinished.

        For a stop past its drain deadline: the jobs' own records (the journal) say what is left.
        """
        unfinished = self._unfinished
        dropped = sum(len(queue) for queue in self._pending.values())
        self._pending.clear()
        self._ready.clear()
        self._unfinished -= dropped
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return unfinished

    @property
    def running(self) -> int:
        return len(self._tasks)

    @property
    def unfinished(self) -> int:
        """Jobs submitted and not finished: running plus queued."""
        return self._unfinished

    def snapshot(self) -> SchedulerSnapshot:
        running = len(self._tasks)
        return SchedulerSnapshot(
            max_in_flight=self.max_in_flight,
            running=running,
            queued=self._unfinished - running,
            chats_waiting=len(self._ready),
        )
