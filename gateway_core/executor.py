"""The held executor: the gateway's one thread pool, watched and rebuilt when it dies.

The incident gatewatch answers: the asyncio default executor was shut down behind the gateway's
back; from then on every `run_in_executor(None, …)` raised `RuntimeError: Executor shutdown has
been called` — and asyncio's own `getaddrinfo` goes through that path, so every new connection
failed too, while the process looked alive. Here the pool is created and referenced by the gateway,
installed as the default of every loop the gateway uses, and all blocking work is submitted through
`HeldExecutor.run`. A refusal or a stuck pool is detected (by the submitter or by a canary probe),
a new pool is installed, and the refused work is submitted again, so nothing is lost.

Busy is not stuck. A canary that waits in the queue behind other work says only that the pool is
full; the pool is stuck when, in addition, nothing it runs has *finished* for the probe deadline.
Every piece of work is counted as it starts and finishes — whoever submitted it, the gateway or
third-party code through the loop's default path — so the probe can tell the two apart: a busy
pool (`busy`, or `degraded` once the canary waited past the deadline) is left alone, and only a
stuck one is rebuilt, because a rebuild adds no capacity.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from .config.schema import ExecutorConfig
from .states import ExecutorState

log = logging.getLogger("gatewatch.executor")
T = TypeVar("T")

PROBE_WINDOW = 120
BUSY_LATENCY = 0.5  # a canary that waited this long to start means the pool is saturated
REPLACED_SHOWS_FOR = 30.0  # seconds the state says "replaced" after a rebuild


@dataclass(frozen=True)
class ExecutorSnapshot:
    """What the console shows about the pool; plain data, safe to hand to any thread."""

    state: str  # healthy | busy | degraded | replaced | dead
    max_workers: int
    live_threads: int
    busy: int
    queued: int
    completed: int
    failed: int
    restarts: int
    last_probe_latency: float | None
    probe_p50: float | None
    probe_p95: float | None
    last_restart_at: float | None
    last_restart_cause: str | None
    probe_history: tuple[float, ...] = ()


class _CountedPool(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that reports every piece of work to its HeldExecutor as it starts and ends.

    Counting here rather than in `HeldExecutor.run` also sees what third-party code submits
    through the loop's default executor (the SDK, asyncio's DNS), which is what fills the queue.
    """

    def __init__(self, owner: "HeldExecutor", max_workers: int, thread_name_prefix: str):
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._owner = owner

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        if getattr(fn, "is_canary", False):  # the probe's own measurement is not work
            return super().submit(fn, *args, **kwargs)
        future = super().submit(self._owner._counted, fn, *args, **kwargs)
        self._owner._count_submitted()
        return future


