"""The fleet view: its first paint, and its CPU at idle, with 5 profiles.

    .venv/bin/python bench/fleet_idle.py [--seconds 20]

Five profiles as an operator has them (tests/fleet_env.py): three headless gateways serving,
one whose Feishu refuses it (503 at every attempt), one stopped, and a foreign gateway's
LaunchAgent for the doctor. The gateways are child processes; the console (`gatewatch console`
without --profile) runs headless at 80x24 in this process, with the live fleet: one control-socket
subscription per running gateway, a scan of the profiles every second, the service manager
sampled every 5 s. Prints the time to the first paint of every row, the time until every running
gateway's own verdict is shown, and the console process's CPU over --seconds of idle as a share
of one core (target: at most 1 %). The gateways' own CPU is printed beside it, for scale.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import psutil

from tests.fleet_env import running_fleet
from tui.app import ConsoleApp, live_fleet

PROFILES = 5
TARGET = 1.0  # % of one core


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(seconds: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="gwb-"))
    with running_fleet(root, healthy=("p1", "p2", "p3"), refused=("p4",), stopped=("p5",), invalid=()) as fleet:
        os.environ.update(fleet.environment())
        gateways = [psutil.Process(g.process.pid) for g in fleet.gateways.values()]
        me = psutil.Process()
        started = time.perf_counter()
        app = ConsoleApp(None, home=fleet.home, fleet=live_fleet(fleet.home))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.fleet_screen
            assert screen is not None
            while screen.table.row_count < PROFILES:
                await pilot.pause(0.01)
            first_paint = time.perf_counter() - started
            while any(r.reason.startswith("no answer yet") or r.verdict == "unreachable" for r in screen.fleet.rows()):
                await pilot.pause(0.01)
            all_live = time.perf_counter() - started
            await asyncio.sleep(6.0)  # settle: the first service sample and the first rate bars
            mine, theirs, wall = cpu_seconds(me), sum(cpu_seconds(g) for g in gateways), time.monotonic()
            await asyncio.sleep(seconds)  # the measurement: the fleet view left alone
            wall = time.monotonic() - wall
            mine, theirs = cpu_seconds(me) - mine, sum(cpu_seconds(g) for g in gateways) - theirs
            rows = len(screen.fleet.rows())
    share = 100 * mine / wall
    print(f"fleet of {PROFILES} profiles ({len(gateways)} gateways running), {rows} rows with the foreign plist")
    print(f"first paint of every row: {first_paint:.2f}s; every running gateway's own verdict shown: {all_live:.2f}s")
    print(
        f"idle CPU of the console over {wall:.1f}s: {share:.2f}% of one core "
        f"(target <= {TARGET:.0f}%: {share / TARGET:.2f}x the target); "
        f"the {len(gateways)} gateways beside it: {100 * theirs / wall:.2f}% in total"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(measure(args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
