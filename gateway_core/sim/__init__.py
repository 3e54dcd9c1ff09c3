"""Local stand-ins for Feishu and an LLM provider, for tests and the demo.

`Simulators` starts both on one background event loop so synchronous code (tests, the demo,
the gateway under test on its own threads) can use them over real 127.0.0.1 sockets.
"""

from __future__ import annotations

from typing import Any

from ..threads import BackgroundLoop
from .cardkit_sim import CardOperation, CardRecord
from .feishu_sim import FeishuSimulator
from .llm_sim import LlmRequest, LlmSimulator
from .platform import InjectedEvent, SentMessage

__all__ = [
    "CardOperation",
    "CardRecord",
    "FeishuSimulator",
    "InjectedEvent",
    "LlmRequest",
    "LlmSimulator",
    "SentMessage",
    "Simulators",
]


class Simulators:
    """A BackgroundLoop running a FeishuSimulator and an LlmSimulator; a context manager."""

    def __init__(self, feishu: dict[str, Any] | None = None, llm: dict[str, Any] | None = None) -> None:
        """`feishu` / `llm` are keyword arguments for the simulators' constructors."""
        self.loop = BackgroundLoop(name="simulators")
        self.feishu = FeishuSimulator(**(feishu or {}))
        self.llm = LlmSimulator(**(llm or {}))
        self._started = False

    def start(self) -> "Simulators":
        """Start the loop, then both servers; on failure, stop whatever started."""
        self.loop.start()
        self._started = True
        try:
            self.loop.run(self.feishu.start())
            self.loop.run(self.llm.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers and the loop (idempotent)."""
        if not self._started:
            return
        self._started = False
        try:
            self.loop.run(self.feishu.stop())
        finally:
            try:
                self.loop.run(self.llm.stop())
            finally:
                self.loop.stop()

    def __enter__(self) -> "Simulators":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
