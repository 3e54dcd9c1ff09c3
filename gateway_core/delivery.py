"""Delivering one answer whole: in cards or text replies, in as many parts as Feishu's limits need.

An answer goes out as streaming CardKit cards (stream mode) or plain text replies, and a long one
in parts (parts.py): a card that is full is finished and the answer goes on in the next card; text
goes on in further replies to the same message. A card Feishu ends — streaming closed (200850,
then 300309 for every later call), too large, deleted — is finished with what it shows when Feishu
still allows, and the rest of the answer follows as text; a card is rotated before Feishu's
streaming window (about 10 minutes) runs out, since after it updates may be silently dropped.

Exactly once, across crashes: the `DeliveryRecord` is journaled before anything it describes can be
seen — a card's id before the card is sent, where a card ends before it is finished, the text parts'
plan before the first is sent, each part's progress once Feishu accepted it. A new owner resumes at
the recorded part; each part's reply carries a uuid derived from the message id and the part's
index, so a part sent just before a crash is not shown twice, and the model is never asked again
(the answer itself is journaled before delivery starts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from .cardkit import (
    PLACEHOLDER,
    CardKitClient,
    CardKitFailed,
    CardKitUnavailable,
    CardStream,
    StreamCheckpoint,
    card_budget,
)
from .parts import Budget, last_boundary, render, split, text_budget
from .replies import ReplySender
from .states import DeliveryMode

log = logging.getLogger("gatewatch.delivery")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# Feishu closes streaming about 10 minutes after it was turned on; a card is finished and the
# answer continued in a new one before that (a peer rotates at 8 min; so do we).
ROTATE_AFTER = 8 * 60.0


@dataclass(frozen=True)
class CardPart:
    """One card of an answer: where in the answer it starts, where it ends once that is decided."""

    start: int
    checkpoint: StreamCheckpoint
    end: int | None = None  # decided before the card is finished; None while it grows (or: to the end)
    shown_end: int | None = None  # how far the card was seen to show, when last journaled
    opened_at: float = 0.0  # wall-clock time the card was created (its streaming window started)


@dataclass(frozen=True)
class DeliveryRecord:
    """How an answer is being delivered, journaled with the message (the `checkpoint` column)."""

    cards: tuple[CardPart, ...] = ()
    text_from: int | None = None  # the answer from this offset goes as text replies (None: none yet)
    text_parts: int = 0  # how many text replies that is
    text_sent: int = 0  # how many of them Feishu accepted
    reply_id: str | None = None  # the first text reply's id
    cards_stopped: str | None = None  # why the cards stopped before the answer did (a Feishu refusal, a new answer)
    # The answer's beginning that finished cards show ([0:covered]) and its digest: an answer that
    # turns out different there (the model failed mid-stream and another one answered) cannot be
    # finished in cards, and goes whole in text instead.
    covered: int = 0
    covered_digest: str = ""

    @property
    def mode(self) -> DeliveryMode:
        """CARD once a card exists (re-drives finish it), else TEXT."""
        return DeliveryMode.CARD if self.cards else DeliveryMode.TEXT

    def describe(self) -> str:
        """How it went out, for the console: "1 card", "2 cards + 1 text part", "3 text parts"."""
        pieces = []
        if self.cards:
            pieces.append(f"{len(self.cards)} card{'s' if len(self.cards) != 1 else ''}")
        texts = self.text_parts if self.text_from is not None else 0
        if texts:
            pieces.append(f"{texts} text part{'s' if texts != 1 else ''}")
        described = " + ".join(pieces) or "nothing sent yet"
        if self.cards_stopped:
            described += f" (card ended: {self.cards_stopped})"
        return described

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, stored: str | None, reply_mode: DeliveryMode | None = None) -> DeliveryRecord:
        """The record as journaled; a schema-2 row holds one card's checkpoint, or said "text"."""
        if not stored:
            return cls(text_from=0) if reply_mode == DeliveryMode.TEXT else cls()
        data: dict[str, Any] = json.loads(stored)
        if "card_id" in data:  # a one-card checkpoint, from before answers had parts
            return cls(cards=(CardPart(0, StreamCheckpoint(**data)),))
        cards = tuple(
            CardPart(**{**card, "checkpoint": StreamCheckpoint(**card["checkpoint"])}) for card in data.pop("cards", ())
        )
        return cls(cards=cards, **data)


