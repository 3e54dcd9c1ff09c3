"""Many conversations at once: N messages in M chats, a model that takes L seconds per answer.

    .venv/bin/python bench/concurrency.py [--messages N] [--chats M] [--latency L] [--max-in-flight K]

The gateway runs as `gatewatch run --headless` in a child process (so its RSS and thread count are
its own), against the Feishu and LLM simulators in this process, over 127.0.0.1, with Feishu's
rate limits enforced by the simulator (5 sends/s per chat, 50/s per app) and the gateway's own
limiters at the same numbers. All N messages are injected at once; the wall time runs from the
first inject to the last reply Feishu accepted.

The limit printed is the issue's: max(L·ceil(N/K), N/50 s) — models answering K at a time, and
Feishu taking 50 replies a second. No schedule can reach it exactly: the first reply cannot
leave before L, and after it 50 go out per second, so L + (ceil(N/50) − 1) s (and L·ceil(N/M)
when one chat has several turns, which are answered one after another) is a floor as well; both
ratios are printed. Benchmarks print figures; nothing here asserts timings. Exit status 0 when
every message was answered exactly once, 1 otherwise. One warm-up message goes first, not counted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

from gateway_core.config import Home
from gateway_core.control import ControlError, request
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile

FEISHU_SECRET_ENV = "GW_BENCH_FEISHU_SECRET"
LLM_KEY_ENV = "GW_BENCH_LLM_KEY"
MODEL = "bench-model"
PROFILE = "concurrency"
START_TIMEOUT = 60.0
APP_RATE = 50  # Feishu's replies per second per app


class Sampler:
    """Peak RSS and thread count of one process, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak_rss = 0
        self.peak_threads = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                rss, threads = self._process.memory_info().rss, self._process.num_threads()
            except psutil.Error:
                return
            self.peak_rss, self.peak_threads = max(self.peak_rss, rss), max(self.peak_threads, threads)
            self.samples += 1

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def __enter__(self) -> "Sampler":
        self._cpu_at_start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cpu_seconds = self._cpu() - self._cpu_at_start


