"""The Feishu panel: is the WebSocket really connected, and since when?"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gateway_core.feishu import FeishuSnapshot

from ..text import age, clock_time, duration, labelled, lines, state_word

STALE_FRAME = 120.0  # no frame for this long on a "connected" socket deserves a colour


def render_feishu(snap: FeishuSnapshot, now: float) -> Text:
    state = state_word(snap.state)
    if snap.detail:
        state.append(f" {snap.detail}", style="dim")
    frame_age = Text(age(snap.last_frame_at, now))
    if snap.state == "connected" and snap.last_frame_at is not None and now - snap.last_frame_at > STALE_FRAME:
        frame_age.stylize("bold yellow")
    return lines(
        state,
        labelled("since", f"{clock_time(snap.since)} ({duration(now - snap.since)})"),
        labelled("conn", snap.conn_id or "—"),
        labelled("last frame", frame_age),
        labelled("reconnects", f"{snap.reconnects} · restarts {snap.restarts}"),
        labelled("last error", snap.last_error or "—", style="red" if snap.last_error else ""),
    )


class FeishuPanel(Static):
    def on_mount(self) -> None:
        self.border_title = "Feishu"

    def show(self, snap: FeishuSnapshot, now: float) -> None:
        self.update(render_feishu(snap, now))
