"""Long answers through the whole gateway: how soon the last part is seen, and in how many parts.

    .venv/bin/python bench/long_answer.py [--answers N] [--chars C]

A gateway on the local simulators (the real lark-oapi WebSocket in, real replies and CardKit
calls out), asked N questions in text mode and N in stream mode; the simulated model answers each
with the same C-character answer (Chinese paragraphs, quotes, a code block: sim/answers.py). The
simulators enforce Feishu's limits: 150 KB a text request, 30 KB a card, 5 sends/s to one chat.

Printed per mode, as figures and ratios to the limits:
- time from the model's request to the last part being visible (p50, max);
- parts per answer against the fewest Feishu's size limit allows (the answer's bytes as Feishu
  measures them, divided by the limit, rounded up): 1.00x means every part but the last is full;
- the floor Feishu's 5 sends/s per chat sets on that many sends (text mode).
Nothing is asserted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import functools
import json
import math
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.parts import CARD_JSON_LIMIT, TEXT_BODY_LIMIT
from gateway_core.sim import Simulators
from gateway_core.sim.answers import long_answer
from gateway_core.sim.profile import write_sim_profile
from gateway_core.threads import in_own_thread

SECRET, KEY = "bench-secret", "bench-key"
SECRET_ENV, KEY_ENV = "GATEWATCH_BENCH_FEISHU_SECRET", "GATEWATCH_BENCH_LLM_KEY"
CHAT_SENDS_PER_SECOND = 5  # Feishu's limit to one chat


def fewest_parts(answer: str, mode: str) -> int:
    """The fewest parts Feishu's limit allows: the answer's bytes as measured, over the limit."""
    if mode == "text":
        escaped = json.dumps(json.dumps({"text": answer}, ensure_ascii=False), ensure_ascii=False)
        return math.ceil(len(escaped.encode()) / TEXT_BODY_LIMIT)
    return math.ceil(len(json.dumps(answer, ensure_ascii=False).encode()) / CARD_JSON_LIMIT)


async def run(answers: int, chars: int) -> None:
    os.environ[SECRET_ENV], os.environ[KEY_ENV] = SECRET, KEY
    answer = long_answer(chars)
    for mode in ("text", "stream"):
        with (
            tempfile.TemporaryDirectory(prefix="gatewatch-bench-") as tmp,
            Simulators(
                feishu={"app_id": f"cli_{uuid.uuid4().hex[:8]}", "app_secret": SECRET},
                llm={"api_key": KEY},
            ) as sims,
        ):
            home = Home(Path(tmp))
            write_sim_profile(home, "bench", sims, SECRET_ENV, KEY_ENV, reply_mode=mode)
            sims.llm.answer_with("alpha", answer)
            gateway = Gateway(load_profile(home, "bench"), home, owner="headless", log_to_file=False)
            await gateway.start()
            try:
                if not await gateway.wait_connected(30):
                    raise SystemExit("Feishu did not connect")
                times, parts, whole = [], [], 0
                for _ in range(answers):
                    before = len(sims.llm.requests)
                    event = sims.feishu.inject_text("the whole report, please")
                    shown = await in_own_thread(
                        sims.feishu.wait_for, functools.partial(_whole, sims, event, answer), 120
                    )
                    times.append(shown[1] - sims.llm.requests[before].at)
                    parts.append(shown[0])
                    whole += 1
            finally:
                await gateway.stop(drain_timeout=5)
        fewest = fewest_parts(answer, mode)
        median_parts = statistics.median(parts)
        kind = "text replies" if mode == "text" else "cards"
        print(f"{mode} mode: {whole}/{answers} answers of {chars:,} characters arrived whole")
        print(
            f"  time to the last part: p50 {statistics.median(times):.2f} s, max {max(times):.2f} s"
            + (
                f" (Feishu's {CHAT_SENDS_PER_SECOND}/s per chat alone needs"
                f" {(median_parts - 1) / CHAT_SENDS_PER_SECOND:.2f} s)"
                if mode == "text"
                else ""
            )
        )
        print(
            f"  {kind} per answer: {median_parts:.0f}, the fewest Feishu's limit allows {fewest}"
            f" ({median_parts / fewest:.2f}x)"
        )


def _whole(sims: Simulators, event, answer: str) -> tuple[int, float] | None:
    """(parts, time the last was seen) once what the user sees adds up to the answer, else None."""
    pieces, last = [], 0.0
    for reply in sims.feishu.replies_to(event):
        if reply.duplicate:
            continue
        if reply.msg_type == "interactive":
            card = sims.feishu.card(json.loads(reply.content)["data"]["card_id"])
            if card.streaming_mode:
                return None
            pieces.append(card.text())
            last = max([last, *(op.at for op in card.operations)])
        else:
            pieces.append(reply.text or "")
            last = max(last, reply.at)
    return (len(pieces), last) if "".join(pieces) == answer else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=3)
    parser.add_argument("--chars", type=int, default=70_000)
    args = parser.parse_args()
    asyncio.run(run(args.answers, args.chars))


if __name__ == "__main__":
    main()
