"""Control socket: snapshot latency, and what 100 subscribers cost the gateway's throughput.

    .venv/bin/python bench/control_socket.py [--requests N] [--messages N] [--subscribers S]

One in-process gateway on the local simulators (like bench/throughput.py's gateway path).
1. `status` round trips over the socket from this process, one at a time: p50/p99.
2. Message throughput with no subscriber, then with S subscribers held by a separate process
   (as consoles would be) reading every snapshot and log line, then none again; the ratio is the
   subscribers' cost. Figures only; nothing is asserted.
"""

from __future__ import annotations

from _common import percentile  # first: loopback only, the repository on sys.path

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from throughput import (
    FEISHU_SECRET_ENV,
    LLM_KEY_ENV,
    START_TIMEOUT,
    STOP_TIMEOUT,
    drive,
    secrets_for_run,
    start_simulators,
    write_bench_profile,
)

from gateway_core.config import Home, load_profile
from gateway_core.control import request
from gateway_core.gateway import Gateway
from gateway_core.threads import BackgroundLoop

SUBSCRIBERS_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway_core.control import subscribe

    async def follow(path, ready, counts):
        async for event in subscribe(path):
            if "ok" in event:
                ready.release()
            counts[0] += 1

    async def main(path, n):
        ready, counts = asyncio.Semaphore(0), [0]
        tasks = [asyncio.create_task(follow(path, ready, counts)) for _ in range(n)]
        for _ in range(n):
            await asyncio.wait_for(ready.acquire(), 30)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(f"events {counts[0]}", flush=True)
        for task in tasks:
            task.cancel()

    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
    """
)


def rate(feishu, messages: int, tag: str) -> float:
    latencies, seconds = drive(feishu, messages, 20, 20, tag, 30 + 0.1 * messages)
    if len(latencies) < messages:
        raise RuntimeError(f"{tag}: only {len(latencies)} of {messages} answered")
    return messages / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--subscribers", type=int, default=100)
    args = parser.parse_args()

    app_id, secret, key = secrets_for_run()
    os.environ[FEISHU_SECRET_ENV], os.environ[LLM_KEY_ENV] = secret, key
    scratch = Path(tempfile.mkdtemp(prefix="gw-bench-control-"))
    home = Home(scratch / "home")
    os.environ["GATEWATCH_HOME"] = str(home.root)
    sims = start_simulators(app_id, secret, key)
    loop = BackgroundLoop(name="bench-gateway").start()
    subscribers = None
    try:
        write_bench_profile(home, "bench", sims, workers=8)
        gateway = loop.run(_make_gateway(load_profile(home, "bench"), home))
        loop.run(gateway.start(), timeout=START_TIMEOUT)
        if not loop.run(gateway.wait_connected(START_TIMEOUT), timeout=START_TIMEOUT + 5):
            print("gateway did not connect", file=sys.stderr)
            return 1
        path = home.socket_file("bench")
        rate(sims.feishu, 20, "warm")  # tokens, pools, some activity in the snapshot

        timings = []
        for _ in range(args.requests):
            started = time.perf_counter()
            request(path, "status")
            timings.append(time.perf_counter() - started)
        print(
            f"status over the socket, {args.requests} sequential requests: "
            f"p50 {statistics.median(timings) * 1000:.2f} ms, p99 {percentile(timings, 0.99) * 1000:.2f} ms"
        )

        base_before = rate(sims.feishu, args.messages, "none-a")
        subscribers = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBERS_SCRIPT, str(path), str(args.subscribers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if subscribers.stdout.readline().strip() != "ready":
            print("subscribers did not start", file=sys.stderr)
            return 1
        with_subs = rate(sims.feishu, args.messages, "subs")
        subscribers.stdin.write("\n")
        subscribers.stdin.flush()
        events = subscribers.stdout.readline().strip()
        subscribers.wait(10)
        base_after = rate(sims.feishu, args.messages, "none-b")
        baseline = (base_before + base_after) / 2
        print(
            f"throughput, {args.messages} messages, 20 in flight: no subscribers {base_before:.0f} and "
            f"{base_after:.0f} msgs/s; {args.subscribers} subscribers {with_subs:.0f} msgs/s ({events} received)"
        )
        print(
            f"ratio with/without {args.subscribers} subscribers: {with_subs / baseline:.2f}x "
            f"(dropped batches are counted per subscriber, never waited for)"
        )
        loop.run(gateway.stop(drain_timeout=5), timeout=STOP_TIMEOUT)
        return 0
    finally:
        if subscribers and subscribers.poll() is None:
            subscribers.kill()
            subscribers.wait(5)
        loop.stop(timeout=STOP_TIMEOUT)
        sims.stop()


async def _make_gateway(profile, home: Home) -> Gateway:
    return Gateway(profile, home, owner="headless")


if __name__ == "__main__":
    sys.exit(main())
