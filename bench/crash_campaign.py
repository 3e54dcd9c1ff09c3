"""Crash campaign: N kill -9 at random moments during steady traffic; nothing lost, nothing doubled.

A real `gatewatch run --headless` serves a profile against the Feishu and LLM simulators while a
traffic thread sends messages to several chats at a steady rate (the model takes `--llm-latency`
seconds, so answers are always in flight). At a random moment the gateway gets SIGKILL and a new one
is started at once; N times. Then the last owner gets time to catch up and is stopped with SIGTERM.

Printed: messages sent, lost (no reply shown), duplicated (more than one reply shown; repeats that
Feishu swallowed by uuid are counted separately), extra LLM calls caused by the crashes, and the
journal's arrival write (the part of the ack path this change added) p50/p99/max over every write,
sampled from each gateway's status over the control socket, as a ratio of Feishu's 3 s ack budget.

    .venv/bin/python bench/crash_campaign.py [--kills 10] [--rate 20] [--seed 1]
"""

from __future__ import annotations

from _common import percentile  # first: loopback only, the repository on sys.path

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from gateway_core.config import Home
from gateway_core.control import ControlError, request
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile

PROFILE = "crash"
ACK_BUDGET = 3.0  # seconds Feishu gives the handler before it counts an event as not handled
CHATS = 8


class Gateway:
    """One headless gateway process, and the journal write times read from its status."""

    def __init__(self, home: Home):
        self.home = home
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", PROFILE],
            env={**os.environ, "GATEWATCH_HOME": str(home.root)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.seen_writes = 0

    def sample_write_times(self, into: list[float]) -> None:
        """Add the arrival writes done since the last sample (the status keeps the latest 64)."""
        try:
            status = request(self.home.socket_file(PROFILE), "status", timeout=2)["status"]
        except (ControlError, OSError, KeyError):
            return
        if status["owner"] is None or status["owner"]["pid"] != self.process.pid:
            return
        pipeline = status["pipeline"]
        new = pipeline["journal_writes"] - self.seen_writes
        if new > 0:
            into.extend(pipeline["journal_write_times"][-new:])
            self.seen_writes = pipeline["journal_writes"]

    def serving(self) -> bool:
        try:
            status = request(self.home.socket_file(PROFILE), "status", timeout=2)["status"]
        except (ControlError, OSError):
            return False
        return status["owner"]["pid"] == self.process.pid and status["feishu"]["state"] == "connected"


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling real processes; bounded by the deadline
    return True


def wait_serving(gateway: "Gateway") -> None:
    if not wait_until(gateway.serving, 30):
        gateway.process.kill()
        gateway.process.wait(10)
        raise SystemExit(f"crash campaign: gateway PID {gateway.process.pid} did not start serving within 30 s")


def traffic(sims: Simulators, rate: float, stop: threading.Event, sent: list) -> None:
    n = 0
    while not stop.wait(1.0 / rate):
        n += 1
        sent.append(sims.feishu.inject_text(f"message {n}", chat_id=f"oc_chat{n % CHATS}"))


def run(kills: int, rate: float, llm_latency: float, seed: int) -> int:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="gatewatch-crash-") as tmp:
        home = Home(Path(tmp) / "home")
        secret, key = "crash-secret-" + uuid.uuid4().hex[:8], "crash-key-" + uuid.uuid4().hex[:8]
        with Simulators(
            feishu={"app_id": f"cli_{uuid.uuid4().hex[:12]}", "app_secret": secret},
            llm={"api_key": key},
        ) as sims:
            sims.llm.set_behaviour("alpha", "echo", latency=llm_latency)
            write_sim_profile(home, PROFILE, sims, secret_files=(secret, key), models=("alpha",))
            write_times: list[float] = []
            sent: list = []
            stop = threading.Event()
            sender = threading.Thread(target=traffic, args=(sims, rate, stop, sent), daemon=True)
            gateway = Gateway(home)
            wait_serving(gateway)
            sender.start()
            for _ in range(kills):
                deadline = time.monotonic() + rng.uniform(0.3, 3.0)  # a random moment in the traffic
                while time.monotonic() < deadline:
                    gateway.sample_write_times(write_times)
                    time.sleep(0.2)  # the sampling period; the status keeps the latest 64 writes
                gateway.process.send_signal(signal.SIGKILL)
                gateway.process.wait(10)
                gateway = Gateway(home)
                wait_serving(gateway)
            stop.set()
            sender.join(5)
            events = list(sent)

            def all_answered() -> bool:
                gateway.sample_write_times(write_times)
                return all(sims.feishu.replies_to(e) for e in events)

            if not wait_until(all_answered, 120):
                print("crash campaign: some messages still unanswered after 120 s (counted as lost below)")
            gateway.process.send_signal(signal.SIGTERM)
            code = gateway.process.wait(30)
            shown = [len([r for r in sims.feishu.replies_to(e) if not r.duplicate]) for e in events]
            swallowed = sum(len([r for r in sims.feishu.replies_to(e) if r.duplicate]) for e in events)
            llm_calls = len(sims.llm.requests)

    lost, doubled = shown.count(0), sum(1 for n in shown if n > 1)
    print(
        f"crash campaign: {kills} kill -9 during {len(events)} messages at {rate:g}/s "
        f"(model latency {llm_latency:g}s, seed {seed}); last owner exited {code}"
    )
    print(f"  lost: {lost}   duplicated (shown twice): {doubled}")
    print(
        f"  repeats Feishu swallowed by reply uuid: {swallowed}; LLM calls: {llm_calls} "
        f"for {len(events)} messages ({llm_calls - len(events)} re-asked after a crash)"
    )
    if write_times:
        p50, p99 = percentile(write_times, 0.50), percentile(write_times, 0.99)
        print(
            f"  journal arrival write over {len(write_times)} writes: p50 {p50 * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms, max {max(write_times) * 1000:.2f} ms, mean "
            f"{statistics.fmean(write_times) * 1000:.2f} ms; p99 = {p99 / ACK_BUDGET:.2%} of the 3 s ack budget"
        )
    return 0 if lost == 0 and doubled == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second (the sim profile answers ~8/s)")
    parser.add_argument("--llm-latency", type=float, default=0.5, help="seconds the model takes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return run(args.kills, args.rate, args.llm_latency, args.seed)


if __name__ == "__main__":
    sys.exit(main())
