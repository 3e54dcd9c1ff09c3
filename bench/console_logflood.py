"""Log flood: 5,000 records/s into the gateway's log while the console runs — does it stay usable?

    .venv/bin/python bench/console_logflood.py [--seconds 30] [--rate 5000]

The console runs headless at 80x24 on the simulators with its gateway connected. A thread logs
`--rate` records/s (in 10 ms batches) through the gateway's own logger, so each record goes
through the redactor, the rotating log file and the ring buffer the log pane reads. Once a
second the benchmark presses `p` twice — pause the log (the title says PAUSED), then resume (the
pane redraws from its bounded store) — timing each from the key event until the refresh that
shows it: key-to-screen latency. RSS is sampled every second. (Not a modal: in Textual 8 every
push/pop of a screen leaks ~80 KB even in a bare app, which would swamp the figure we want.)
Prints figures; asserts nothing.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import logging
import threading
import time

import psutil
from console_harness import DemoEnvironment, console_on_simulators, percentile, wait_connected
from textual import events

from tui.panels import LogPane

KEY_CHARACTERS = {"p": "p"}


class Flood(threading.Thread):
    def __init__(self, rate: int):
        super().__init__(name="log-flood", daemon=True)
        self.rate, self.sent = rate, 0
        self.stop = threading.Event()
        self.log = logging.getLogger("gatewatch.flood")

    def run(self) -> None:
        batch = max(1, self.rate // 100)
        started = time.monotonic()
        while not self.stop.is_set():
            for _ in range(batch):
                self.sent += 1
                self.log.info("flood record %d: user text [bold]not markup[/] \x1b[31m and an escape", self.sent)
            # Keep the average rate: wait until this batch's slot in the schedule has passed.
            self.stop.wait(max(0.0, started + self.sent / self.rate - time.monotonic()))


async def key_to_screen(pilot, key: str, shown) -> float:
    """Seconds from a key event entering the app to the refresh that shows its effect.

    Not Pilot.press: it waits for the process to go CPU-idle, which a flood never lets happen.
    """
    app = pilot.app
    started = time.perf_counter()
    app.post_message(events.Key(key, KEY_CHARACTERS.get(key)))
    while not shown():
        await asyncio.sleep(0.001)
    painted = asyncio.Event()
    app.call_after_refresh(painted.set)
    await asyncio.wait_for(painted.wait(), 30)
    return time.perf_counter() - started


async def pause_and_resume(pilot, pane: LogPane) -> list[float]:
    paused = await key_to_screen(pilot, "p", lambda: "PAUSED" in str(pane.border_title))
    resumed = await key_to_screen(pilot, "p", lambda: "following" in str(pane.border_title))
    return [paused, resumed]


async def flood(seconds: float, rate: int) -> None:
    process = psutil.Process()
    with DemoEnvironment() as env:
        app = console_on_simulators(env)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_connected(pilot)
            pane = app.query_one(LogPane)
            latencies: list[float] = []
            idle: list[float] = []
            for _ in range(5):  # baseline before the flood
                idle += await pause_and_resume(pilot, pane)
            rss: list[tuple[float, int]] = [(0.0, process.memory_info().rss)]
            flooding = Flood(rate)
            flooding.start()
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                latencies += await pause_and_resume(pilot, pane)
                if elapsed - rss[-1][0] >= 1.0:
                    rss.append((elapsed, process.memory_info().rss))
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))  # one probe a second
            flooding.stop.set()
            flooding.join()
            actual = flooding.sent / (time.monotonic() - started)
            await pilot.pause(0.5)
            shown = pane.last_seq
    mb = 1024 * 1024
    print(
        f"flood: {flooding.sent} records in {seconds:.0f}s ({actual:.0f}/s; target {rate}/s); "
        f"log pane read up to record #{shown}"
    )
    print(
        f"key-to-screen before flood: median {percentile(idle, 0.5) * 1000:.1f} ms, "
        f"max {max(idle) * 1000:.1f} ms ({len(idle)} keys)"
    )
    print(
        f"key-to-screen during flood: median {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms ({len(latencies)} keys)"
    )
    quarters = [rss[min(len(rss) - 1, round(q * (len(rss) - 1)))] for q in (0, 0.25, 0.5, 0.75, 1)]
    print(
        "RSS over the flood: "
        + ", ".join(f"{t:.0f}s {r / mb:.1f} MB" for t, r in quarters)
        + f"; max {max(r for _, r in rss) / mb:.1f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(flood(args.seconds, args.rate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
