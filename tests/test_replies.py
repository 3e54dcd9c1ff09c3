"""Feishu's rate limits, from the gateway's side: a reply waits for its turn, never for nothing."""

import asyncio

from gateway_core.replies import RequestWindow


async def test_reply_window_spaces_requests_a_window_after_each_answer() -> None:
    """Feishu counts a request on arrival, somewhere between our send and its answer: a permit
    comes back a whole window after the answer, so no window ever holds more than the limit."""
    loop = asyncio.get_running_loop()
    window = RequestWindow(limit=3, window=0.2)
    spans: list[tuple[float, float]] = []

    async def request(n: int) -> None:
        async with window.turn():
            started = loop.time()
            await asyncio.sleep(0.01 * (n % 3))  # answers take a little while, differently
            spans.append((started, loop.time()))

    await asyncio.gather(*(request(n) for n in range(9)))
    starts = sorted(start for start, _ in spans)
    answers = sorted(end for _, end in spans)
    # The 4th request cannot start before the 1st answer plus a window, and so on.
    assert all(starts[i + 3] >= answers[i] + 0.2 - 1e-3 for i in range(6)), spans
    assert window.holding == 3 and not window.idle  # the last permits are still held back