class HeldExecutor:
    """A ThreadPoolExecutor the gateway owns, plus the supervisor that keeps it usable."""

    def __init__(self, max_workers: int, probe_deadline: float = ExecutorConfig.probe_deadline):
        self.max_workers = max_workers
        self.probe_deadline = probe_deadline
        self._guard = threading.Lock()
        self._generation = 0
        self._pool = self._new_pool()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._submitted = self._started = self._completed = self._failed = 0
        self._restarts = 0
        self._last_restart_at: float | None = None
        self._last_restart_cause: str | None = None
        self._probes: deque[float] = deque(maxlen=PROBE_WINDOW)
        self._last_probe_missed = False  # the canary waited past the deadline (the pool kept moving)
        self._last_finished_at = time.monotonic()  # when a piece of work last finished
        self._closed = False

    # -- the one way blocking work runs -------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the held pool; a refusing pool is replaced and the work resubmitted."""
        loop = asyncio.get_running_loop()
        for _ in range(3):
            pool = self._pool
            try:
                future = pool.submit(fn, *args)
            except RuntimeError as exc:  # a shut-down pool refuses, whatever the message says
                if self._closed:
                    raise
                self.rebuild(f"executor refused work: {exc}", failed_pool=pool)
                continue
            return await asyncio.wrap_future(future, loop=loop)
        raise RuntimeError("executor keeps refusing work after rebuilding it twice")

    def _count_submitted(self) -> None:
        with self._guard:
            self._submitted += 1

    def _counted(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Runs on a worker: the work itself, counted as started and as finished."""
        with self._guard:
            self._started += 1
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            with self._guard:
                self._failed += 1
                self._last_finished_at = time.monotonic()
            raise
        else:
            with self._guard:
                self._completed += 1
                self._last_finished_at = time.monotonic()
            return result

    # -- default-executor installation --------------------------------------------------------

    def install_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the held pool the default executor of `loop`, now and after every rebuild."""
        with self._guard:
            if loop not in self._loops:
                self._loops.append(loop)
        self._install(loop, self._pool)

    def forget(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop installing on `loop` and take the pool back from it.

        `loop.close()` shuts its default executor down: a loop that closes while still holding
        the held pool (the Feishu thread's loop, on every reconnect) would kill it for everyone.
        """
        with self._guard:
            if loop in self._loops:
                self._loops.remove(loop)
            if getattr(loop, "_default_executor", None) is self._pool:
                loop._default_executor = None  # type: ignore[attr-defined]

    @staticmethod
    def _install(loop: asyncio.AbstractEventLoop, pool: concurrent.futures.Executor) -> None:
        # asyncio never lets a loop use its default executor again once
        # shutdown_default_executor() ran: it sets a private flag that nothing resets, and
        # run_in_executor(None, …) raises "Executor shutdown has been called" forever — the exact
        # empty shell of the incident. Healing the loop means clearing that flag with the new pool.
        if getattr(loop, "_executor_shutdown_called", False):
            loop._executor_shutdown_called = False  # type: ignore[attr-defined]
        loop.set_default_executor(pool)

    def default_refused(self) -> str | None:
        """Why a loop we installed on can no longer use its default executor, or None."""
        for loop in list(self._loops):
            if loop.is_closed():
                continue
            if getattr(loop, "_executor_shutdown_called", False):
                return "a loop's default executor was shut down (shutdown_default_executor)"
            if getattr(loop, "_default_executor", self._pool) is not self._pool:
                return "a loop's default executor was replaced behind the gateway's back"
        return None

    # -- rebuild ------------------------------------------------------------------------------

    def rebuild(self, cause: str, failed_pool: concurrent.futures.ThreadPoolExecutor | None = None) -> bool:
        """Install a fresh pool. With `failed_pool`, only if that pool is still current.

        The guard makes concurrent detections (a submitter and the probe seeing the same dead
        pool) count as one restart.
        """
        with self._guard:
            if self._closed:
                return False
            if failed_pool is not None and failed_pool is not self._pool:
                return False
            old = self._pool
            self._pool = self._new_pool()
            self._restarts += 1
            self._last_restart_at = time.time()
            self._last_restart_cause = cause
            self._last_probe_missed = False
            self._last_finished_at = time.monotonic()  # the new pool's clock starts now
            loops = list(self._loops)
        for loop in loops:
            if not loop.is_closed():
                self._install(loop, self._pool)  # plain attribute writes: safe from any thread
        # A stuck pool's running work may still finish; let it, but accept nothing new.
        old.shutdown(wait=False, cancel_futures=False)
        log.warning("executor rebuilt (restart %d): %s", self._restarts, cause)
        return True

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        self._generation += 1
        return _CountedPool(self, self.max_workers, thread_name_prefix=f"gw-exec{self._generation}")

    # -- the canary -----------------------------------------------------------------------------

    async def probe(self) -> None:
        """Measure submit→start latency; rebuild on refusal, a dead default, or a stuck pool.

        The canary goes through the loop's *default* path, not `self._pool` directly, so it
        proves what third-party code (and asyncio's DNS) will see. A canary still queued at the
        deadline means a stuck pool only if no work finished during that time either; a pool
        that is finishing work is busy, and rebuilding it would add nothing.
        """
        refused = self.default_refused()
        if refused:
            self.rebuild(refused)
            return
        loop = asyncio.get_running_loop()
        pool = self._pool
        started = threading.Event()
        submitted_at = time.perf_counter()
        start_times: list[float] = []

        def canary() -> None:
            start_times.append(time.perf_counter())
            started.set()

        canary.is_canary = True  # type: ignore[attr-defined]

        try:
            future = loop.run_in_executor(None, canary)
        except RuntimeError as exc:
            self.rebuild(f"probe refused: {exc}", failed_pool=pool)
            return
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self.probe_deadline)
        except asyncio.TimeoutError:
            with self._guard:
                self._last_probe_missed = True
                stalled_for = time.monotonic() - self._last_finished_at
                queued = max(0, self._submitted - self._started)
            if stalled_for < self.probe_deadline:
                log.info(
                    "executor busy: probe waited %gs, %d queued, work still finishing", self.probe_deadline, queued
                )
                return  # the canary stays queued; it runs when its turn comes
            self.rebuild(
                f"probe not started within {self.probe_deadline:g}s and no work finished for "
                f"{stalled_for:.0f}s (all workers stuck)",
                failed_pool=pool,
            )
            return
        except RuntimeError as exc:
            self.rebuild(f"probe refused: {exc}", failed_pool=pool)
            return
        with self._guard:
            self._probes.append(start_times[0] - submitted_at)
            self._last_probe_missed = False

    # -- lifecycle and view -------------------------------------------------------------------

    def shutdown(self, wait: bool = False) -> None:
        with self._guard:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=wait, cancel_futures=not wait)

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The current pool (tests and fault injection reach it here; gateway code uses `run`)."""
        return self._pool

    @property
    def restarts(self) -> int:
        return self._restarts

    def snapshot(self) -> ExecutorSnapshot:
        with self._guard:
            probes = tuple(self._probes)
            busy = self._started - self._completed - self._failed
            queued = max(0, self._submitted - self._started)
            live = len(getattr(self._pool, "_threads", ()))
            state = self._state(probes)
            return ExecutorSnapshot(
                state=state,
                max_workers=self.max_workers,
                live_threads=live,
                busy=max(0, busy),
                queued=queued,
                completed=self._completed,
                failed=self._failed,
                restarts=self._restarts,
                last_probe_latency=probes[-1] if probes else None,
                probe_p50=statistics.median(probes) if probes else None,
                probe_p95=_percentile(probes, 0.95),
                last_restart_at=self._last_restart_at,
                last_restart_cause=self._last_restart_cause,
                probe_history=probes[-60:],
            )

    def _state(self, probes: tuple[float, ...]) -> str:
        if self._closed:
            return ExecutorState.DEAD
        if self._last_restart_at is not None and time.time() - self._last_restart_at < REPLACED_SHOWS_FOR:
            return ExecutorState.REPLACED
        if self._last_probe_missed:
            return ExecutorState.DEGRADED  # the queue moves, but slower than the probe deadline
        if probes and probes[-1] > BUSY_LATENCY:
            return ExecutorState.BUSY
        return ExecutorState.HEALTHY


def _percentile(values: tuple[float, ...], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
