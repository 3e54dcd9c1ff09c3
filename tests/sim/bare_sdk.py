"""A bare lark-oapi WebSocket client on a thread of its own — the simulator's reference peer.

The tests of the simulator and the benchmark's baseline both need the SDK exactly as a user
would run it, without any of gatewatch in between.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Coroutine, TypeVar

START_TIMEOUT = 10.0
T = TypeVar("T")


class BareSdkClient:
    """One bare `lark_oapi.ws.Client` on a thread and loop of its own.

    The SDK runs on the module global `lark_oapi.ws.client.loop` and `start()` blocks forever: the
    thread assigns its new loop to that global before building the client; `stop()` halts that
    loop from outside, then the thread cancels the SDK's tasks and disconnects cleanly. One
    ws.Client per process at a time.
    """

    def __init__(self, domain: str, app_id: str, app_secret: str, handler: Callable[[Any], None]) -> None:
        self._args = (domain, app_id, app_secret, handler)
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None
        self._thread = threading.Thread(target=self._main, name="bare-sdk-ws", daemon=True)

    def start(self) -> "BareSdkClient":
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the SDK client thread did not start")
        return self

    def _main(self) -> None:
        import lark_oapi as lark
        import lark_oapi.ws.client as lark_ws_client

        domain, app_id, app_secret, handler = self._args
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        lark_ws_client.loop = loop
        client = None
        try:
            dispatcher = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(handler).build()
            client = self._client = lark.ws.Client(
                app_id, app_secret, event_handler=dispatcher, domain=domain, log_level=lark.LogLevel.ERROR
            )
            self._ready.set()
            client.start()
        except RuntimeError:
            pass  # "Event loop stopped before Future completed": our stop()
        except Exception as exc:
            self.error = exc
        finally:
            self._ready.set()
            try:
                leftovers = asyncio.all_tasks(loop)
                for task in leftovers:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                if client is not None:
                    loop.run_until_complete(asyncio.wait_for(client._disconnect(), 5))
            except Exception as exc:  # teardown must not raise out of the thread
                self.error = self.error or exc
            finally:
                loop.close()
                asyncio.set_event_loop(None)
                self.finished.set()

    @property
    def sdk(self) -> Any:
        """The `lark_oapi.ws.Client` itself (read its state; act on it only through `call`)."""
        return self._client

    def call(self, coro_fn: Callable[[Any], Coroutine[Any, Any, T]], timeout: float = 10) -> T:
        """Run `coro_fn(sdk_client)` on the SDK's own loop and return its result."""
        assert self._loop is not None, "call() before start()"
        future = asyncio.run_coroutine_threadsafe(coro_fn(self._client), self._loop)
        return future.result(timeout)

    def _halt(self) -> None:
        if self._client is not None:
            self._client._auto_reconnect = False  # a stop mid-connect raises instead of reconnecting
        assert self._loop is not None
        self._loop.stop()

    def stop(self, timeout: float = 10) -> None:
        if not self.finished.is_set() and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._halt)
            except RuntimeError:
                pass  # the loop already closed on its own
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the SDK client thread did not stop within {timeout:.0f}s")
