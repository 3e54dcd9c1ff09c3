"""Console start-up: process start -> first paint -> Feishu connected, in the demo set-up.

    .venv/bin/python bench/console_startup.py [--rounds N]

Each round starts a fresh Python process (so imports are paid for, as by `gatewatch demo`) that
opens the console headless at 80x24 on the simulators. Times are wall-clock from just before the
parent starts the child to: the first paint (the app's first refresh has happened), the gateway's
Feishu connection being up, and the Feishu panel first showing CONNECTED (panels refresh every
0.5 s). It also records whether lark_oapi was already imported at first paint: it must not be,
the first frame may not wait for the 2 s SDK import.

Each round also starts the floor: a bare Textual app (one Static) painting its first frame the same
way, so the console's first paint is printed as a ratio to what Textual itself costs on this
machine at this moment (the issue's 0.3 s target is beside it). Prints figures; asserts nothing.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(result_path: str) -> None:
    from console_harness import ConsoleApp

    from tui.demo import console_demo

    marks: dict[str, object] = {}

    class TimedConsole(ConsoleApp):
        def _start_serving(self) -> None:  # runs right after the first refresh
            marks["painted"] = time.time()
            marks["sdk_loaded_at_paint"] = "lark_oapi" in sys.modules
            super()._start_serving()

        def refresh_panels(self) -> None:
            super().refresh_panels()
            if "connected" not in marks and self.source.snapshot().feishu.state == "connected":
                marks["connected"] = time.time()  # first seen by a refresh, i.e. on screen
                self.exit()

    run, app = console_demo(TimedConsole)
    try:
        app.run(headless=True, size=(80, 24))
    finally:
        run.close()
    Path(result_path).write_text(json.dumps(marks))


def floor_child(result_path: str) -> None:
    """What any Textual app pays before its first frame: Python, Textual's import, one refresh."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("gatewatch")

        def on_mount(self) -> None:
            self.call_after_refresh(self.painted)

        def painted(self) -> None:
            Path(result_path).write_text(json.dumps({"painted": time.time()}))
            self.exit()

    Bare().run(headless=True, size=(80, 24))


def timed_child(kind: str) -> dict[str, float]:
    """Start a child (`--child` or `--floor`) and return its marks, as seconds since its start."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        started = time.time()
        proc = subprocess.run([sys.executable, __file__, kind, result.name], timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} child failed with exit code {proc.returncode}")
        marks = json.loads(Path(result.name).read_text())
    return {key: value - started if isinstance(value, float) else value for key, value in marks.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.floor:
        floor_child(args.floor)
        return 0
    paint, connected, floor, sdk_flags = [], [], [], []
    for round_no in range(1, args.rounds + 1):
        floor.append(timed_child("--floor")["painted"])
        marks = timed_child("--child")
        paint.append(marks["painted"])
        connected.append(marks["connected"])
        sdk_flags.append(bool(marks["sdk_loaded_at_paint"]))
        print(
            f"round {round_no}: bare Textual app first paint {floor[-1]:.3f}s · console first paint {paint[-1]:.3f}s"
            f" · CONNECTED on screen {connected[-1]:.3f}s · lark_oapi imported at first paint: {sdk_flags[-1]}"
        )
    first_paint, on_screen, bare = statistics.median(paint), statistics.median(connected), statistics.median(floor)
    print(
        f"median over {args.rounds}: console first paint {first_paint:.3f}s = {first_paint / bare:.2f}x a bare "
        f"Textual app's ({bare:.3f}s), {first_paint / 0.3:.2f}x the 0.3 s target; CONNECTED on screen "
        f"{on_screen:.3f}s = {on_screen / 1.5:.2f}x the 1.5 s target; "
        f"SDK loaded before first paint in {sum(sdk_flags)}/{args.rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
