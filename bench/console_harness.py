"""Shared set-up of the console benchmarks: the demo environment, a gateway, a console app.

Everything runs in this process over real 127.0.0.1 sockets (the simulators on their own loop
thread, the gateway on another, as in the console), without the demo's message stream: each
benchmark makes the load it measures. Benchmarks print figures; nothing here asserts timings.
"""

from __future__ import annotations

from _common import percentile  # noqa: F401  (first: loopback only, the repo on sys.path; re-exported)

import time

from gateway_core.demo import DemoEnvironment
from gateway_core.gateway import Gateway
from tui.app import ConsoleApp
from tui.source import LocalSource


def console_on_simulators(env: DemoEnvironment, app_class: type[ConsoleApp] = ConsoleApp) -> ConsoleApp:
    return app_class(LocalSource("demo", lambda: Gateway(env.profile(), env.home, owner="console")), home=env.home)


async def wait_connected(pilot, timeout: float = 30.0) -> float:
    """Let the app run until its gateway's Feishu connection is up; returns the seconds waited."""
    source = pilot.app.source
    started = time.monotonic()
    while source.gateway is None or source.gateway.feishu.state != "connected":
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not connected after {timeout}s: {source.snapshot().feishu}")
        await pilot.pause(0.02)
    return time.monotonic() - started
