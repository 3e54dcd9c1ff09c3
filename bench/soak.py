"""Soak: steady traffic for a long time, a fault every minute; no leak, nothing lost or doubled.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 2] [--fault-every 60]

The story behind gatewatch failed after 71 minutes of running. A gateway (its own process, so its
memory is its own) serves a profile on the Feishu and LLM simulators while a traffic thread sends
`--rate` messages a second to a few chats; every `--fault-every` seconds one fault, in turn:
- the Feishu server drops the WebSocket;
- the held executor is shut down behind the gateway's back (the original incident);
- the model fails with HTTP 500 for 10 s (the gateway fails over, then back);
- a reply is cut mid-flight: Feishu takes it and withholds its answer past the client's deadline
  (the reply is retried with its uuid; Feishu shows it once).
Printed: the gateway's RSS, open file descriptors and threads at the start and the end, with the
RSS slope over the run (least squares over a sample every 10 s); messages sent, lost (no reply
shown) and doubled (more than one shown); executor restarts and Feishu reconnects. Nothing is
asserted; a shorter run (`--minutes 3`) shows the same shape.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

from gateway_core.config import Home, load_profile
from gateway_core.control import ControlError, request
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile

PROFILE = "soak"
CHATS = 6
SAMPLE_EVERY = 10.0
FAULTS = ("websocket", "executor", "model", "reply")


def child(home_root: str) -> None:
    """The gateway under soak: served here; a line 'executor' on stdin shuts its pool down."""
    from gateway_core.gateway import Gateway

    async def serve() -> None:
        home = Home(Path(home_root))
        gateway = Gateway(load_profile(home, PROFILE), home, owner="headless", log_to_file=True)
        await gateway.start()
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()

        def read_stdin() -> None:  # the parent's fault orders; EOF means stop
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line.strip())
            loop.call_soon_threadsafe(lines.put_nowait, "stop")

        threading.Thread(target=read_stdin, daemon=True).start()
        while (order := await lines.get()) != "stop":
            if order == "executor":
                gateway.executor.pool.shutdown()  # what the story's gateway suffered
        await gateway.stop(drain_timeout=10)

    asyncio.run(serve())


def status(home: Home) -> dict | None:
    try:
        return request(home.socket_file(PROFILE), "status", timeout=5)["status"]
    except (ControlError, OSError, KeyError):
        return None


def sample(process: psutil.Process) -> tuple[float, int, int]:
    """(RSS MB, open file descriptors, threads) of the gateway process."""
    return process.memory_info().rss / 2**20, process.num_fds(), process.num_threads()


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def run(minutes: float, rate: float, fault_every: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gw-soak-") as tmp:
        home = Home(Path(tmp) / "home")
        secret, key = "soak-secret-" + uuid.uuid4().hex[:8], "soak-key-" + uuid.uuid4().hex[:8]
        with Simulators(
            feishu={"app_id": f"cli_{uuid.uuid4().hex[:12]}", "app_secret": secret}, llm={"api_key": key}
        ) as sims:
            sims.llm.set_behaviour("alpha", "echo", latency=0.3)
            write_sim_profile(home, PROFILE, sims, secret_files=(secret, key), request_timeout=20)
            gateway = subprocess.Popen(
                [sys.executable, __file__, "--child", str(home.root)],
                env={**os.environ, "GATEWATCH_HOME": str(home.root)},
                stdin=subprocess.PIPE,
                text=True,
            )
            assert gateway.stdin is not None
            proc = psutil.Process(gateway.pid)
            deadline = time.monotonic() + 60
            while (s := status(home)) is None or s["feishu"]["state"] != "connected":
                if time.monotonic() > deadline:
                    raise SystemExit("soak: the gateway did not connect within 60 s")
                time.sleep(0.1)  # polling the control socket at start-up
            start = sample(proc)
            sent: list = []
            stop = threading.Event()

            def traffic() -> None:
                n = 0
                while not stop.wait(1.0 / rate):
                    n += 1
                    sent.append(sims.feishu.inject_text(f"soak {n}", chat_id=f"oc_soak{n % CHATS}"))

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            began = time.monotonic()
            points: list[tuple[float, float]] = []
            next_fault, next_sample, faults = began + fault_every, began, 0
            while (now := time.monotonic()) < began + minutes * 60:
                if now >= next_sample:
                    points.append((now - began, sample(proc)[0]))
                    next_sample += SAMPLE_EVERY
                if now >= next_fault:
                    inject(FAULTS[faults % len(FAULTS)], sims, gateway)
                    faults += 1
                    next_fault += fault_every
                time.sleep(0.5)  # the soak's clock; faults and samples are scheduled above
            stop.set()
            sender.join(5)
            sims.llm.set_behaviour("alpha", "echo", latency=0.3)
            sims.feishu.hold_send_responses(False)
            settle = time.monotonic() + 120
            while not all(sims.feishu.replies_to(e) for e in sent) and time.monotonic() < settle:
                time.sleep(0.5)  # the last answers going out
            end = sample(proc)
            last = status(home) or {}
            gateway.stdin.close()
            gateway.wait(60)
            shown = [len([r for r in sims.feishu.replies_to(e) if not r.duplicate]) for e in sent]
    print(f"soak: {minutes:g} min, {len(sent)} messages at {rate:g}/s, {faults} faults ({', '.join(FAULTS)} in turn)")
    print(f"  lost: {shown.count(0)}   doubled: {sum(1 for n in shown if n > 1)}")
    print(
        f"  RSS {start[0]:.0f} -> {end[0]:.0f} MB (slope {slope_per_minute(points):+.2f} MB/min over"
        f" {len(points)} samples); fds {start[1]} -> {end[1]}; threads {start[2]} -> {end[2]}"
    )
    executor, feishu = last.get("executor", {}), last.get("feishu", {})
    print(f"  executor restarts {executor.get('restarts')}, Feishu reconnects {feishu.get('reconnects')}")


def inject(fault: str, sims: Simulators, gateway: subprocess.Popen) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] fault: {fault}", flush=True)
    if fault == "websocket":
        sims.feishu.drop_connection()
    elif fault == "executor":
        assert gateway.stdin is not None
        gateway.stdin.write("executor\n")
        gateway.stdin.flush()
    elif fault == "model":
        sims.llm.set_behaviour("alpha", "error")
        threading.Timer(10.0, sims.llm.set_behaviour, ("alpha", "echo", 0.3)).start()
    elif fault == "reply":
        sims.feishu.hold_send_responses(True)  # sends are taken, their answers withheld
        threading.Timer(12.0, sims.feishu.hold_send_responses, (False,)).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2.0, help="messages per second")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    run(args.minutes, args.rate, args.fault_every)


if __name__ == "__main__":
    main()
