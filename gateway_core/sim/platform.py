"""What every simulated Feishu API shares: the codes it answers with, the event it delivers, how it
reads a body, and the sliding window its rate limits are counted in.

The long connection (feishu_sim.py), CardKit (cardkit_sim.py) and resources (media_sim.py) are
parts of one simulator; they meet here instead of importing each other's private names.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

TENANT_KEY = "sim_tenant"
INVALID_TOKEN = {"code": 99991663, "msg": "Invalid access token for authorization."}


@dataclass(frozen=True)
class InjectedEvent:
    """An ``im.message.receive_v1`` event the simulator queued for delivery."""

    event_id: str
    message_id: str
    chat_id: str
    chat_type: str
    sender_open_id: str
    message_type: str
    text: str | None  # the text for text messages, else None
    content: str  # message.content exactly as sent (a JSON string)
    payload: bytes = field(repr=False)  # the whole event JSON as put in the frame

    @property
    def event(self) -> dict[str, Any]:
        """The event as a dict (a fresh copy)."""
        event: dict[str, Any] = json.loads(self.payload)
        return event


@dataclass(frozen=True)
class SentMessage:
    """One accepted send POST (reply or create), duplicates included."""

    kind: str  # "reply" | "create"
    in_reply_to: str  # the message_id replied to, or the receive_id of a create
    msg_type: str
    text: str | None  # parsed from content for msg_type "text", else None
    content: str
    uuid: str | None
    message_id: str  # what Feishu answered; a duplicate gets the first send's id
    duplicate: bool
    at: float


@functools.lru_cache(maxsize=1)
def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object whatever its Content-Type ({} if it is not one)."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def event_id(event: InjectedEvent | str) -> str:
    return event.event_id if isinstance(event, InjectedEvent) else event


def message_id(message: InjectedEvent | str) -> str:
    return message.message_id if isinstance(message, InjectedEvent) else message


class SlidingWindow:
    """The times of recent calls, judged against Feishu-style limits: at most `count` calls in any
    `window` seconds (several limits may apply at once, e.g. 50 per second and 1000 per minute).

    The caller holds its simulator's lock; limits are passed at each check because tests change
    them while the simulator runs (None: that limit is off).
    """

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def full(self, limits: Iterable[tuple[int | None, float]], now: float) -> bool:
        """True if one more call at `now` would exceed a limit. Forgets calls older than all windows."""
        kept = [(count, window) for count, window in limits if count is not None]
        longest = max((window for _, window in kept), default=0.0)
        while self._times and now - self._times[0] >= longest:
            self._times.popleft()
        return any(sum(1 for at in self._times if now - at < window) >= count for count, window in kept)

    def record(self, now: float) -> None:
        self._times.append(now)
