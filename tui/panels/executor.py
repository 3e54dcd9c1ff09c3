"""The executor panel: is the gateway's thread pool really able to run work?

This is the incident's panel: a shut-down executor looked exactly like a healthy process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Sparkline

from gateway_core.executor import ExecutorSnapshot

from ..text import age, labelled, lines, millis, state_word
from .quiet import QuietStatic, set_subtitle

if TYPE_CHECKING:
    from ..reading import Reading


def render_executor(snap: ExecutorSnapshot, now: float) -> Text:
    restarts = Text(str(snap.restarts))
    if snap.last_restart_cause:
        restarts.append(f" · {age(snap.last_restart_at, now)}: {snap.last_restart_cause}", style="dim")
    return lines(
        state_word(snap.state),
        labelled("busy", f"{snap.busy}/{snap.max_workers} · queued {snap.queued}"),
        labelled("done", f"{snap.completed} · failed {snap.failed}"),
        labelled("restarts", restarts),
        labelled("probe", f"{millis(snap.last_probe_latency)} · p95 {millis(snap.probe_p95)}"),
    )


class ExecutorPanel(Vertical):
    DEFAULT_CSS = """
    ExecutorPanel #executor-body {
        height: 5;
        text-wrap: nowrap;  /* a long value is cut with an ellipsis, the full text is in the log */
        text-overflow: ellipsis;
    }
    ExecutorPanel #executor-spark {
        height: 1;
        margin-top: 0;
    }
    """

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="executor-body")
        yield Sparkline([], id="executor-spark")

    def on_mount(self) -> None:
        self.border_title = "Executor"

    def watch_reading(self, reading: Reading | None) -> None:
        if reading is not None:
            self.show(reading.snapshot.executor, reading.now)
            set_subtitle(self, "stale" if reading.stale else None)  # a gone gateway's last word

    def show(self, snap: ExecutorSnapshot, now: float) -> None:
        self.query_one("#executor-body", QuietStatic).show_text(render_executor(snap, now))
        self.query_one("#executor-spark", Sparkline).data = list(snap.probe_history)
