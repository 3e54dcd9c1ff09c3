"""Waiting on blocking calls from a gateway's loop, without borrowing its default executor.

On a loop the gateway runs on, the default executor *is* the held pool: the thing a fault shuts
down and the supervisor replaces. `asyncio.to_thread`, `run_in_executor(None, …)` and Textual's
thread workers all borrow it, so the console, the demo and the tests never do: a waiter must
neither take a worker from the gateway nor fail while the pool is being healed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable, TypeVar

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
