"""Shared set-up of the console benchmarks: the demo environment, a gateway, a console app.

Everything runs in this process over real 127.0.0.1 sockets (the simulators on their own loop
thread, the gateway on another, as in the console), without the demo's message stream: each
benchmark makes the load it measures. Benchmarks print figures; nothing here asserts timings.
"""

from __future__ import annotations

import os

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_core.demo import DemoEnvironment  # noqa: E402
from gateway_core.gateway import Gateway  # noqa: E402
from tui.app import ConsoleApp  # noqa: E402
from tui.source import LocalSource  # noqa: E402


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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
