"""The answer scheduler: a cap on answers in progress, one at a time per chat, FIFO everywhere."""

import asyncio

import pytest

from gateway_core.scheduler import AnswerScheduler


class Jobs:
    """Jobs that wait for the test's go-ahead, recording when each starts and ends."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.most_running = 0

    async def job(self, name: str) -> None:
        gate = self.gates.setdefault(name, asyncio.Event())
        self.started.append(name)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await gate.wait()
        finally:
            self.running -= 1
            self.finished.append(name)

    def release(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


async def settle() -> None:
    """Let every ready task run until all wait again (tasks here only wait on gates)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_job_per_chat_at_a_time_in_submission_order() -> None:
    scheduler, jobs = AnswerScheduler(max_in_flight=10), Jobs()
    for name in ("a1", "b1", "a2", "a3", "b2"):
        scheduler.submit(name[0], jobs.job, name)
    await settle()
    assert jobs.started == ["a1", "b1"]
    assert scheduler.snapshot().running == 2 and scheduler.snapshot().queued == 3
    jobs.release("a1")
    await settle()
    assert jobs.started == ["a1", "b1", "a2"]
    for name in ("a2", "b1", "a3", "b2"):
        jobs.release(name)
    assert await scheduler.wait_idle(5) == 0
    assert [n for n in jobs.finished if n[0] == "a"] == ["a1", "a2", "a3"]
    assert [n for n in jobs.finished if n[0] == "b"] == ["b1", "b2"]


async def test_cap_on_jobs_in_progress_and_waiting_chats_served_first_come_first_served() -> None:
    scheduler, jobs = AnswerScheduler(max_in_flight=2), Jobs()
    for name in ("a1", "a2", "b1", "c1", "d1"):
        scheduler.submit(name[0], jobs.job, name)
    await settle()
    assert jobs.started == ["a1", "b1"]
    assert scheduler.snapshot().chats_waiting == 2  # c and d; a's next turn waits for a1
    jobs.release("a1")
    await settle()
    # a2 goes behind the chats that were already waiting for a slot.
    assert jobs.started == ["a1", "b1", "c1"]
    for name in ("b1", "c1", "d1", "a2"):
        jobs.release(name)
    assert await scheduler.wait_idle(5) == 0
    assert jobs.started == ["a1", "b1", "c1", "d1", "a2"] and jobs.most_running == 2


async def test_wait_idle_counts_what_is_unfinished_at_the_deadline() -> None:
    scheduler, jobs = AnswerScheduler(max_in_flight=1), Jobs()
    for name in ("a1", "b1", "c1"):
        scheduler.submit(name[0], jobs.job, name)
    assert await scheduler.wait_idle(0.05) == 3  # one running, two queued
    jobs.release("a1")
    jobs.release("b1")
    jobs.release("c1")
    assert await scheduler.wait_idle(5) == 0


async def test_a_failing_job_frees_its_slot_and_its_chat() -> None:
    scheduler, jobs = AnswerScheduler(max_in_flight=1), Jobs()

    async def broken() -> None:
        raise RuntimeError("unexpected (the test's)")

    scheduler.submit("a", broken)
    scheduler.submit("a", jobs.job, "a2")
    await settle()
    assert jobs.started == ["a2"]
    jobs.release("a2")
    assert await scheduler.wait_idle(5) == 0


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AnswerScheduler(0)
