"""Streaming replies through the whole gateway: how soon the model's first token is on the card.

    .venv/bin/python bench/stream_e2e.py [--answers N] [--words W] [--pace S]

A gateway (reply_mode = "stream") on the local simulators, the real lark-oapi WebSocket in and
the real CardKit calls out: N questions, one after another, each answered by a simulated model
that streams W words, one every S seconds. The model's first token leaves the LLM simulator the
moment the request arrives (only later words are paced), so "first visible" is the time from the
LLM request's arrival to the card's first content update, both stamped by the simulators.
Printed as p50/p95 and as a ratio to the issue's 1 s target; also updates per card and the share
of tokens coalesced. Figures only; nothing is asserted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from gateway_core.sim.profile import write_sim_profile
from gateway_core.threads import in_own_thread

SECRET, KEY = "bench-secret", "bench-key"
SECRET_ENV, KEY_ENV = "GATEWATCH_BENCH_FEISHU_SECRET", "GATEWATCH_BENCH_LLM_KEY"
TARGET = 1.0  # seconds from the first token to visible content (issue 13)


async def run(answers: int, words: int, pace: float) -> None:
    os.environ[SECRET_ENV], os.environ[KEY_ENV] = SECRET, KEY
    with (
        tempfile.TemporaryDirectory(prefix="gatewatch-bench-") as tmp,
        Simulators(
            feishu={"app_id": f"cli_{uuid.uuid4().hex[:8]}", "app_secret": SECRET},
            llm={"api_key": KEY},
        ) as sims,
    ):
        home = Home(Path(tmp))
        write_sim_profile(home, "bench", sims, SECRET_ENV, KEY_ENV, reply_mode="stream")
        sims.llm.pace("alpha", pace)
        gateway = Gateway(load_profile(home, "bench"), home, owner="headless", log_to_file=False)
        await gateway.start()
        try:
            if not await gateway.wait_connected(30):
                raise SystemExit("Feishu did not connect")
            firsts, updates = [], []
            question = " ".join(f"w{n}" for n in range(words - 1))  # + "[alpha]": W words
            for _ in range(answers):
                before = len(sims.llm.requests)
                event = sims.feishu.inject_text(question)
                card = await in_own_thread(sims.feishu.wait_card_finished, event, 60)
                request = sims.llm.requests[before]
                firsts.append(card.content_updates[0].at - request.at)
                updates.append(len(card.content_updates))
        finally:
            await gateway.stop(drain_timeout=5)
    firsts.sort()
    p95 = firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))]
    print(f"answers: {answers} x {words} words, one every {pace * 1000:.0f} ms")
    print(
        f"first token visible on the card: p50 {statistics.median(firsts) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms ({p95 / TARGET:.2f}x of the 1 s target)"
    )
    print(
        f"content updates per card: median {statistics.median(updates):.0f} "
        f"({1 - statistics.median(updates) / words:.0%} of tokens coalesced)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--pace", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(run(args.answers, args.words, args.pace))


if __name__ == "__main__":
    main()
