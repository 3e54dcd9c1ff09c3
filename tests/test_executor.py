"""The held executor heals itself: refused work is resubmitted, a stuck pool replaced."""

import asyncio
import threading
import time

from gateway_core.executor import HeldExecutor

from .support import present


async def test_work_refused_by_a_shut_down_pool_is_resubmitted() -> None:
    executor = HeldExecutor(max_workers=2)
    executor.install_on(asyncio.get_running_loop())
    executor.pool.shutdown()  # behind the gateway's back
    assert await executor.run(lambda x: x * 2, 21) == 42
    snap = executor.snapshot()
    assert snap.restarts == 1 and snap.state == "replaced"
    assert "refused" in present(snap.last_restart_cause)
    executor.shutdown()


async def test_loop_default_executor_shutdown_is_detected_and_the_loop_healed() -> None:
    loop = asyncio.get_running_loop()
    executor = HeldExecutor(max_workers=2)
    executor.install_on(loop)
    await loop.shutdown_default_executor()  # sets asyncio's never-reset flag: the seed bug
    await executor.probe()
    assert executor.restarts == 1
    # Third-party code going through the default path works again (asyncio's DNS does this).
    assert await loop.run_in_executor(None, lambda: "alive") == "alive"
    await loop.getaddrinfo("127.0.0.1", 80)
    executor.shutdown()


async def test_concurrent_detections_of_one_dead_pool_count_one_restart() -> None:
    executor = HeldExecutor(max_workers=4)
    executor.install_on(asyncio.get_running_loop())
    executor.pool.shutdown()
    results = await asyncio.gather(*(executor.run(lambda i=i: i) for i in range(20)), executor.probe())
    assert results[:20] == list(range(20))
    assert executor.restarts == 1
    executor.shutdown()


async def test_stuck_pool_is_replaced_when_the_probe_misses_its_deadline() -> None:
    executor = HeldExecutor(max_workers=2, probe_deadline=0.2)
    executor.install_on(asyncio.get_running_loop())
    release = threading.Event()
    stuck = [asyncio.ensure_future(executor.run(release.wait, 10)) for _ in range(2)]
    await asyncio.sleep(0)  # one loop turn: both tasks submit (FIFO) before the canary does
    await executor.probe()
    snap = executor.snapshot()
    assert snap.restarts == 1 and "not started within" in present(snap.last_restart_cause)
    assert await executor.run(lambda: "fresh pool") == "fresh pool"
    release.set()
    assert await asyncio.gather(*stuck) == [True, True]  # the stuck work still finished
    executor.shutdown()


async def test_snapshot_counts_and_probe_latency() -> None:
    executor = HeldExecutor(max_workers=3)
    executor.install_on(asyncio.get_running_loop())
    for _ in range(5):
        await executor.probe()
    await executor.run(lambda: None)
    try:
        await executor.run(lambda: 1 / 0)
    except ZeroDivisionError:
        pass
    snap = executor.snapshot()
    assert snap.state == "healthy" and snap.restarts == 0
    assert snap.completed == 1 and snap.failed == 1 and snap.busy == 0 and snap.queued == 0
    assert snap.probe_p50 is not None and snap.probe_p95 is not None and snap.probe_p95 >= snap.probe_p50 >= 0
    assert len(snap.probe_history) == 5
    executor.shutdown()
    assert executor.snapshot().state == "dead"


async def test_a_busy_pool_whose_work_keeps_finishing_is_not_rebuilt() -> None:
    """The canary waits behind a long queue, but jobs finish all the time: busy, not stuck."""
    executor = HeldExecutor(max_workers=2, probe_deadline=0.2)
    executor.install_on(asyncio.get_running_loop())
    queue = [asyncio.ensure_future(executor.run(time.sleep, 0.05)) for _ in range(40)]  # ~1 s of work
    await asyncio.sleep(0)  # one loop turn: the jobs are submitted before the canary
    await executor.probe()  # gives up waiting at 0.2 s, while jobs are finishing
    snap = executor.snapshot()
    assert snap.restarts == 0 and snap.state == "degraded", snap
    assert snap.queued > 0 and snap.completed > 0  # the queue length is shown, and it moves
    await asyncio.gather(*queue)
    await executor.probe()
    assert executor.snapshot().state == "healthy" and executor.restarts == 0
    executor.shutdown()


async def test_a_probe_that_waited_but_started_shows_the_pool_busy() -> None:
    executor = HeldExecutor(max_workers=2, probe_deadline=5)
    executor.install_on(asyncio.get_running_loop())
    queue = [asyncio.ensure_future(executor.run(time.sleep, 0.05)) for _ in range(30)]  # ~0.75 s
    await asyncio.sleep(0)
    await executor.probe()
    snap = executor.snapshot()
    assert (
        snap.state == "busy"
        and snap.restarts == 0
        and snap.last_probe_latency is not None
        and snap.last_probe_latency > 0.5
    ), snap
    await asyncio.gather(*queue)
    executor.shutdown()