def start_gateway(home: Home, secret: str, key: str) -> subprocess.Popen:
    env = dict(os.environ, GATEWATCH_HOME=str(home.root), PYTHONUNBUFFERED="1")
    env[FEISHU_SECRET_ENV], env[LLM_KEY_ENV] = secret, key
    return subprocess.Popen(
        [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", PROFILE],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_gateway(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child, by its PID
        process.wait(10)
        return None


def gateway_status(home: Home) -> dict | None:
    try:
        return request(home.socket_file(PROFILE), "status", timeout=5)["status"]
    except ControlError:
        return None


def run(args: argparse.Namespace, scratch: Path) -> int:
    app_id = f"cli_bench{uuid.uuid4().hex[:10]}"
    secret, key = "bench-secret-" + uuid.uuid4().hex[:12], "bench-key-" + uuid.uuid4().hex[:12]
    home = Home(scratch / "home")
    with Simulators(feishu={"app_id": app_id, "app_secret": secret}, llm={"api_key": key}) as sims:
        write_sim_profile(
            home,
            PROFILE,
            sims,
            FEISHU_SECRET_ENV,
            LLM_KEY_ENV,
            models=(MODEL,),
            probe_interval=2.0,
            max_workers=8,
            request_timeout=args.latency + 60,
            max_in_flight=args.max_in_flight,
        )
        process = start_gateway(home, secret, key)
        try:
            sims.feishu.wait_for_connection(1, timeout=START_TIMEOUT)
            # Not counted: the SDK's first event is slow (lazy imports, seconds on a busy
            # machine), and the first answer opens the HTTP pools and fetches the token.
            sims.llm.set_behaviour(MODEL, "echo")
            sims.feishu.wait_for_replies(sims.feishu.inject_text("warm-up", chat_id="oc_warm"), 1, START_TIMEOUT)
            sims.llm.set_behaviour(MODEL, "echo", latency=args.latency)
            with Sampler(process.pid) as sampler:
                started = time.time()
                events = [
                    sims.feishu.inject_text(f"message {i}", chat_id=f"oc_bench_{i % args.chats}")
                    for i in range(args.messages)
                ]
                ids = {e.message_id for e in events}

                def replied() -> set[str]:
                    return {m.in_reply_to for m in sims.feishu.sent if m.kind == "reply"} & ids

                deadline = time.monotonic() + args.timeout
                while len(replied()) < len(ids) and time.monotonic() < deadline:
                    time.sleep(0.05)  # polled: a predicate under the simulator's lock would slow it
            status = gateway_status(home)
        finally:
            code = stop_gateway(process)
        replies = [m for m in sims.feishu.sent if m.kind == "reply" and m.in_reply_to in ids]
        refused = sum(1 for _, _, at in sims.feishu.rate_limited if at >= started)
        asked = sorted(r.at - started for r in sims.llm.requests if r.at >= started)
        acked = sims.feishu.is_acked
        unacked = sum(1 for e in events if not acked(e))

    answered = {m.in_reply_to for m in replies}
    wall = max(m.at for m in replies) - started if replies else float("nan")
    latencies = sorted(m.at - started for m in replies)
    n, k, m_chats, latency = args.messages, args.max_in_flight, args.chats, args.latency
    limit = max(latency * math.ceil(n / k), n / APP_RATE)
    floor = max(limit, latency + math.ceil(n / APP_RATE) - 1, latency * math.ceil(n / m_chats))

    print()
    print(f"{n} messages in {m_chats} chats, model latency {latency:g} s, max_in_flight {k}")
    print(f"answered        {len(answered)}/{n} ({len(replies) - len(answered)} duplicate replies)")
    print(f"wall time       {wall:.2f} s")
    print(f"limit           {limit:.2f} s = max(L*ceil(N/max_in_flight), N/50 s)   ratio {wall / limit:.2f}x")
    print(f"floor           {floor:.2f} s = also L + ceil(N/50) - 1 s, L*ceil(N/M)      ratio {wall / floor:.2f}x")
    if latencies:
        print(
            f"reply after     p50 {latencies[len(latencies) // 2]:.2f} s, last {latencies[-1]:.2f} s "
            f"(from the first inject)"
        )
    print(
        f"gateway RSS     peak {sampler.peak_rss / 2**20:.0f} MB, threads peak {sampler.peak_threads} "
        f"({sampler.samples} samples); CPU {sampler.cpu_seconds:.1f} s in {wall:.1f} s"
    )
    print(f"Feishu refused  {refused} sends as too fast (230020), each retried by the gateway")
    if asked:
        print(
            f"LLM requests    {len(asked)}, arriving from {asked[0]:.2f} s to {asked[-1]:.2f} s "
            f"(p50 {asked[len(asked) // 2]:.2f} s) after the first inject; {unacked} events unacked"
        )
    if status is not None:
        executor, pipeline = status["executor"], status["pipeline"]
        print(
            f"executor        {executor['state']}, {executor['restarts']} rebuilds, "
            f"{executor['completed']} pool jobs done"
        )
        print(
            f"pipeline        {pipeline['answered']} answered, {pipeline['apologies']} apologies, "
            f"{pipeline['reply_failures']} reply failures"
        )
    print(f"gateway exit    {code}")
    complete = len(answered) == n and len(replies) == n
    if not complete:
        print("INCOMPLETE: not every message was answered exactly once")
    return 0 if complete else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="N, messages injected at once (1000)")
    parser.add_argument("--chats", type=int, default=None, help="M, chats they rotate over (default N)")
    parser.add_argument("--latency", type=float, default=5.0, help="L, seconds the model takes (5)")
    parser.add_argument("--max-in-flight", type=int, default=256, help="gateway.max_in_flight (256)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for all replies")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.latency < 0 or args.max_in_flight < 1:
        parser.error("--messages and --max-in-flight must be >= 1, --latency >= 0")
    args.chats = args.chats or args.messages
    args.timeout = args.timeout or 60 + 3 * (
        args.latency * math.ceil(args.messages / args.max_in_flight) + args.messages / APP_RATE
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"gatewatch concurrency: machine {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; everything over 127.0.0.1"
    )
    scratch = Path(tempfile.mkdtemp(prefix="gw-bench-conc-"))
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
