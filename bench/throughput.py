"""Throughput and end-to-end latency of the gateway, against the bare SDK, in one run.

    .venv/bin/python bench/throughput.py [--messages N] [--concurrency C] [--quick] [--rounds R]

Every path runs over real 127.0.0.1 sockets against the local simulators (gateway_core.sim):

* gateway    Feishu simulator -> lark-oapi ws.Client -> Gateway (pipeline and scheduler, streaming
             LlmClient, ReplySender, held executor, file logging, supervisor) -> LLM simulator
             -> reply POST
* sdk+llm    the bare SDK: ws.Client handler -> thread pool -> one chat completion -> reply POST
* sdk        the bare SDK: ws.Client handler -> thread pool -> reply POST (no LLM at all)

N messages are injected keeping C in flight (a new one as soon as a reply lands). A message's
latency is from just before it is injected to the moment the Feishu simulator receives its reply
POST (`SentMessage.at`), both `time.time()` in this process; messages/s is N over first inject ->
last reply. A short warm-up per run (tokens, connection pools) is not counted. Each path runs
--rounds times (default 3), interleaved in rotating order, and its rounds are pooled: the machine
is shared by the simulators, the SDK and the gateway, so one round alone is noisy. The LLM simulator
answers at once (echo, 0 ms), so "gateway / sdk+llm" is the gateway's own overhead and
"gateway / sdk" also includes the LLM hop. Benchmarks print figures; nothing here asserts timings.
Exit status: 0 when every message of every path was answered, 1 otherwise.
"""

from __future__ import annotations

import _common  # first: loopback only, the repository on sys.path

import argparse
import concurrent.futures
import gc
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Imported here, on the main thread with no running loop: lark binds its module-global loop
# (`lark_oapi.ws.client.loop`) at first import, and a client whose loop was bound inside a running
# loop fails in start() with "This event loop is already running".
import lark_oapi as lark
from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile
from gateway_core.threads import BackgroundLoop
from tests.sim.bare_sdk import BareSdkClient

FEISHU_SECRET_ENV = "GW_BENCH_FEISHU_SECRET"
LLM_KEY_ENV = "GW_BENCH_LLM_KEY"
MODEL = "bench-model"
SYSTEM_PROMPT = "You are a helpful assistant."
WORKERS = 8  # the gateway's default executor size; the baselines get a pool of the same size
START_TIMEOUT = 30.0  # seconds for a gateway / SDK client to start and connect
UNLIMITED = 1_000_000  # replies per second: the gateway's limiters never hold a reply back
STOP_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------- measurement


@dataclass
class RunResult:
    path: str
    description: str
    messages: int  # injected (measured part)
    latencies: list[float] = field(default_factory=list)  # seconds, answered messages only
    seconds: float = 0.0  # first inject -> last reply
    notes: list[str] = field(default_factory=list)
    failed: str | None = None  # why the run did not complete
    round_rates: list[float] = field(default_factory=list)  # msgs/s of each round, once merged
    gc_pauses: list[float] = field(default_factory=list)  # full GCs during the measured part(s)

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float | None:
        return self.answered / self.seconds if self.seconds > 0 and self.answered else None

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the latencies, in seconds."""
        return _common.percentile(self.latencies, fraction) if self.latencies else None

    @property
    def complete(self) -> bool:
        return self.failed is None and self.answered == self.messages


def merge(rounds: list[RunResult]) -> RunResult:
    """One path's rounds pooled: all latencies, total messages over total seconds."""
    first = next((r for r in rounds if r.description != "(crashed)"), rounds[0])
    merged = RunResult(first.path, first.description, sum(r.messages for r in rounds))
    for r in rounds:
        merged.latencies += r.latencies
        merged.gc_pauses += r.gc_pauses
        merged.seconds += r.seconds
        merged.notes += [n for n in r.notes if n not in merged.notes]
        if r.rate is not None:
            merged.round_rates.append(r.rate)
    failures = [f"round {i + 1}: {r.failed}" for i, r in enumerate(rounds) if r.failed]
    merged.failed = "; ".join(failures) or None
    return merged


