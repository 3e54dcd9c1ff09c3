"""Following the log file across a rotation, as the console does when no socket answers."""

import asyncio
import logging
import logging.handlers
from pathlib import Path
from typing import AsyncIterator

from gateway_core.logtail import follow_log


async def next_lines(stream: AsyncIterator[str], count: int, timeout: float = 10) -> list[str]:
    return [await asyncio.wait_for(stream.__anext__(), timeout) for _ in range(count)]


async def test_follow_reads_backlog_then_new_lines_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "gateway-p.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=400, backupCount=2)
    logger = logging.getLogger("test.logtail")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before the console came")
        stream = follow_log(path, poll=0.02)
        assert await next_lines(stream, 1) == ["before the console came"]
        # Three rounds of ~300 bytes against a 400-byte limit: the file rotates under the reader.
        for round_ in range(3):
            for n in range(10):
                logger.info("round %d record %d padded", round_, n)
            lines = await next_lines(stream, 10)
            assert lines == [f"round {round_} record {n} padded" for n in range(10)]
        assert (tmp_path / "gateway-p.log.1").exists()  # it really rotated
        await stream.aclose()
    finally:
        logger.removeHandler(handler)
        handler.close()
