"""The model panel: which model answers next, and how each one in the failover list is doing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive

from gateway_core.llm import ModelHealth, ModelsSnapshot

from ..text import STATE_STYLES, duration, labelled, lines, millis
from .quiet import QuietStatic, set_subtitle

if TYPE_CHECKING:
    from ..reading import Reading


def model_health(model: ModelHealth, active: bool) -> Text:
    """One model in one line: used by the panel and by the model picker."""
    out = Text("▶ " if active else "  ", style="bold")
    out.append(model.name, style="bold" if active else "")
    breaker = "ok" if model.breaker == "closed" else f"OPEN {duration(model.open_for)}"
    out.append(f" {breaker}", style=STATE_STYLES.get(model.breaker, "dim"))
    out.append(f" err {model.errors}/{model.requests}", style="red" if model.errors else "dim")
    out.append(f" avg {millis(model.avg_latency)}", style="dim")
    return out


def render_models(snap: ModelsSnapshot) -> Text:
    rows: list[Text | str] = [labelled("active", Text(snap.active, style="bold"))]
    rows += [model_health(model, model.name == snap.active) for model in snap.models]
    last_error = next((m for m in snap.models if m.last_error), None)
    if last_error is not None:
        rows.append(labelled(f"{last_error.name} error", last_error.last_error or "", style="red"))
    return lines(*rows)


class ModelsPanel(QuietStatic):
    DEFAULT_CSS = """
    ModelsPanel {
        text-wrap: nowrap;  /* a long value is cut with an ellipsis, the full text is in the log */
        text-overflow: ellipsis;
    }
    """

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed

    def on_mount(self) -> None:
        self.border_title = "Models"

    def watch_reading(self, reading: Reading | None) -> None:
        if reading is not None:
            self.show(reading.snapshot.models)
            set_subtitle(self, "stale" if reading.stale else None)  # a gone gateway's last word

    def show(self, snap: ModelsSnapshot) -> None:
        self.show_text(render_models(snap))
