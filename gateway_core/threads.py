"""Threads outside the gateway's held pool: a blocking call awaited, and an event loop of its own.

On a loop the gateway runs on, the default executor *is* the held pool: the thing a fault shuts
down and the supervisor replaces. `asyncio.to_thread` and `run_in_executor(None, …)` borrow it, so
waiters on that loop (the demo, the tests, the gateway's own stop) use `in_own_thread` instead: a
waiter must neither take a worker from the gateway nor fail while the pool is being healed.

`BackgroundLoop` is an asyncio loop on a thread of its own. The simulators run on one (tests and
the demo drive them from plain code), and so does the console's gateway: Textual keeps its own
loop and default executor, and a stalled terminal cannot hold up message handling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

T = TypeVar("T")


async def in_own_thread(fn: Callable[..., T], *args: object) -> T:
    """Run `fn(*args)` on a new daemon thread and await its result (or its exception)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as error:  # handed to the awaiting coroutine
            outcome: tuple[object, BaseException | None] = (None, error)
        else:
            outcome = (result, None)
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="console-blocking", daemon=True).start()
    return await future


class BackgroundLoop:
    """Owns one event loop running forever on a daemon thread until `stop()`."""

    def __init__(self, name: str = "background-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; raises if `start()` was not called."""
        if self._loop is None:
            raise RuntimeError("BackgroundLoop is not started")
        return self._loop

    def in_loop_thread(self) -> bool:
        """True when the caller runs on this loop's thread (where blocking would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> "BackgroundLoop":
        """Start the thread and return once the loop is running."""
        if self._thread is not None:
            raise RuntimeError("BackgroundLoop already started")
        loop = asyncio.new_event_loop()
        running = threading.Event()
        loop.call_soon(running.set)
        self._loop = loop
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        if not running.wait(10):
            raise RuntimeError("background loop did not start")
        return self

    def _main(self) -> None:
        """Thread body: run until stopped, then cancel what is left and close the loop."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10) -> None:
        """Stop the loop, cancel leftover tasks, close the loop and join the thread (idempotent).

        The join is bounded: a thread still alive after `timeout` raises TimeoutError and is left
        behind (a daemon: it never holds up the process's exit).
        """
        if self._thread is None:
            return
        if self.in_loop_thread():
            raise RuntimeError("BackgroundLoop.stop() called from its own thread")
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"background loop thread {self._name!r} did not stop in {timeout}s")
        self._thread = None

    def run(self, coro: Awaitable[T], timeout: float | None = 10) -> T:
        """Run `coro` on the loop and return its result; cancels it and raises TimeoutError on timeout."""
        if self.in_loop_thread():
            raise RuntimeError("BackgroundLoop.run() would deadlock on its own thread")
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"coroutine did not finish within {timeout}s") from None

    async def arun(self, coro: Awaitable[T], timeout: float, *, cancel_on_timeout: bool = True) -> T:
        """Await `coro` run on this loop, from another running loop; TimeoutError after `timeout`.

        The caller's loop stays free meanwhile. At the deadline the work is cancelled — work this
        loop had not even begun (it was busy) never begins, rather than happening late behind the
        caller's back — unless `cancel_on_timeout` is False (a stop half-way through is worse than
        one that finishes late): then it goes on there and only the waiting ends.
        """
        given_up = threading.Event()
        work = _as_coroutine(coro)

        async def unless_given_up() -> T:
            if given_up.is_set():
                work.close()  # never begun, so never awaited: closed, not left to a warning
                raise asyncio.CancelledError("the caller gave up before this began")
            return await work

        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(unless_given_up(), self.loop))
        try:
            return await asyncio.wait_for(future if cancel_on_timeout else asyncio.shield(future), timeout)
        except TimeoutError:
            if cancel_on_timeout:
                given_up.set()
            raise TimeoutError(f"did not finish within {timeout:g}s") from None

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule `fn(*args)` on the loop from any thread; does not wait."""
        self.loop.call_soon_threadsafe(fn, *args)

    def __enter__(self) -> "BackgroundLoop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    """Any awaitable (e.g. websockets.connect(...)) as the coroutine run_coroutine_threadsafe takes."""
    if asyncio.iscoroutine(awaitable):
        return awaitable

    async def awaited() -> T:
        return await awaitable

    return awaited()
