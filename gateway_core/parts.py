"""An answer in parts that each fit one Feishu message or card: long answers arrive whole.

Feishu refuses a `text` message whose request body is over 150 KB (code 230025) and a card whose
JSON is over 30 KB (230099; 230025 and 300305 for too many elements) — see
shared/feishu-platform.md. A model can write more than either, so an answer is cut into parts,
each measured as Feishu measures it: the bytes of the request (or of the card JSON), JSON escapes
included. A `Budget` knows that request; because JSON escapes each character on its own, a text's
cost inside the request is additive, so parts are measured line by line rather than re-encoded.

Where to cut, best first:
1. after a blank line outside a code block (a paragraph ends there);
2. at the end of a line outside a code block;
3. at the end of a line inside a fenced code block: the part closes the fence, the next part
   reopens it with the same info string (language), so no part holds an unclosed block;
4. inside one line longer than a whole part (after a space if there is one).
A paragraph's or line's end is taken while it keeps the part at least half full, so parts stay
few; short of that any line end outside a code block still comes before a cut inside one, so a
block that fits a part is never cut: it starts the next part.

A part is a span of the answer (`start`, `end`) plus the fence it reopens and closes: the same
answer and start always give the same parts, which is what lets a new owner resume part N.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

TEXT_BODY_LIMIT = 150 * 1024  # bytes of a text/post message's request body (Feishu: 150 KB)
CARD_JSON_LIMIT = 30 * 1024  # bytes of a card's JSON (Feishu: 30 KB)

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)$")


def request_bytes(body: object) -> bytes:
    """A request body as the gateway sends it to Feishu (compact JSON, UTF-8): what is measured."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Fence:
    """An open fenced code block: its marker (``` or ~~~, maybe longer) and info string."""

    marker: str
    info: str

    @property
    def opening(self) -> str:
        return f"{self.marker}{self.info}\n"

    def closes(self, line: str) -> bool:
        stripped = line.strip()
        return (
            len(stripped) >= len(self.marker)
            and set(stripped) == {self.marker[0]}
            and len(line) - len(line.lstrip(" ")) <= 3
        )


def _fence_after(line: str, fence: Fence | None) -> Fence | None:
    """The fence state after `line` (without its newline), given the state before it."""
    if fence is not None:
        return None if fence.closes(line) else fence
    opened = _FENCE.match(line)
    if opened is None:
        return None
    marker, info = opened.group(1), opened.group(2).strip()
    if marker[0] == "`" and "`" in info:
        return None  # ``` followed by backticks is inline code, not a fence (CommonMark)
    return Fence(marker, info)


def fence_at(text: str, offset: int) -> Fence | None:
    """The code block open at `offset` of `text` (a line start or any point), or None."""
    fence: Fence | None = None
    position = 0
    while position < offset:
        newline = text.find("\n", position)
        if newline == -1 or newline >= offset:
            break  # the line holding `offset` has not ended: it changes nothing before `offset`
        fence = _fence_after(text[position:newline], fence)
        position = newline + 1
    return fence


class Budget:
    """How much of an answer fits one request: `wrap(text)` is the whole request as sent."""

    def __init__(self, limit: int, wrap: Callable[[str], bytes]):
        self.limit = limit
        self._wrap = wrap
        self.overhead = len(wrap(""))
        if self.overhead >= limit:
            raise ValueError(f"a request without text already takes {self.overhead} of {limit} bytes")

    @property
    def room(self) -> int:
        return self.limit - self.overhead

    def cost(self, text: str) -> int:
        """Bytes `text` adds to the request (additive: JSON escapes each character on its own)."""
        return len(self._wrap(text)) - self.overhead

    def fits(self, text: str) -> bool:
        return self.cost(text) <= self.room


def text_budget(limit: int = TEXT_BODY_LIMIT) -> Budget:
    """A text reply: `{"content": "{\\"text\\": …}", "msg_type": "text", "uuid": …}`."""
    uuid = "gw-" + "0" * 40  # every reply uuid has this length

    def wrap(text: str) -> bytes:
        content = json.dumps({"text": text}, ensure_ascii=False)
        return request_bytes({"content": content, "msg_type": "text", "uuid": uuid, "reply_in_thread": False})

    return Budget(limit, wrap)


