"""Follow a gateway's log file, across rotations — the console's fallback when no socket answers.

A gateway whose control socket is gone may still be writing its log (or may have just died); the
log is then the only live view there is. RotatingFileHandler renames the file and opens a new one,
so the follower notices a new inode (or a shrunk file) and starts again from the new file's top.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncGenerator

import aiofiles

POLL_INTERVAL = 0.25  # how often an idle file is checked for growth or rotation
BACKLOG_BYTES = 64 * 1024


async def follow_log(
    path: Path, backlog_bytes: int = BACKLOG_BYTES, poll: float = POLL_INTERVAL
) -> AsyncGenerator[str, None]:
    """Yield the last lines of `path` (about `backlog_bytes`), then every new line, forever."""
    start_at_end_minus: int | None = backlog_bytes
    while True:
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            await asyncio.sleep(poll)  # not created yet, or between rotate and reopen
            continue
        async with aiofiles.open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if start_at_end_minus is not None and size > start_at_end_minus:
                await handle.seek(size - start_at_end_minus)
                await handle.readline()  # drop the partial first line
            start_at_end_minus = None  # after a rotation, read the new file from its start
            pending = b""
            while True:
                chunk = await handle.read(65536)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
                    continue
                if _rotated(path, inode, await handle.tell()):
                    break
                await asyncio.sleep(poll)
            if pending:
                yield pending.decode("utf-8", errors="replace")


def _rotated(path: Path, inode: int, position: int) -> bool:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False  # the new file is not there yet: keep draining the old one
    return info.st_ino != inode or info.st_size < position
