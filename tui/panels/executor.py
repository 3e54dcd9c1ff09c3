"""The executor panel: is the gateway's thread pool really able to run work?

This is the incident's panel: a shut-down executor looked exactly like a healthy process.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from gateway_core.executor import ExecutorSnapshot

from ..text import age, labelled, lines, millis, state_word


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
    def compose(self) -> ComposeResult:
        yield Static(id="executor-body")
        yield Sparkline([], id="executor-spark")

    def on_mount(self) -> None:
        self.border_title = "Executor"

    def show(self, snap: ExecutorSnapshot, now: float) -> None:
        self.query_one("#executor-body", Static).update(render_executor(snap, now))
        self.query_one("#executor-spark", Sparkline).data = list(snap.probe_history)
