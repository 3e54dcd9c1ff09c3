"""The header: which profile, who serves it, and the health model's verdict with its first reason.

The word is gateway_core's verdict (health.py) while the gateway runs — never a green RUNNING
over a gateway that answers nobody — and the console's own word otherwise (starting, draining,
unreachable, exited). The second line says why, whenever the verdict is not `healthy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive

from gateway_core.process_stats import ProcessStats
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.states import GatewayState, Verdict

from ..phase import ConsolePhase, header_state
from ..text import STATE_STYLES, duration, size, state_word
from .quiet import QuietStatic

if TYPE_CHECKING:
    from ..reading import Reading


def header_word(snapshot: GatewaySnapshot, state: str) -> str:
    """The one word: while the gateway runs, its verdict; otherwise what it is doing."""
    if state == GatewayState.RUNNING and snapshot.health is not None:
        return snapshot.health.verdict
    return state


def render_header(snapshot: GatewaySnapshot, state: str, described: str, stats: ProcessStats | None) -> Text:
    word = header_word(snapshot, state)
    out = Text.assemble(("profile ", "dim"), (snapshot.profile, "bold"), (" · ", "dim"))
    out.append_text(state_word(word))
    out.append(" · ", style="dim")
    out.append(described)
    out.append(" · up ", style="dim")
    out.append(duration(snapshot.uptime) if snapshot.uptime else "—")
    if stats is not None:
        out.append(" · CPU ", style="dim")
        out.append(f"{stats.cpu_percent:.0f}%")
        out.append(" · RSS ", style="dim")
        out.append(size(stats.rss))
    out.append("\n")
    reasons = snapshot.health.reasons if snapshot.health is not None else ()
    if reasons and word not in (Verdict.HEALTHY, GatewayState.STARTING, GatewayState.STOPPED):
        more = f"  (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        out.append(reasons[0], style=STATE_STYLES.get(word, "dim"))  # literal: reasons quote errors
        out.append(more, style="dim")
    elif word == Verdict.HEALTHY:
        out.append("executor, Feishu, replies, models and backlog all well", style="dim")
    out.no_wrap, out.overflow = True, "ellipsis"
    return out


class HeaderBar(QuietStatic):
    DEFAULT_CSS = """
    HeaderBar {
        height: 2;  /* the verdict, then why: fixed, so a change of verdict never moves the panels */
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed
    phase: reactive[str] = reactive(ConsolePhase.STARTING)

    def watch_reading(self) -> None:
        self._show_reading()

    def watch_phase(self) -> None:
        self._show_reading()

    def _show_reading(self) -> None:
        reading = self.reading
        if reading is not None:
            attached = reading.attachment
            # A stale attachment's mode is the word (UNREACHABLE, EXITED): the snapshot is the
            # gateway's last word and still says "running".
            state = (
                attached.mode
                if attached is not None and attached.stale
                else header_state(self.phase, reading.snapshot.state)
            )
            self.show(reading.snapshot, state, reading.described, reading.stats)

    def show(self, snapshot: GatewaySnapshot, state: str, described: str, stats: ProcessStats | None) -> None:
        self.show_text(render_header(snapshot, state, described, stats))
