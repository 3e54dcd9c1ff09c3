"""Recent messages: who wrote, what, which model answered, how fast, and how it ended.

The border's subtitle shows the journal's backlog (messages not yet answered, and how long the
oldest has waited) whenever there is one: a growing age means answers are not going out.

Rows are keyed and only appended (an Activity is final once recorded), so the table never
flickers by being cleared and refilled. Answers in progress are shown too, as "writing" rows with
the pieces (about one token each) and characters streamed so far, updated in place and replaced by
the final row when the answer is done. The outcome says how the reply went out: "· card" for a
streaming card, "· text" for a plain reply; commands read "command". The subtitle names the
reply mode, and says so when streaming fell back to text. Messages stopped at the access gate read
"refused"; the subtitle says how many pairing requests wait (key `a`), or that a profile without
[access] answers anyone. Every cell from a message is a `Text`, never markup.

The cursor follows the newest message (and the table its end, "writing" rows included) until the
operator moves it up; back on the newest message, it follows again. The outcome column is whole
where the table has the room, and cut at 80 columns where the preview needs it more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from gateway_core.access import AccessSnapshot
from gateway_core.pipeline import Activity, Answering
from gateway_core.states import ReplyMode

from .._textual_compat import set_column_width
from ..text import STATE_STYLES, age, clock_time, millis
from .quiet import set_subtitle

if TYPE_CHECKING:
    from ..reading import Reading

MAX_ROWS = 100
# The preview goes last: it takes whatever width is left and is cut at the edge, so the short,
# decisive columns stay visible even at 80 columns.
COLUMNS = ("time", "chat", "sender", "model", "latency", "outcome", "preview")
# Every width is fixed, the preview's too: wide enough for any preview (60 characters, each escaped
# to at most 6). A width measured from the content would be measured only when the table next idles,
# and a row painted before that stays cut at the old width (Textual caches painted lines by
# update count, not by column width) until another row arrives.
PREVIEW_WIDTH = 6 * 60 + 1
WIDTHS = (8, 9, 9, 10, 7, 11, PREVIEW_WIDTH)
# Where there is room the outcome is shown whole ("reply failed · card"); at 80 columns the preview
# needs those characters more, and the detail (Enter) has the whole outcome.
OUTCOME_WHOLE, ROOM_FOR_WHOLE_OUTCOME = 19, 100


def activity_cells(activity: Activity) -> tuple[Text, ...]:
    outcome = activity.outcome + (f" · {activity.reply_mode}" if activity.reply_mode else "")
    return (
        Text(clock_time(activity.at)),
        Text(activity.chat_id, overflow="ellipsis"),
        Text(activity.sender_id, overflow="ellipsis"),
        Text(activity.model or "—"),
        Text(millis(activity.latency), justify="right"),
        Text(outcome, style=STATE_STYLES.get(activity.outcome, ""), overflow="ellipsis"),
        Text(activity.preview),
    )


def answering_cells(answer: Answering, now: float) -> tuple[Text, ...]:
    """An answer in progress: how far the model got (pieces ≈ tokens, characters), and how."""
    progress = f"{answer.chunks} tok {answer.chars} ch" if answer.chunks else "waiting"
    return (
        Text(clock_time(answer.started_at)),
        Text(answer.chat_id, overflow="ellipsis"),
        Text(answer.sender_id, overflow="ellipsis"),
        Text(f"writing · {answer.reply_mode}", style="bold yellow", overflow="ellipsis"),
        Text(millis(max(0.0, now - answer.started_at)), justify="right"),
        Text(progress, style="yellow", overflow="ellipsis"),
        Text(answer.preview),
    )


class MessagesPanel(DataTable[Text]):
    DEFAULT_CSS = """
    MessagesPanel {
        overflow-x: hidden;
        height: 1fr;
        min-height: 5;
        border: round $primary;
    }
    """

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._keys: dict[Activity, str] = {}
        self._by_key: dict[str, Activity] = {}
        self._next_key = 0
        self._answering: dict[str, str] = {}  # message id -> row key of its "writing" row
        self._mode_line = ""
        self._access_line = ""
        self._newest: str | None = None  # row key of the newest message shown: the cursor follows it

    def on_mount(self) -> None:
        self.border_title = "Messages"
        for name, width in zip(COLUMNS, WIDTHS):
            self.add_column(name, key=name, width=width)

    def on_resize(self) -> None:
        roomy = self.size.width >= ROOM_FOR_WHOLE_OUTCOME
        set_column_width(self, "outcome", OUTCOME_WHOLE if roomy else WIDTHS[COLUMNS.index("outcome")])

    def watch_reading(self, reading: Reading | None) -> None:
        if reading is None:
            return
        pipeline = reading.snapshot.pipeline
        self.show(pipeline.activity)
        self.show_answering(pipeline.answering, reading.now)
        self.show_reply_mode(pipeline.reply_mode, pipeline.cardkit_unavailable)
        self.show_access(pipeline.access)
        self.show_pending(pipeline.pending, pipeline.oldest_pending_at, reading.now)

    def show(self, activity: tuple[Activity, ...]) -> None:
        new = [a for a in activity[-MAX_ROWS:] if a not in self._keys]
        if not new:
            return
        following = self.following()
        for item in new:
            key = f"m{self._next_key}"
            self._next_key += 1
            self._keys[item] = key
            self._by_key[key] = item
            self.add_row(*activity_cells(item), key=key)
        self._newest = key
        # Bounded: the oldest rows go once there are more than MAX_ROWS.
        while self.row_count > MAX_ROWS and self._keys:
            oldest = next(iter(self._keys))
            key = self._keys.pop(oldest)
            self._by_key.pop(key, None)
            self.remove_row(key)
        if following:
            self.follow_newest()

    def following(self) -> bool:
        """The operator has not moved the cursor off the newest message (or to the very end).

        Decided by row key, not by "the last row": rows of answers in progress ("writing") come
        and go below the newest message, and the cursor must keep following across them.
        """
        if not self.row_count or self._newest is None:
            return True
        at = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return at == self._newest or self.cursor_row >= self.row_count - 1

    def follow_newest(self) -> None:
        """The cursor on the newest message, and the table scrolled to its end (writing rows too)."""
        if self._newest is not None:
            self.move_cursor(row=self.get_row_index(self._newest))
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def show_answering(self, answering: tuple[Answering, ...], now: float) -> None:
        """Rows for answers in progress, updated in place; gone once the answer is recorded."""
        current = {a.message_id: a for a in answering}
        following = self.following()
        added = False
        for message_id in [m for m in self._answering if m not in current]:
            self.remove_row(self._answering.pop(message_id))
        for message_id, answer in current.items():
            cells = answering_cells(answer, now)
            key = self._answering.get(message_id)
            if key is None:
                key = self._answering[message_id] = f"w{self._next_key}"
                self._next_key += 1
                self.add_row(*cells, key=key)
                added = True
                continue
            for column, cell in zip(COLUMNS, cells):
                self.update_cell(key, column, cell)
        if added and following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def show_reply_mode(self, mode: ReplyMode, unavailable: str | None) -> None:
        """How answers go out: "stream" (cards) or "text"; a fallback says why."""
        streaming = mode == ReplyMode.STREAM
        line = f"replies: {ReplyMode.TEXT} (cards unavailable)" if streaming and unavailable else f"replies: {mode}"
        self._mode_line = "" if mode == ReplyMode.TEXT and not unavailable else line

    def show_access(self, access: AccessSnapshot | None) -> None:
        """Who may talk to the bot: said when anyone may, and when pairing requests wait (key a)."""
        if access is None:
            line = ""
        elif not access.declared:
            line = "answers anyone: no [access]"
        elif access.pending:
            line = f"{len(access.pending)} pairing request{'s' if len(access.pending) > 1 else ''} (a)"
        else:
            line = ""
        self._access_line = line

    def show_pending(self, pending: int, oldest_at: float | None, now: float) -> None:
        parts = [f"pending {pending} · oldest {age(oldest_at, now)}"] if pending else []
        for line in (self._access_line, self._mode_line):
            if line:
                parts.append(line)
        set_subtitle(self, " · ".join(parts))

    def activity_for(self, key: str | None) -> Activity | None:
        return self._by_key.get(key) if key is not None else None

    def selected_activity(self) -> Activity | None:
        if not self.row_count:
            return None
        return self.activity_for(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