@dataclass(frozen=True)
class Part:
    """One part of an answer: `answer[start:end]`, reopening and closing a code block if cut in one."""

    start: int
    end: int
    text: str  # what is sent: the span with its fence reopened and closed as needed


def render(answer: str, start: int, end: int, fence_at_start: Fence | None = None) -> str:
    """The text of the part `answer[start:end]`: a code block cut at either end is reopened/closed."""
    opening = fence_at_start if fence_at_start is not None else fence_at(answer, start)
    body = answer[start:end]
    prefix = opening.opening if opening is not None else ""
    closing = _open_fence_after(body, opening)
    suffix = ""
    if closing is not None:
        suffix = ("" if body.endswith("\n") or not body else "\n") + closing.marker
    return prefix + body + suffix


def _open_fence_after(body: str, fence: Fence | None) -> Fence | None:
    """The fence open at the end of `body`, a span starting with `fence` open (its last line too)."""
    lines = body.split("\n")
    for line in lines:
        fence = _fence_after(line, fence)
    return fence


def split(answer: str, budget: Budget, start: int = 0) -> list[Part]:
    """`answer[start:]` in parts that each fit `budget`, cut at the best place (see the module)."""
    parts: list[Part] = []
    fence = fence_at(answer, start)
    position = start
    while position < len(answer) or not parts:
        part, fence = _next_part(answer, position, fence, budget)
        parts.append(part)
        if part.end >= len(answer):
            break
        position = part.end
    return parts


def _next_part(answer: str, start: int, fence: Fence | None, budget: Budget) -> tuple[Part, Fence | None]:
    """The longest good part from `start` (with `fence` open there), and the fence open after it."""
    opening_cost = budget.cost(fence.opening) if fence is not None else 0
    used = opening_cost
    state = fence
    # The best cut of each kind so far: (end offset, fence open after it).
    paragraph: tuple[int, Fence | None] | None = None
    line_end: tuple[int, Fence | None] | None = None
    in_block: tuple[int, Fence | None] | None = None
    position = start
    while position < len(answer):
        newline = answer.find("\n", position)
        end = len(answer) if newline == -1 else newline + 1
        line = answer[position:end]
        after = _fence_after(line.rstrip("\n"), state)
        closing_cost = budget.cost("\n" + after.marker) if after is not None else 0
        cost = budget.cost(line)
        if used + cost + closing_cost > budget.room:
            break
        used += cost
        position, state = end, after
        if position >= len(answer):
            return Part(start, position, render(answer, start, position, fence)), state
        if state is None and not line.strip():
            paragraph = (position, state)
        if state is None:
            line_end = (position, state)
        else:
            in_block = (position, state)
    else:
        return Part(start, len(answer), render(answer, start, len(answer), fence)), state
    half = start + (position - start) // 2
    for cut in (paragraph, line_end):
        if cut is not None and cut[0] > half:
            return Part(start, cut[0], render(answer, start, cut[0], fence)), cut[1]
    for cut in (line_end, in_block):  # a code block is cut only where nothing outside one is left
        if cut is not None and cut[0] > start:
            return Part(start, cut[0], render(answer, start, cut[0], fence)), cut[1]
    return _cut_inside_line(answer, start, fence, budget)


def _cut_inside_line(answer: str, start: int, fence: Fence | None, budget: Budget) -> tuple[Part, Fence | None]:
    """A line longer than a whole part: as much of it as fits, after a space where there is one."""
    newline = answer.find("\n", start)
    line_end = len(answer) if newline == -1 else newline
    low, high = start + 1, line_end  # the first character always fits a budget worth the name
    while low < high:  # the longest prefix of the line that fits, by bisection
        middle = (low + high + 1) // 2
        if budget.fits(render(answer, start, middle, fence)):
            low = middle
        else:
            high = middle - 1
    space = answer.rfind(" ", start, low)
    end = space + 1 if space > start + (low - start) // 2 else low
    return Part(start, end, render(answer, start, end, fence)), fence


def last_boundary(answer: str, start: int, end: int) -> int | None:
    """The last line end in `answer[start:end]` outside a code block (a paragraph's if near), or None.

    Where a card is closed early (its streaming window running out) while the model still writes.
    """
    fence = fence_at(answer, start)
    best: int | None = None
    position = start
    while True:
        newline = answer.find("\n", position, end)
        if newline == -1:
            return best
        fence = _fence_after(answer[position:newline], fence)
        position = newline + 1
        if fence is None:
            best = position
