"""Recent messages: who wrote, what, which model answered, how fast, and how it ended.

The border's subtitle shows the journal's backlog (messages not yet answered, and how long the
oldest has waited) whenever there is one: a growing age means answers are not going out.

Rows are keyed and only appended (an Activity is final once recorded), so the table never
flickers by being cleared and refilled. Every cell from a message is a `Text`, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gateway_core.pipeline import Activity

from ..text import STATE_STYLES, age, clock_time, millis

MAX_ROWS = 100
# The preview goes last: it takes whatever width is left and is cut at the edge, so the short,
# decisive columns stay visible even at 80 columns.
COLUMNS = ("time", "chat", "sender", "model", "latency", "outcome", "preview")
WIDTHS = (8, 9, 9, 10, 7, 11, None)


def activity_cells(activity: Activity) -> tuple[Text, ...]:
    return (
        Text(clock_time(activity.at)),
        Text(activity.chat_id, overflow="ellipsis"),
        Text(activity.sender_id, overflow="ellipsis"),
        Text(activity.model or "—"),
        Text(millis(activity.latency), justify="right"),
        Text(activity.outcome, style=STATE_STYLES.get(activity.outcome, "")),
        Text(activity.preview),
    )


class MessagesPanel(DataTable):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._keys: dict[Activity, str] = {}
        self._by_key: dict[str, Activity] = {}
        self._next_key = 0

    def on_mount(self) -> None:
        self.border_title = "Messages"
        for name, width in zip(COLUMNS, WIDTHS):
            self.add_column(name, key=name, width=width)

    def show(self, activity: tuple[Activity, ...]) -> None:
        new = [a for a in activity[-MAX_ROWS:] if a not in self._keys]
        if not new:
            return
        following = self.cursor_row >= self.row_count - 1
        for item in new:
            key = f"m{self._next_key}"
            self._next_key += 1
            self._keys[item] = key
            self._by_key[key] = item
            self.add_row(*activity_cells(item), key=key)
        # Bounded: the oldest rows go once there are more than MAX_ROWS.
        while self.row_count > MAX_ROWS:
            oldest = next(iter(self._keys))
            key = self._keys.pop(oldest)
            self._by_key.pop(key, None)
            self.remove_row(key)
        if following:
            self.move_cursor(row=self.row_count - 1)

    def show_pending(self, pending: int, oldest_at: float | None, now: float) -> None:
        subtitle = f"pending {pending} · oldest {age(oldest_at, now)}" if pending else ""
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
    def activity_for(self, key: str | None) -> Activity | None:
        return self._by_key.get(key) if key is not None else None

    def selected_activity(self) -> Activity | None:
        if not self.row_count:
            return None
        return self.activity_for(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
