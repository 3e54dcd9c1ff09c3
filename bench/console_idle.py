"""Idle CPU of the console: gateway connected, no messages, nobody pressing keys.

    .venv/bin/python bench/console_idle.py [--seconds 20]

The console runs headless at 80x24 on the simulators (same process, their own loop thread).
After connecting and a short settle, process CPU time is sampled over --seconds and shown as a
percentage of one core, split into the console's loop thread (UI refresh, log polling), the
gateway's loop thread (its supervisor and probes, the control socket) and all other threads (the
Feishu SDK thread, the simulators, the executor). Prints figures; asserts nothing.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import threading
import time

import psutil
from console_harness import DemoEnvironment, console_on_simulators, wait_connected


def cpu_by_thread(process: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in process.threads()}


async def idle(seconds: float) -> None:
    process = psutil.Process()
    loop_thread = threading.get_native_id()  # the app runs on this thread's loop
    with DemoEnvironment() as env:
        app = console_on_simulators(env)
        async with app.run_test(size=(80, 24)) as pilot:
            connect_time = await wait_connected(pilot)
            gateway_thread = next(t.native_id for t in threading.enumerate() if t.name == "gateway-demo")
            await asyncio.sleep(2.0)  # settle: the first probes and the first refreshes are done
            before, wall_before = cpu_by_thread(process), time.monotonic()
            await asyncio.sleep(seconds)  # the measurement itself: the console left alone
            after, wall = cpu_by_thread(process), time.monotonic() - wall_before
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    on_loop, on_gateway = spent.get(loop_thread, 0.0), spent.get(gateway_thread, 0.0)
    others = sum(v for tid, v in spent.items() if tid not in (loop_thread, gateway_thread))
    print(f"connected after {connect_time:.2f}s; idle for {wall:.1f}s")
    print(
        f"idle CPU: {100 * (on_loop + on_gateway + others) / wall:.1f}% of one core in total — "
        f"console loop thread {100 * on_loop / wall:.1f}%, gateway loop thread {100 * on_gateway / wall:.1f}%, "
        f"other threads {100 * others / wall:.1f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(idle(args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
