"""Logging: one line per record, secrets redacted, and a ring buffer the console reads.

The incident that started gatewatch was diagnosed from the log alone, so the log must be
trustworthy: a record is exactly one line (untrusted text cannot forge a second one), a secret can
never be written, and the console sees the same records without re-reading the file.
"""

from __future__ import annotations

import itertools
import logging
import logging.handlers
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

LOGGER_NAME = "gatewatch"
SDK_LOGGER_NAME = "Lark"
RING_SIZE = 2000
PREVIEW_CHARS = 80

log = logging.getLogger(LOGGER_NAME)


def escape_untrusted(text: str, limit: int | None = PREVIEW_CHARS) -> str:
    """Make untrusted text safe for one log line: control characters escaped, length bounded."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class LogLine:
    """One record as the console shows it. `seq` orders records and lets readers resume."""

    seq: int
    created: float
    level: str
    logger: str
    message: str


class Redactor(logging.Filter):
    """Replaces every registered secret in the formatted message by '***'.

    It runs as a handler filter, after arguments are merged, so a secret that reaches a record
    by any route (an exception text, a URL, an SDK message) is caught on its way out.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = escape_untrusted(self.redact(message), limit=None)
        record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = escape_untrusted(self.redact(record.exc_text), limit=None)
        return True


class OneLineFormatter(logging.Formatter):
    """`time LEVEL logger message`, with a traceback folded onto the same line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", "\\n")


class RingBuffer(logging.Handler):
    """The last N records in memory, numbered so readers can poll for what is new.

    Readers (the console, the control socket) read `since(seq)` on their own schedule: no reader
    code ever runs on the thread that logged, so none can slow or break logging. A reader that
    would rather not poll waits in `wait_beyond` on its own thread; all the logging thread does
    for it is a `notify_all`, which costs nothing when nobody waits.
    """

    def __init__(self, capacity: int = RING_SIZE):
        super().__init__()
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        self._guard = threading.Lock()
        self._news = threading.Condition(self._guard)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_text:
            message = f"{message} | {record.exc_text}"
        with self._guard:
            line = LogLine(next(self._seq), record.created, record.levelname, record.name, message)
            self._lines.append(line)
            self._news.notify_all()

    def wait_beyond(self, seq: int, timeout: float) -> bool:
        """Block until a record newer than `seq` exists (True) or `timeout` seconds pass (False)."""
        with self._guard:
            return self._news.wait_for(lambda: bool(self._lines) and self._lines[-1].seq > seq, timeout)

    def since(self, seq: int = 0, limit: int | None = None) -> list[LogLine]:
        """Records after `seq` (at most the newest `limit`); seqs are consecutive, so no scan."""
        with self._guard:
            if not self._lines:
                return []
            skip = max(0, seq - self._lines[0].seq + 1)
            if limit is not None:
                skip = max(skip, len(self._lines) - limit)
            return list(itertools.islice(self._lines, skip, None))

    @property
    def last_seq(self) -> int:
        with self._guard:
            return self._lines[-1].seq if self._lines else 0


def adopt_sdk_logger() -> None:
    """Route the Lark SDK's records into our handlers only.

    At import the SDK adds a stdout handler and sets WARNING; under launchd stdout is a file
    nobody reads and its INFO lines (connect, reconnect) are the ones an operator needs. The SDK is
    imported lazily, so this runs again right after that import.
    """
    sdk = logging.getLogger(SDK_LOGGER_NAME)
    sdk.propagate = False
    sdk.setLevel(logging.INFO)
    for handler in list(sdk.handlers):
        if type(handler) is logging.StreamHandler:
            sdk.removeHandler(handler)


@dataclass
class GatewayLogging:
    """The handlers one gateway installed, so they can be removed again (tests run many)."""

    ring: RingBuffer
    file_handler: logging.Handler | None
    redactor: Redactor
    _loggers: tuple[logging.Logger, ...] = ()

    def close(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self.ring)
            if self.file_handler:
                logger.removeHandler(self.file_handler)
        if self.file_handler:
            self.file_handler.close()


def setup_logging(
    log_file: Path | None,
    secrets: Iterable[str],
    level: str,
    max_bytes: int,
    backups: int,
) -> GatewayLogging:
    """Attach the redacting file and ring handlers to gatewatch's logger and the Lark SDK's."""
    redactor = Redactor(secrets)
    ring = RingBuffer()
    ring.addFilter(redactor)
    file_handler = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.addFilter(redactor)
        file_handler.setFormatter(OneLineFormatter())

    ours = logging.getLogger(LOGGER_NAME)
    ours.setLevel(level)
    ours.propagate = False
    sdk = logging.getLogger(SDK_LOGGER_NAME)
    for logger in (ours, sdk):
        logger.addHandler(ring)
        if file_handler:
            logger.addHandler(file_handler)
    adopt_sdk_logger()
    return GatewayLogging(ring, file_handler, redactor, (ours, sdk))
