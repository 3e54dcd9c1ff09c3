"""Delivering an answer: in streaming cards or text replies, retried, each message's one delivery.

Replies go out as streaming CardKit cards (`reply_mode = "stream"`) or plain text replies, a long
answer in as many parts as Feishu's size limits need (delivery.py): how it is being delivered is
journaled before anything it describes can be seen, so a re-drive (or a retry) resumes at the same
card or part; a card never follows a text reply, and text follows cards only for the rest of an
answer a card could not take. Without the CardKit scope the outbox falls back to text once and
remembers (`CardKitClient.unavailable`). Every reply carries an idempotency key derived from the
message id, so sending it again after a failure or a crash cannot show it twice.
"""

from __future__ import annotations

import asyncio
import logging

from .cardkit import CardKitClient
from .delivery import ROTATE_AFTER, AnswerDelivery, DeliveryRecord
from .journal import Journal, JournalError
from .messages import IncomingMessage
from .replies import ReplySender
from .states import ReplyMode

log = logging.getLogger("gatewatch.pipeline")

REPLY_ATTEMPTS = 3


class Outbox:
    """Sends the pipeline's replies; counts the replies that failed every attempt."""

    def __init__(self, replies: ReplySender, journal: Journal, cardkit: CardKitClient | None, retry_delay: float):
        self._replies = replies
        self._journal = journal
        self._cardkit = cardkit
        self._retry_delay = retry_delay
        self.card_rotate_after = ROTATE_AFTER  # a card older than this continues in a new one
        self.failures = 0  # replies not delivered after REPLY_ATTEMPTS

    @property
    def cards_unavailable(self) -> str | None:
        """Why streaming fell back to text (remembered), or None."""
        return self._cardkit.unavailable if self._cardkit is not None else None

    def streaming(self, mode: ReplyMode) -> bool:
        """Whether answers go out as streaming cards now (the typing sign is for text replies)."""
        return mode == ReplyMode.STREAM and self._cardkit is not None and not self._cardkit.unavailable

    def delivery(self, message: IncomingMessage, resume: DeliveryRecord | None) -> AnswerDelivery:
        """The one object delivering this message's answer, resuming a journaled record if any."""
        mid = message.message_id
        return AnswerDelivery(
            mid,
            message.chat_id,
            resume or DeliveryRecord(),
            replies=self._replies,
            cardkit=self._cardkit,
            save=lambda record: self._journal.save_delivery(mid, record.mode, record.to_json()),
            rotate_after=self.card_rotate_after,
        )

    async def open_card(self, delivery: AnswerDelivery, mode: ReplyMode) -> AnswerDelivery | None:
        """The delivery to stream this answer into cards, or None for text replies.

        A message that already has a card (a re-drive) resumes it; one that may already have a
        text reply never gets a card. Without the CardKit scope: None, remembered by the client.
        A card that failed to open is finished later by `deliver` if it exists, else text.
        """
        record = delivery.record
        if self._cardkit is None or record.text_from is not None:
            return None
        if not record.cards and (mode != ReplyMode.STREAM or self._cardkit.unavailable):
            return None
        return delivery if await delivery.start_card() else None

    async def deliver(self, message: IncomingMessage, delivery: AnswerDelivery, text: str) -> str | None:
        """Send the reply, retrying transient failures; idempotency keys make retries safe.

        A message with cards is answered by finishing them (text follows only for what a card
        could not take); any other by text replies. Returns Feishu's id of the first reply, or
        None when every attempt failed.
        """
        delay = self._retry_delay
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            try:
                return await delivery.deliver(text)
            except JournalError:
                raise
            except Exception as exc:  # FeishuRefused, CardKitFailed, or the network failing under it
                log.warning("reply to %s failed (attempt %d/%d): %s", message.message_id, attempt, REPLY_ATTEMPTS, exc)
            if attempt < REPLY_ATTEMPTS:
                await asyncio.sleep(delay)  # backoff between retries of a failed send
                delay *= 2
        self.failures += 1
        return None

    async def send_notice(self, message: IncomingMessage, text: str) -> str:
        """One plain reply, tried once: an access notice (a courtesy, never re-driven)."""
        return await self._replies.reply_text(message.message_id, text, message.chat_id)