def drive(feishu, n: int, concurrency: int, chats: int, tag: str, timeout: float) -> tuple[list[float], float]:
    """Inject `n` text messages keeping `concurrency` unanswered; return (latencies, seconds).

    A collector thread follows the simulator's send log and frees a slot per first reply; the
    injecting thread never polls. Returns what was answered by the deadline (may be < n).
    """
    start_index = len(feishu.sent)
    slots = threading.Semaphore(concurrency)
    injected: dict[str, float] = {}  # message_id -> time.time() just before injecting
    replied: dict[str, float] = {}  # message_id -> SentMessage.at of its first reply
    stop = threading.Event()
    all_in = threading.Event()

    def collect() -> None:
        seen = start_index

        def newer():
            sent = feishu.sent
            return sent if len(sent) > seen else None

        while not stop.is_set():
            try:
                sent = feishu.wait_for(newer, timeout=0.5)
            except TimeoutError:
                continue
            for message in sent[seen:]:
                if message.kind == "reply" and message.in_reply_to not in replied:
                    replied[message.in_reply_to] = message.at
                    slots.release()
            seen = len(sent)
            if len(replied) >= n:
                all_in.set()
                return

    collector = threading.Thread(target=collect, name=f"bench-collect-{tag}", daemon=True)
    collector.start()
    deadline = time.monotonic() + timeout
    try:
        for i in range(n):
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break  # out of time: report what was answered
            chat = i % chats
            at = time.time()
            event = feishu.inject_text(
                f"{tag} message {i}", chat_id=f"oc_{tag}_{chat}", sender_open_id=f"ou_{tag}_{chat}"
            )
            injected[event.message_id] = at
        all_in.wait(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        collector.join(5)
    latencies = [replied[m] - at for m, at in injected.items() if m in replied]
    ends = [replied[m] for m in injected if m in replied]
    seconds = max(ends) - min(injected.values()) if ends else 0.0
    return latencies, seconds


class FullCollections:
    """Counts the full (generation 2) garbage collections while active, and how long they took.

    With lark-oapi imported a process tracks ~350k objects, so one full collection stops every
    thread for a noticeable time; when it lands inside a run it shows in that run's tail latency.
    """

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started: float | None = None

    def _callback(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses.append(time.perf_counter() - self._started)
            self._started = None

    def __enter__(self) -> "FullCollections":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def measure(result: RunResult, feishu, args: argparse.Namespace) -> None:
    """Warm-up (not counted), a full collection (not counted), then the measured run."""
    if args.warmup:
        latencies, _ = drive(feishu, args.warmup, args.concurrency, args.chats, "warm", args.timeout)
        if len(latencies) < args.warmup:
            result.failed = f"warm-up: only {len(latencies)} of {args.warmup} messages answered"
            return
    gc.collect()  # every path starts from the same heap state; later collections are its own
    with FullCollections() as collections:
        result.latencies, result.seconds = drive(
            feishu, args.messages, args.concurrency, args.chats, "bench", args.timeout
        )
    result.gc_pauses = collections.pauses
    if result.answered < args.messages:
        result.failed = f"only {result.answered} of {args.messages} messages answered within {args.timeout:g}s"


def secrets_for_run() -> tuple[str, str, str]:
    """A unique app_id (lark caches tenant tokens per app_id per process) and fresh secrets."""
    return (
        f"cli_bench{uuid.uuid4().hex[:10]}",
        "bench-secret-" + uuid.uuid4().hex[:12],
        "bench-key-" + uuid.uuid4().hex[:12],
    )


def start_simulators(app_id: str, secret: str, key: str) -> Simulators:
    # Feishu's rate limits (50 replies/s per app) are off on both sides: this measures overhead,
    # and the bare SDK does not retry a refused send. bench/concurrency.py runs with them on.
    feishu = {"app_id": app_id, "app_secret": secret, "chat_rate_limit": None, "app_rate_limit": None}
    sims = Simulators(feishu=feishu, llm={"api_key": key}).start()
    sims.llm.set_behaviour(MODEL, "echo", latency=0.0)
    return sims


# ---------------------------------------------------------------------------------- gateway path


def write_bench_profile(home: Home, name: str, sims: Simulators, workers: int) -> None:
    """Production-like timings (probe every 2 s, INFO to a rotating file), pointed at the sims."""
    write_sim_profile(
        home,
        name,
        sims,
        FEISHU_SECRET_ENV,
        LLM_KEY_ENV,
        models=(MODEL,),
        probe_interval=2.0,
        max_workers=workers,
        chat_replies_per_second=UNLIMITED,
        app_replies_per_second=UNLIMITED,
        # The bare SDK shows no typing sign: off here, so both paths do the same work. With it on,
        # each answer costs two more Feishu calls (add, remove the reaction): 0.72-0.76x here.
        feishu_extra="typing_indicator = false",
    )


async def _new_gateway(profile, home: Home) -> Gateway:
    return Gateway(profile, home, owner="headless", log_to_file=True)  # built on its own loop


def run_gateway(args: argparse.Namespace, scratch: Path) -> RunResult:
    result = RunResult("gateway", "SDK -> gateway -> LLM sim -> reply", args.messages)
    app_id, secret, key = secrets_for_run()
    os.environ[FEISHU_SECRET_ENV], os.environ[LLM_KEY_ENV] = secret, key
    home_root = scratch / "gatewatch-home"
    os.environ["GATEWATCH_HOME"] = str(home_root)
    home = Home(home_root)
    sims = start_simulators(app_id, secret, key)
    try:
        write_bench_profile(home, "bench", sims, args.workers)
        profile = load_profile(home, "bench")
        loop = BackgroundLoop(name="bench-gateway").start()
        try:
            gateway = loop.run(_new_gateway(profile, home))
            loop.run(gateway.start(), timeout=START_TIMEOUT)
            try:
                if not loop.run(gateway.wait_connected(START_TIMEOUT), timeout=START_TIMEOUT + 5):
                    result.failed = f"gateway did not connect: {gateway.feishu.snapshot().last_error}"
                    return result
                measure(result, sims.feishu, args)
                executor_state = gateway.snapshot().executor.state
            finally:
                unfinished = loop.run(gateway.stop(drain_timeout=10), timeout=STOP_TIMEOUT)
                if unfinished:
                    result.notes.append(f"{unfinished} answers unfinished at stop")
            pipeline = gateway.snapshot().pipeline  # after the drain: every answer's bookkeeping done
            result.notes.append(
                f"pipeline: {pipeline.received} received, {pipeline.answered} answered, "
                f"{pipeline.apologies} apologies, {pipeline.reply_failures} reply failures, "
                f"{pipeline.duplicates} duplicates; executor {executor_state} while measuring; "
                f"{len(sims.llm.requests)} LLM requests"
            )
        finally:
            loop.stop(timeout=STOP_TIMEOUT)
        log_file = home.log_file("bench")
        if log_file.exists():
            result.notes.append(f"gateway log: {log_file.stat().st_size / 1024:.0f} KiB at INFO")
    finally:
        sims.stop()
    return result


# ---------------------------------------------------------------------------------- bare SDK paths


def run_bare_sdk(args: argparse.Namespace, with_llm: bool) -> RunResult:
    if with_llm:
        result = RunResult("sdk+llm", "bare SDK -> pool -> LLM sim -> reply", args.messages)
    else:
        result = RunResult("sdk", "bare SDK -> pool -> reply (no LLM)", args.messages)
    app_id, secret, key = secrets_for_run()
    sims = start_simulators(app_id, secret, key)
    pool = concurrent.futures.ThreadPoolExecutor(args.workers, thread_name_prefix=f"bench-{result.path}")
    api = (
        lark.Client.builder()
        .app_id(app_id)
        .app_secret(secret)
        .domain(sims.feishu.domain)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )
    http = None
    if with_llm:
        http = httpx.Client(
            base_url=sims.llm.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(10.0),
            trust_env=False,
        )
    errors: list[str] = []

    def answer(message_id: str, text: str) -> None:
        """Blocking work, on the pool: (optionally) ask the LLM, then reply with the same uuid rule."""
        try:
            if http is not None:
                response = http.post(
                    "/chat/completions",
                    json={
                        "model": MODEL,
                        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
                    },
                )
                response.raise_for_status()
                text = response.json()["choices"][0]["message"]["content"]
            body = (
                ReplyMessageRequestBody.builder()
                .content(json.dumps({"text": text}, ensure_ascii=False))
                .msg_type("text")
                .uuid(f"bench-{message_id}")
                .build()
            )
            reply = api.im.v1.message.reply(
                ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()
            )
            if not reply.success():
                errors.append(f"reply code {reply.code}")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    def handler(data) -> None:
        """On the SDK's loop thread: hand off and return at once, so the SDK acks."""
        message = data.event.message
        try:
            text = json.loads(message.content or "{}").get("text", "")
        except ValueError:
            text = ""
        pool.submit(answer, message.message_id, text or "?")

    client = None
    try:
        client = BareSdkClient(sims.feishu.domain, app_id, secret, handler).start()
        try:
            sims.feishu.wait_for_connection(1, timeout=START_TIMEOUT)
        except TimeoutError as exc:
            result.failed = f"the SDK did not connect: {client.error or exc}"
            return result
        measure(result, sims.feishu, args)
        result.notes.append(f"{len(sims.llm.requests)} LLM requests")
    finally:
        if client is not None:
            client.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        sims.stop()  # a reply still blocked in a request now fails at once
        for thread in list(getattr(pool, "_threads", ())):
            thread.join(5)
        if http is not None:
            http.close()
    if errors:
        result.notes.append(f"{len(errors)} errors, first: {errors[0]}")
    return result


# ---------------------------------------------------------------------------------- report


def fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    print()
    header = f"{'path':<9} {'what':<38} {'answered':>11} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8}   msgs/s by round"
    print(header)
    print("-" * len(header))
    for r in results:
        answered = f"{r.answered}/{r.messages}"
        by_round = " ".join(f"{rate:.0f}" for rate in r.round_rates)
        print(
            f"{r.path:<9} {r.description:<38} {answered:>11} {fmt(r.rate):>8} "
            f"{fmt(r.percentile(0.50), 1000, 2):>8} {fmt(r.percentile(0.99), 1000, 2):>8}   {by_round}"
        )
    if args.rounds > 1:
        print(
            f"(each path ran {args.rounds} times, interleaved; msgs/s is all answered over all "
            f"measured seconds, percentiles over all latencies)"
        )
    by_path = {r.path: r for r in results}
    gateway = by_path.get("gateway")
    if gateway is not None:
        print()
        print("gateway / baseline    throughput   p50 latency   p99 latency")
        for name, label in (("sdk+llm", "sdk+llm (same LLM hop)"), ("sdk", "sdk (no LLM hop)")):
            base = by_path.get(name)
            if base is None:
                continue
            print(
                f"  vs {label:<22} {ratio(gateway.rate, base.rate):>8}   "
                f"{ratio(gateway.percentile(0.5), base.percentile(0.5)):>10}   "
                f"{ratio(gateway.percentile(0.99), base.percentile(0.99)):>10}"
            )
        print(
            "  (throughput < 1x and latency > 1x mean the gateway is slower; 'vs sdk' also counts the LLM round trip)"
        )
    print()
    for r in results:
        if r.gc_pauses:
            pauses = ", ".join(f"{p * 1000:.0f}" for p in r.gc_pauses)
            print(f"{r.path}: {len(r.gc_pauses)} full GC(s) while measuring, stopping every thread for {pauses} ms")
        else:
            print(f"{r.path}: no full GC while measuring")
        for note in r.notes:
            print(f"{r.path}: {note}")
        if r.failed:
            print(f"{r.path}: INCOMPLETE: {r.failed}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per path (default 500)")
    parser.add_argument("--concurrency", type=int, default=20, help="messages in flight (default 20)")
    parser.add_argument("--quick", action="store_true", help="100 messages per path, one round")
    parser.add_argument(
        "--rounds", type=int, default=None, help="times each path runs, interleaved, pooled (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--chats", type=int, default=None, help="distinct chats the messages rotate over (default: = concurrency)"
    )
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help=f"gateway executor / baseline pool threads (default {WORKERS})"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="messages per path before measuring, not counted (default: = concurrency)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds allowed per measured run (default 30 + 0.1 s per message)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = 100
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.messages < 1 or args.concurrency < 1 or args.rounds < 1 or args.workers < 2:
        parser.error("--messages, --concurrency and --rounds must be >= 1, --workers >= 2")
    args.chats = args.chats or args.concurrency
    args.warmup = args.concurrency if args.warmup is None else max(0, args.warmup)
    args.timeout = args.timeout or 30.0 + 0.1 * args.messages
    return args


def arm_watchdog(seconds: float) -> threading.Timer:
    """Last resort for "exits by itself": every wait has a timeout, but a stuck thread must not
    keep the process alive."""

    def fire() -> None:
        print(f"\nbench: still running after {seconds:.0f}s; exiting", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = (
        ("gateway", lambda scratch: run_gateway(args, scratch)),
        ("sdk+llm", lambda scratch: run_bare_sdk(args, with_llm=True)),
        ("sdk", lambda scratch: run_bare_sdk(args, with_llm=False)),
    )
    per_run = 2 * args.timeout + START_TIMEOUT + 2 * STOP_TIMEOUT  # warm-up, measured, start, stop
    watchdog = arm_watchdog(args.rounds * len(runs) * per_run)
    print(
        f"gatewatch throughput: {args.messages} messages per path per round, {args.rounds} round(s), "
        f"{args.concurrency} in flight, {args.chats} chats, {args.workers} worker threads, "
        f"warm-up {args.warmup} per run (not counted)"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()} "
        f"({platform.python_implementation()}); lark-oapi {importlib.metadata.version('lark-oapi')}"
    )
    print("LLM simulator: echo, 0 ms added latency; everything over 127.0.0.1")
    rounds: dict[str, list[RunResult]] = {name: [] for name, _ in runs}
    scratch = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    try:
        for n in range(args.rounds):
            order = runs[n % len(runs) :] + runs[: n % len(runs)]  # rotate: no path always goes first
            for name, run in order:
                print(f"round {n + 1}/{args.rounds}: {name} ...", flush=True)
                try:
                    result = run(scratch / f"{name}-{n + 1}")
                except Exception as exc:  # report the others all the same
                    failed = f"{type(exc).__name__}: {exc}"
                    result = RunResult(name, "(crashed)", args.messages, failed=failed)
                rounds[name].append(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = [merge(rounds[name]) for name, _ in runs]
    report(results, args)
    watchdog.cancel()
    watchdog.join(1)
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
