"""CardKit streaming: how soon the first token shows, and how close updates run to Feishu's limit.

    .venv/bin/python bench/card_stream.py [--answers N] [--tokens T] [--token-rate R]

On the local Feishu simulator, through the gateway's Feishu HTTP client: N answers, each T tokens pushed
at R tokens/s into a streaming card by `gateway_core.cardkit`. Prints the time from the first push
to the simulator recording that text (p50/p95; the target is under 1 s), content updates per
second per card as a ratio to Feishu's 10 operations/s per card, and the share of tokens
coalesced away. Figures only; nothing is asserted.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import statistics
import time
import uuid

from gateway_core.cardkit import CardKitClient
from gateway_core.config import FeishuConfig
from gateway_core.feishu_http import FeishuHttp
from gateway_core.replies import ReplySender
from gateway_core.sim import Simulators
from gateway_core.threads import in_own_thread

SECRET = "bench-secret"
FEISHU_CARD_LIMIT = 10.0  # operations per second per card


async def one_answer(client: CardKitClient, feishu, tokens: int, rate: float) -> tuple[float, float, int]:
    """Stream one answer; return (first-visible seconds, content updates per second, updates)."""
    question = feishu.inject_text("bench")
    stream = await client.open_stream(question.message_id)
    text, first_visible = "", None
    started = time.perf_counter()
    for n in range(tokens):
        text += f"t{n} "
        await stream.push(text)
        if n == 0:
            first = text
            await in_own_thread(
                feishu.wait_for, lambda first=first: feishu.card(stream.card_id).texts.get("answer") == first, 10
            )
            first_visible = time.perf_counter() - started
        await asyncio.sleep(1 / rate)  # the model's pace
    await stream.finish(text)
    elapsed = time.perf_counter() - started
    updates = len(feishu.card(stream.card_id).content_updates)
    return first_visible or 0.0, updates / elapsed, updates


async def run(answers: int, tokens: int, rate: float) -> None:
    with Simulators(feishu={"app_id": f"cli_{uuid.uuid4().hex[:8]}", "app_secret": SECRET}) as sims:
        http = FeishuHttp(FeishuConfig(sims.feishu.app_id, SECRET, sims.feishu.domain))
        client = CardKitClient(http, ReplySender(http))
        await http.bot_identity()  # warm: token and connection, as a connected gateway's would be
        try:
            results = [await one_answer(client, sims.feishu, tokens, rate) for _ in range(answers)]
        finally:
            await http.aclose()
        rejected = sum(len(card.rejected) for card in sims.feishu.cards)
    firsts = sorted(r[0] for r in results)
    per_second = [r[1] for r in results]
    updates = sum(r[2] for r in results)
    p95 = firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))]
    print(f"answers: {answers} x {tokens} tokens at {rate:g} tokens/s")
    print(
        f"first token visible: p50 {statistics.median(firsts) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
        f"({p95:.2f}x of the 1 s target)"
    )
    print(
        f"content updates/s per card: median {statistics.median(per_second):.2f} "
        f"({statistics.median(per_second) / FEISHU_CARD_LIMIT:.2f}x of Feishu's 10/s)"
    )
    print(f"tokens coalesced away: {1 - updates / (answers * tokens):.0%}; refused operations: {rejected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--token-rate", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(run(args.answers, args.tokens, args.token_rate))


if __name__ == "__main__":
    main()
