"""Asking the model: the prompt from the chat's history, media as the model's input, the answer stored.

The media step (issue 20, media.py): images, files and voice notes are downloaded (deadline, size
cap; again on every re-drive, as bytes are never journaled) and become the model's input —
content parts for a vision model, a file's text, a transcript — or a polite reply journaled with
the reason. While the model writes, its text so far grows the answer's cards (stream mode) and
the console's row; the answer and the chat's new history are journaled in one transaction before
anything is sent, so a crash after that re-sends this answer instead of asking the model again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .delivery import AnswerDelivery
from .journal import Journal
from .judging import APOLOGY, Reply
from .llm import AllModelsFailed, LlmClient
from .logs import escape_untrusted
from .media import MediaReader, MediaRef, MediaRefused, ModelInput, media_of
from .messages import IncomingMessage, history_key
from .states import Outcome

log = logging.getLogger("gatewatch.pipeline")


class ModelAsker:
    """Turns a message the model must answer into its answer (or an apology), journaled."""

    def __init__(
        self, llm: LlmClient, journal: Journal, history_turns: int, system_prompt: str, media: MediaReader | None
    ):
        self._llm = llm
        self._journal = journal
        self._history_len = 2 * history_turns
        self._system_prompt = system_prompt
        self._media = media

    def media_of(self, message: IncomingMessage) -> tuple[MediaRef, ...]:
        """The images, files and voice notes the model is to read; none without the media step."""
        return media_of(message) if self._media is not None else ()

    async def read_media(self, message: IncomingMessage, refs: tuple[MediaRef, ...], facts: str) -> ModelInput | Reply:
        """The media as the model's input, or the polite reply when it cannot be read (downloaded
        again on every try: bytes are never journaled)."""
        assert self._media is not None
        try:
            return await self._media.read(message, refs)
        except MediaRefused as exc:
            log.info(
                "message %s: %s not read (%s)",
                message.message_id,
                escape_untrusted(facts),
                escape_untrusted(exc.reason),
            )
            return Reply(exc.reply, Outcome.UNSUPPORTED, reason=exc.reason)

    async def ask(
        self,
        message: IncomingMessage,
        media: ModelInput | None,
        per_user_history: bool,
        stream: AnswerDelivery | None,
        on_progress: Callable[[int, int], None],
    ) -> Reply:
        """Ask the model (streaming into `stream`'s cards, if any); store the answer before it is sent.

        `on_progress(chunks, chars)` hears of every piece the model writes (the console's row).
        """
        key = history_key(message, per_user_history)
        # The scheduler runs one answer per chat at a time, so this history is the latest.
        history = self._journal.load_history(key)[-self._history_len :] if self._history_len else []
        # With media the model reads its content parts (images) or text (a file, a transcript);
        # the history keeps the turn as text: images as "[image]", never their bytes.
        user_turn = {"role": "user", "content": media.text if media is not None else message.text or ""}
        asked: dict[str, Any] = {
            "role": "user",
            "content": media.content if media is not None else user_turn["content"],
        }
        prompt: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt}, *history, asked]
        progress = _Progress(message.message_id, stream, on_progress)
        try:
            answer = await self._llm.complete(
                prompt,
                progress.on_text,
                model=self._journal.chat_model(message.chat_id),
                vision=media is not None and media.vision,
            )
        except AllModelsFailed as exc:
            log.error("every model failed for %s: %s", message.message_id, exc)
            return Reply(APOLOGY, Outcome.APOLOGISED, reason="every model failed")
        finally:
            await progress.settle()
        turns = [*history, user_turn, {"role": "assistant", "content": answer.text}]
        # The answer and the chat's new history are stored before the reply is sent: a crash
        # after this point re-sends this answer rather than asking the model a second time.
        self._journal.save_answer(
            message.message_id,
            key,
            answer.text,
            answer.model,
            answer.latency,
            turns[-self._history_len :] if self._history_len else [],
        )
        log.info("answered %s with %s in %.2fs", message.message_id, answer.model, answer.latency)
        return Reply(answer.text, Outcome.ANSWERED, model=answer.model)


class _Progress:
    """An answer being written: the model's text so far goes to the cards (if any) and the console.

    The LLM client calls `on_text` synchronously on the loop; growing the cards is a coroutine, so
    one small task feeds it the newest text (never a backlog), at most every GROW_INTERVAL: the
    cards' own pace is slower still, and measuring a growing card on every token would only burn
    the loop. A refused update leaves the rest to `deliver`, which sends what is missing.
    """

    GROW_INTERVAL = 0.05

    def __init__(self, message_id: str, delivery: AnswerDelivery | None, on_progress: Callable[[int, int], None]):
        self._message_id, self._delivery, self._on_progress = message_id, delivery, on_progress
        self._chunks = 0
        self._latest: str | None = None
        self._task: asyncio.Task[None] | None = None

    def on_text(self, text: str) -> None:
        self._chunks += 1
        self._on_progress(self._chunks, len(text))
        if self._delivery is None:
            return
        self._latest = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._feed(), name=f"feed-{self._message_id}")

    async def _feed(self) -> None:
        assert self._delivery is not None
        while self._latest is not None:
            text, self._latest = self._latest, None
            await self._delivery.grow(text)
            await asyncio.sleep(self.GROW_INTERVAL)  # the pace of measuring; newer text merges meanwhile

    async def settle(self) -> None:
        """Let the last text reach the cards; their own pump keeps Feishu's rate limit."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
