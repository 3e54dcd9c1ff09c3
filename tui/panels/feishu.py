"""The Feishu panel: is the WebSocket really connected, and since when? If not, why, and when
is the next attempt?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive

from gateway_core.feishu import FeishuSnapshot
from gateway_core.states import FeishuState

from ..text import age, clock_time, duration, labelled, lines, state_word
from .quiet import QuietStatic, set_subtitle

if TYPE_CHECKING:
    from ..reading import Reading

STALE_FRAME = 120.0  # no frame for this long on a "connected" socket deserves a colour


def render_feishu(snap: FeishuSnapshot, now: float) -> Text:
    state = state_word(snap.state)
    if snap.detail:
        state.append(f" {snap.detail}", style="dim")
    if snap.suspect:
        state.append(f" · suspect: {snap.suspect_reason or 'no answer'}", style="bold yellow")
    if snap.next_attempt_at is not None:
        wait = max(0.0, snap.next_attempt_at - now)
        state.append(f" · next attempt {clock_time(snap.next_attempt_at)} (in {duration(wait)})", style="yellow")
    frame_age = Text(age(snap.last_frame_at, now))
    if (
        snap.state == FeishuState.CONNECTED
        and snap.last_frame_at is not None
        and now - snap.last_frame_at > STALE_FRAME
    ):
        frame_age.stylize("bold yellow")
    error = Text(snap.last_error or "—", style="red" if snap.last_error else "")
    if snap.last_error and snap.last_error_at is not None:
        error.append(f" ({clock_time(snap.last_error_at)}, {age(snap.last_error_at, now)})", style="dim")
    return lines(
        state,
        labelled("since", f"{clock_time(snap.since)} ({duration(now - snap.since)})"),
        labelled("conn", snap.conn_id or "—"),
        labelled("last frame", frame_age),
        labelled("reconnects", f"{snap.reconnects} · restarts {snap.restarts}"),
        labelled("last error", error),
    )


class FeishuPanel(QuietStatic):
    DEFAULT_CSS = """
    FeishuPanel {
        text-wrap: nowrap;  /* a long value is cut with an ellipsis, the full text is in the log */
        text-overflow: ellipsis;
    }
    """

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed

    def on_mount(self) -> None:
        self.border_title = "Feishu"

    def watch_reading(self, reading: Reading | None) -> None:
        if reading is not None:
            self.show(reading.snapshot.feishu, reading.now)
            set_subtitle(self, "stale" if reading.stale else None)  # a gone gateway's last word

    def show(self, snap: FeishuSnapshot, now: float) -> None:
        self.show_text(render_feishu(snap, now))
