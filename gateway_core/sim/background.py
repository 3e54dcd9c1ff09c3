"""Helpers for driving asyncio-native simulators from plain code, on their own event loop.

The simulators are aiohttp servers and must live on a running loop, but tests, the demo and the
SDK clients under test are synchronous and block their own threads. Running the simulators on
a loop of their own (a `gateway_core.threads.BackgroundLoop`, as the console's gateway has) keeps
both sides honest: every interaction crosses a real socket, and no test can accidentally share
(or starve) the loop of the code under test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

T = TypeVar("T")


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
