"""Shared test support: waiting with deadlines, asking the gateway through the simulator,
profiles pointing at the simulators, and headless gateways as processes. One way to do each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Coroutine, NamedTuple, Sequence, TypeVar

from gateway_core.config import Home, Profile, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.sim.profile import write_sim_profile
from gateway_core.threads import in_own_thread as in_own_thread  # re-exported for the tests

if TYPE_CHECKING:  # not imported at run time: most tests never start a console
    from textual.pilot import Pilot

FEISHU_SECRET_ENV = "GW_TEST_FEISHU_SECRET"
LLM_KEY_ENV = "GW_TEST_LLM_KEY"
FEISHU_SECRET = "sim-secret-" + uuid.uuid4().hex[:12]
LLM_KEY = "sim-key-" + uuid.uuid4().hex[:12]


T = TypeVar("T")


def present(value: T | None) -> T:
    """`value`, asserted not None: for an Optional read inside a lambda or an expression, where an
    `assert x is not None` statement cannot narrow it."""
    assert value is not None
    return value


# pytest-textual-snapshot's `snap_compare` fixture: it declares Callable[[str | PurePath], bool], but the
# function it returns takes the App itself and keyword options (terminal_size=, run_before=, press=).
SnapCompare = Callable[..., bool]


async def until(
    predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", *, pilot: Pilot[Any] | None = None
) -> T:
    """Wait on the running loop until `predicate()` is truthy and return it; fail naming `what` at the deadline.

    For state that changes on its own schedule (a supervisor's probe, a connection thread, a
    panel's refresh) and is announced to no one: checked every 20 ms, never longer than `timeout`.
    In a console test pass the `pilot`, so the app's screen updates between the checks.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        if pilot is not None:
            await pilot.pause(0.02)
        else:
            await asyncio.sleep(0.02)
    return value


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """`until` for synchronous tests and threads: another process's observable state, polled to a deadline."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.05)
    return value


class Exchange(NamedTuple):
    """A message injected into the Feishu simulator and the replies it got."""

    event: InjectedEvent
    replies: list[SentMessage]

    @property
    def text(self) -> str:
        """The one reply's text (there must be exactly one)."""
        (reply,) = self.replies
        assert reply.text is not None, f"a {reply.msg_type} reply, not text"
        return reply.text


async def on_gateway_loop(gateway: Gateway, work: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Await a gateway coroutine on the gateway's own loop, to a deadline, from any running loop.

    The console serves its gateway on a loop thread of its own: the gateway's coroutines must run
    there, not on the test's (the app's) loop. A gateway started on the test's loop runs here.
    """
    loop = gateway.loop
    if loop is None or loop is asyncio.get_running_loop():
        return await asyncio.wait_for(work, timeout)
    return await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop)), timeout)


async def ask(
    sims: Simulators, text: str, *, gateway: Gateway | None = None, timeout: float = 20, **inject: Any
) -> Exchange:
    """Send a user message through the Feishu simulator and wait (to `timeout`) for its reply.

    `inject` goes to `inject_text` (chat_id=, message_type=, ...). With an in-process `gateway`,
    also wait until it finished with the message: the simulator records a reply before its HTTP
    answer reaches the gateway.
    """
    event = sims.feishu.inject_text(text, **inject)
    replies = await in_own_thread(sims.feishu.wait_for_replies, event, 1, timeout)
    if gateway is not None:
        assert gateway.pipeline is not None, "the gateway is not started"
        assert await on_gateway_loop(gateway, gateway.pipeline.drain(10), 15) == 0
    return Exchange(event, replies)


def unique_app_id() -> str:
    """lark-oapi caches tenant tokens per app_id for the whole process: one app_id per test."""
    return f"cli_{uuid.uuid4().hex[:12]}"


def write_profile(
    home: Home, name: str, sims: Simulators, models: Sequence[str] = ("alpha", "beta"), **options: Any
) -> Path:
    """A profile wired to the running simulators, with fast timings for tests."""
    return write_sim_profile(home, name, sims, FEISHU_SECRET_ENV, LLM_KEY_ENV, models=models, **options)


def gateway_env(home: Home) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GATEWATCH_HOME=str(home.root),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env[FEISHU_SECRET_ENV] = FEISHU_SECRET
    env[LLM_KEY_ENV] = LLM_KEY
    return env


@dataclass
class HeadlessProcess:
    """`gatewatch run --headless` as a real child process; its stderr lines are collected."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, home: Home, profile: str) -> "HeadlessProcess":
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", profile],
            env=gateway_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        child = cls(process)
        threading.Thread(target=child._read, daemon=True).start()
        return child

    def _read(self) -> None:
        assert self.process.stderr is not None  # started with stderr=PIPE
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # A child gateway imports the SDK and connects before it says so: on a shared 2-core machine
    # running tests in parallel that can take many seconds. A deadline, not a speed target.
    STARTUP_DEADLINE = 45.0

    def wait_for_line(self, fragment: str, timeout: float = STARTUP_DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if fragment in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader_pending()):
                    raise TimeoutError(f"no line containing {fragment!r}; got {self.lines!r}")
                self._changed.wait(min(remaining, 0.5))

    def wait_for_lines(self, fragment: str, count: int, timeout: float = 20) -> list[str]:
        """Wait until `count` lines contain `fragment`; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if fragment in line]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader_pending()):
                    raise TimeoutError(f"{len(found)} of {count} lines containing {fragment!r}; got {self.lines!r}")
                self._changed.wait(min(remaining, 0.5))

    def _reader_pending(self) -> bool:
        assert self.process.stderr is not None
        return not self.process.stderr.closed

    def terminate_and_wait(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> "HeadlessProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # whatever the test did: no gateway outlives it

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@contextlib.asynccontextmanager
async def connected_gateway(home: Home, profile: Profile) -> AsyncIterator[Gateway]:
    """An in-process gateway (owner: console) on `profile`, connected; stopped after (5 s drain)."""
    gateway = Gateway(profile, home, owner="console")
    await gateway.start()
    try:
        assert await gateway.wait_connected(15), gateway.feishu.snapshot()
        yield gateway
    finally:
        await gateway.stop(drain_timeout=5)


@contextlib.asynccontextmanager
async def gateway_on_profile(home: Home, sims: Any, name: str = "p", **options: Any) -> AsyncIterator[Gateway]:
    """`connected_gateway` on a profile written with `options` (see write_sim_profile)."""
    write_profile(home, name, sims, **options)
    async with connected_gateway(home, load_profile(home, name)) as gateway:
        yield gateway


def access_section(**keys: object) -> str:
    lines = ["[access]"]
    for key, value in keys.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f"{key} = {value}")
    return "\n" + "\n".join(lines) + "\n"
