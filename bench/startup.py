"""A headless gateway's start: spawn -> Feishu CONNECTED, and its memory once connected.

    .venv/bin/python bench/startup.py [--rounds N]

In one run, on the same machine, alternating so load affects both alike: N times
`python -c "import lark_oapi"` (what loading the whole SDK costs), and N real
`python -m gateway_core run --headless` processes on the Feishu and LLM simulators, timed from
spawn to the Feishu connection being up (seen on the control socket), with the process's RSS then
and after one answered message. Printed as medians and as ratios to issue 22's targets:
spawn -> CONNECTED <= 0.5x the SDK import, RSS once connected <= 80 MB. Nothing is asserted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from gateway_core.config import Home
from gateway_core.control import ControlError, request
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile

SECRET, KEY = "bench-secret", "bench-key"
SECRET_ENV, KEY_ENV = "GATEWATCH_BENCH_FEISHU_SECRET", "GATEWATCH_BENCH_LLM_KEY"
PROFILE = "bench"
TARGET_RATIO, TARGET_RSS_MB = 0.5, 80.0


def time_full_sdk_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lark_oapi"], check=True)
    return time.perf_counter() - started


def connected(home: Home, pid: int) -> bool:
    try:
        status = request(home.socket_file(PROFILE), "status", timeout=2)["status"]
    except (ControlError, OSError, KeyError):
        return False
    owner = status.get("owner") or {}
    return owner.get("pid") == pid and status["feishu"]["state"] == "connected"


def start_headless(home: Home, sims: Simulators) -> tuple[float, float, float]:
    """(seconds spawn -> CONNECTED, RSS MB then, RSS MB after one answered message)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", PROFILE],
        env={**os.environ, "GATEWATCH_HOME": str(home.root)},
        cwd=_common.REPOSITORY,  # `-m gateway_core` of this checkout
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not connected(home, process.pid):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the headless gateway did not connect within 60 s")
            time.sleep(0.01)  # polling the control socket; the figure's resolution
        took = time.perf_counter() - started
        rss = psutil.Process(process.pid).memory_info().rss / 2**20
        event = sims.feishu.inject_text("hello")
        sims.feishu.wait_for_replies(event, 1, 20)
        answered_rss = psutil.Process(process.pid).memory_info().rss / 2**20
        return took, rss, answered_rss
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ[SECRET_ENV], os.environ[KEY_ENV] = SECRET, KEY
    imports, starts, rss, answered = [], [], [], []
    with (
        tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp,
        Simulators(
            feishu={"app_id": f"cli_{uuid.uuid4().hex[:8]}", "app_secret": SECRET}, llm={"api_key": KEY}
        ) as sims,
    ):
        home = Home(Path(tmp))
        write_sim_profile(home, PROFILE, sims, SECRET_ENV, KEY_ENV)
        for _ in range(args.rounds):
            imports.append(time_full_sdk_import())
            took, connected_rss, after = start_headless(home, sims)
            starts.append(took)
            rss.append(connected_rss)
            answered.append(after)
    sdk, start = statistics.median(imports), statistics.median(starts)
    print(f"python -c 'import lark_oapi' (the whole SDK): median {sdk:.2f} s over {args.rounds}")
    print(
        f"headless spawn -> CONNECTED: median {start:.2f} s = {start / sdk:.2f}x the SDK import"
        f" (target <= {TARGET_RATIO}x)"
    )
    print(
        f"headless RSS once connected: median {statistics.median(rss):.0f} MB"
        f" = {statistics.median(rss) / TARGET_RSS_MB:.2f}x the {TARGET_RSS_MB:.0f} MB target;"
        f" after one answer {statistics.median(answered):.0f} MB"
    )


if __name__ == "__main__":
    main()
