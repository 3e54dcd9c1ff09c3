"""Console start-up: process start -> first paint -> Feishu connected, in the demo set-up.

    .venv/bin/python bench/console_startup.py [--rounds N]

Each round starts a fresh Python process (so imports are paid for, as by `gatewatch demo`) that
opens the console headless at 80x24 on the simulators. Times are wall-clock from just before the
parent starts the child to: the first paint (the app's first refresh has happened), the gateway's
Feishu connection being up, and the Feishu panel first showing CONNECTED (panels refresh every
0.5 s). It also records whether lark_oapi was already imported at first paint: it must not be,
the first frame may not wait for the 2 s SDK import. Prints figures; asserts nothing.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    paint, connected, sdk_flags = [], [], []
    for round_no in range(1, args.rounds + 1):
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            started = time.time()
            proc = subprocess.run([sys.executable, __file__, "--child", result.name], timeout=120)
            if proc.returncode != 0:
                print(f"round {round_no}: child failed with exit code {proc.returncode}")
                return 1
            marks = json.loads(Path(result.name).read_text())
        paint.append(marks["painted"] - started)
        connected.append(marks["connected"] - started)
        sdk_flags.append(marks["sdk_loaded_at_paint"])
        print(
            f"round {round_no}: first paint {paint[-1]:.3f}s · CONNECTED on screen {connected[-1]:.3f}s"
            f" · lark_oapi imported at first paint: {marks['sdk_loaded_at_paint']}"
        )
    print(
        f"median over {args.rounds}: first paint {statistics.median(paint):.3f}s, "
        f"CONNECTED on screen {statistics.median(connected):.3f}s, "
        f"SDK loaded before first paint in {sum(sdk_flags)}/{args.rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
