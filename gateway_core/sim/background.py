"""An asyncio event loop on a daemon thread, for driving asyncio-native simulators from plain code.

The simulators are aiohttp servers and must live on a running loop, but tests, the demo and the
SDK clients under test are synchronous and block their own threads. Running the simulators on
a loop of their own keeps both sides honest: every interaction crosses a real socket, and no
test can accidentally share (or starve) the loop of the code under test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

T = TypeVar("T")


class BackgroundLoop:
    """Owns one event loop running forever on a daemon thread until `stop()`."""

    def __init__(self, name: str = "sim-loop") -> None:
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
        """Stop the loop, cancel leftover tasks, close the loop and join the thread (idempotent)."""
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
        if not asyncio.iscoroutine(coro):  # any awaitable, e.g. websockets.connect(...)
            coro = _awaited(coro)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"coroutine did not finish within {timeout}s") from None

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule `fn(*args)` on the loop from any thread; does not wait."""
        self.loop.call_soon_threadsafe(fn, *args)

    def __enter__(self) -> "BackgroundLoop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float = 10) -> T:
    """Run the synchronous `fn` on `loop`'s thread and return its result, from any thread.

    Used by simulator controls that must touch loop-owned objects (sockets, asyncio events):
    on the loop thread it simply calls `fn`; elsewhere it schedules it and waits.
    """
    try:
        if asyncio.get_running_loop() is loop:
            return fn()
    except RuntimeError:
        pass  # no running loop in this thread

    async def runner() -> T:
        return fn()

    future = asyncio.run_coroutine_threadsafe(runner(), loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"loop did not run the call within {timeout}s") from None


class ThreadSafeState:
    """Base for simulators: one re-entrant lock guarding all state, and a condition to wait on it.

    Server handlers (loop thread) and controls (any thread) both change state under the lock
    and notify; waiting helpers block the *calling* thread, never the loop. The lock is
    re-entrant so a `wait_for` predicate may call the public read-only properties.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the simulator serves on; a control used before `start()` is a test's mistake."""
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not running: start it first")
        return self._loop

    def _notify(self) -> None:
        """Wake every waiter after a state change (callers may or may not hold the lock)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10,
        describe: Callable[[], str] | None = None,
    ) -> T:
        """Block until `predicate()` is truthy and return its value; TimeoutError says what was seen.

        A predicate may answer None for "not yet": what is returned is then never None.
        """
        try:
            on_loop = self._loop is not None and asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            raise RuntimeError("wait_for() would block the simulator's own event loop")
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
            if not result:
                detail = describe() if describe else f"predicate {predicate!r} still false"
                raise TimeoutError(f"{type(self).__name__}: timed out after {timeout}s: {detail}")
            return result


async def serve_on_loopback(app: "web.Application", **runner_options: Any) -> tuple["web.AppRunner", int]:
    """Serve an aiohttp app on a free 127.0.0.1 port; return its runner and the port."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]