class AnswerDelivery:
    """Delivers one message's answer; `grow` while the model writes (stream mode), then `deliver`.

    `save` journals the record (raising JournalError stops everything: nothing is shown that
    the journal does not know of). `deliver` may be called again after it raised: it goes on
    from the record.
    """

    def __init__(
        self,
        message_id: str,
        chat_id: str,
        record: DeliveryRecord,
        *,
        replies: ReplySender,
        cardkit: CardKitClient | None,
        save: Callable[[DeliveryRecord], None],
        text_limit: Budget | None = None,
        card_limit: Budget | None = None,
        rotate_after: float = ROTATE_AFTER,
    ):
        self.message_id, self.chat_id = message_id, chat_id
        self.record = record
        self._replies, self._cardkit, self._save_record = replies, cardkit, save
        self._text_budget = text_limit or text_budget()
        self._card_budget = card_limit or card_budget()
        self.rotate_after = rotate_after
        self._stream: CardStream | None = None  # the open card's writer in this process
        self._opening_at = 0  # where in the answer the card being created starts

    # -- the record ----------------------------------------------------------------------------

    def _save(self, record: DeliveryRecord) -> None:
        self._save_record(record)
        self.record = record

    def _set_card(self, index: int, card: CardPart) -> None:
        cards = list(self.record.cards)
        cards[index] = card
        self._save(replace(self.record, cards=tuple(cards)))

    def _end_card_at(self, card: CardPart, end: int, text: str) -> CardPart:
        """Journal where the open card ends (and what the cards then cover), before it is seen ending."""
        cards = list(self.record.cards)
        cards[-1] = ended = replace(card, end=end)
        self._save(replace(self.record, cards=tuple(cards), covered=end, covered_digest=_digest(text[:end])))
        return ended

    async def _save_checkpoint(self, checkpoint: StreamCheckpoint) -> None:
        """The CardStream's sink: its card's checkpoint (and how far it shows) into the record."""
        index = checkpoint.part
        if index == len(self.record.cards):  # a new card: durable before it is sent
            card = CardPart(self._opening_at, checkpoint, opened_at=time.time())
            self._save(replace(self.record, cards=(*self.record.cards, card)))
            return
        card = self.record.cards[index]
        shown = self._stream.shown_mark if self._stream is not None and self._stream.checkpoint.part == index else None
        self._set_card(
            index, replace(card, checkpoint=checkpoint, shown_end=shown if shown is not None else card.shown_end)
        )

    @property
    def open_card(self) -> CardPart | None:
        card = self.record.cards[-1] if self.record.cards else None
        return card if card is not None and not card.checkpoint.finished and self.record.text_from is None else None

    # -- streaming -----------------------------------------------------------------------------

    async def start_card(self) -> bool:
        """Open the first card before the model writes; False when this answer goes as text."""
        if self._cardkit is None or self.record.text_from is not None:
            return False
        try:
            await self._open_card(0)
        except CardKitUnavailable as exc:
            log.warning("streaming off for %s: %s; answering in text", self.message_id, exc)
            return False
        except CardKitFailed as exc:
            log.warning("card for %s not opened (%s); the final answer is sent when it can be", self.message_id, exc)
            return bool(self.record.cards)  # created and journaled: `deliver` sends and finishes it
        return True

    async def grow(self, text: str) -> None:
        """The model's text so far: show it in the open card, moving to the next card as one fills.

        Never raises for Feishu: a refused update leaves the card as it is, and `deliver` sends
        what is missing.
        """
        card = self.open_card
        if card is None or self._stream is None or self._stream.ended is not None:
            return
        try:
            while card is not None and self._stream is not None:
                shown = render(text, card.start, len(text))
                if not self._card_budget.fits(shown):
                    first = split(text, self._card_budget, card.start)[0]
                    card = await self._next_card(card, first.end, text)
                elif time.time() - card.opened_at > self.rotate_after:
                    # A line end before the text's end: the next card starts with text to show.
                    end = last_boundary(text, card.start, len(text) - 1)
                    if end is None or end <= card.start:
                        await self._stream.push(shown, len(text))
                        return
                    log.info(
                        "card %d for %s near Feishu's streaming window: continuing in a new card",
                        len(self.record.cards),
                        self.message_id,
                    )
                    card = await self._next_card(card, end, text)
                else:
                    await self._stream.push(shown, len(text))
                    return
        except (CardKitFailed, CardKitUnavailable) as exc:
            log.warning("card for %s stopped growing (%s); the rest goes in at the end", self.message_id, exc)

    async def _next_card(self, card: CardPart, end: int, text: str) -> CardPart | None:
        """Finish the open card at `end` of `text` and open the next one there (None if it cannot be)."""
        self._end_card_at(card, end, text)
        assert self._stream is not None
        await self._stream.finish(render(text, card.start, end), end)
        await self._open_card(end)
        return self.open_card

    async def _open_card(self, start: int) -> None:
        """Create card N (journaled before it is sent), send it as a reply, and write to it from now."""
        assert self._cardkit is not None
        index = len(self.record.cards)
        if self.record.cards and not self.record.cards[-1].checkpoint.finished:
            index -= 1  # resume the open card
        resume = self.record.cards[index].checkpoint if index < len(self.record.cards) else None
        self._opening_at = start
        self._stream = await self._cardkit.open_stream(
            self.message_id, resume=resume, on_checkpoint=self._save_checkpoint, chat_id=self.chat_id, part=index
        )

    async def abandon(self) -> None:
        """Stop writing (cancelled or failed); the record resumes it."""
        if self._stream is not None and not self._stream.finished:
            await self._stream.abandon()

    # -- the whole answer ----------------------------------------------------------------------

    async def deliver(self, answer: str) -> str:
        """Send whatever of `answer` is not shown yet; Feishu's id of the first reply (or card).

        Raises FeishuRefused or CardKitFailed when Feishu refused or did not answer (call again
        later: it goes on from the record), JournalError when the record cannot be kept.
        """
        if self.record.cards and self.record.text_from is None and not self._cards_show(answer):
            await self._restart_in_text()
        if self.record.cards and self.record.text_from is None:
            await self._finish_cards(answer)
        if not self.record.cards or self.record.text_from is not None:
            await self._send_text(answer)
        return self.first_reply_id

    @property
    def first_reply_id(self) -> str:
        if self.record.cards:
            first = self.record.cards[0].checkpoint
            return first.reply_message_id or first.card_id
        return self.record.reply_id or ""

    async def _finish_cards(self, answer: str) -> None:
        """Finish each card with its part of the answer, opening more while the answer goes on."""
        assert self._cardkit is not None
        while True:
            card = self.record.cards[-1]
            if card.checkpoint.finished:
                end = len(answer) if card.end is None else card.end
                if end >= len(answer):
                    return
                try:
                    await self._open_card(end)
                except CardKitUnavailable:
                    self._save(replace(self.record, text_from=end))
                    return
                continue
            if self._stream is None or self._stream.checkpoint.card_id != card.checkpoint.card_id:
                await self._open_card(card.start)  # a re-drive or retry: resume the journaled card
            assert self._stream is not None
            if card.end is None:
                end = split(answer, self._card_budget, card.start)[0].end
                if end < len(answer):
                    card = self._end_card_at(card, end, answer)
            end = len(answer) if card.end is None else card.end
            try:
                await self._stream.finish(render(answer, card.start, end) or PLACEHOLDER, end)
            except CardKitFailed as exc:
                if not exc.ends_card:
                    raise
                await self._card_ended(exc)
                return

    def _cards_show(self, answer: str) -> bool:
        """Whether the finished cards show the beginning of `answer` (not of an earlier attempt's)."""
        covered = self.record.covered
        return covered == 0 or (len(answer) >= covered and _digest(answer[:covered]) == self.record.covered_digest)

    async def _restart_in_text(self) -> None:
        """The answer is not the one the finished cards began: close the open card as it is and
        send the whole answer as text (the cards cannot be taken back; nothing is left out)."""
        log.warning(
            "the answer to %s changed after %d cards were finished (the model was asked again):"
            " the whole answer follows in text",
            self.message_id,
            sum(1 for card in self.record.cards if card.checkpoint.finished),
        )
        card = self.open_card
        if card is not None:
            if self._stream is None or self._stream.checkpoint.card_id != card.checkpoint.card_id:
                await self._open_card(card.start)
            assert self._stream is not None
            await self._stream.close_as_shown()
        self._save(replace(self.record, text_from=0, cards_stopped="the answer changed"))

    async def _card_ended(self, refusal: CardKitFailed) -> None:
        """Feishu takes nothing more on this card: close it as it is; the rest goes as text."""
        assert self._stream is not None
        index = len(self.record.cards) - 1
        card = self.record.cards[index]
        if refusal.card_gone:
            shows = card.start  # nothing of it is to be seen any more
        else:
            shown = self._stream.shown_mark if self._stream.shown_mark is not None else card.shown_end
            shows = card.start if shown is None else shown
        log.warning(
            "card %d for %s ended by Feishu (%s): the answer goes on in text from character %d",
            index,
            self.message_id,
            refusal,
            shows,
        )
        self._set_card(index, replace(card, end=shows, shown_end=shows))
        self._save(replace(self.record, text_from=shows, cards_stopped=f"code {refusal.code}"))
        await self._stream.close_as_shown()

    async def _send_text(self, answer: str) -> None:
        """The answer (from `text_from`) in text replies, each part journaled once Feishu took it."""
        start = self.record.text_from or 0
        if start >= len(answer) and self.record.cards:
            self._save(replace(self.record, text_parts=0))
            return
        parts = split(answer, self._text_budget, start)
        if self.record.text_from is None or self.record.text_parts != len(parts):
            self._save(replace(self.record, text_from=start, text_parts=len(parts)))  # the plan, before part 1
        for index in range(self.record.text_sent, len(parts)):
            reply_id = await self._replies.reply_text(self.message_id, parts[index].text, self.chat_id, part=index)
            first = self.record.reply_id or reply_id
            self._save(replace(self.record, text_sent=index + 1, reply_id=first))
