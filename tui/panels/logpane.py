"""The log pane: the gateway's own records, live, literal, bounded.

Records are pulled in batches from the source (`log_since(seq)`) on a timer — never pushed from
the logging thread — and written to a `Log` widget, which stores plain strings: no markup is
parsed, and control characters are escaped before they get there, so a message containing
`[bold]` or an ANSI escape is shown exactly as typed. The pane keeps its own bounded copy of
the records so a change of level or search can redraw without asking the gateway again.

Following is the pane's own state, not the widget's guess from its scroll position: while it
follows, every batch and every redraw ends scrolled to the last line. Scrolling up (wheel, keys)
pauses the view and counts what arrives ("+N new"); End or `p` follows again. A search filters,
highlights its matches and counts them; `w` jumps to the next WARNING or ERROR.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Iterable

from rich.highlighter import Highlighter
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import var
from textual.widgets import Input

from gateway_core.logs import LogLine, escape_untrusted

from .._textual_compat import MarkableLog
from ..text import clock_time

KEEP = 5000  # records kept for redraws; the Log widget holds at most as many lines
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOUD = ("WARNING", "ERROR", "CRITICAL")  # what `w` jumps to
LEVEL_STYLES = {"WARNING": "bold yellow", "ERROR": "bold red", "CRITICAL": "bold red reverse"}
MATCH_STYLE = "black on yellow"


class LineHighlighter(Highlighter):
    """Colours the level word and the search matches; styles only, the text stays literal."""

    def __init__(self) -> None:
        self.search = ""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        for level, style in LEVEL_STYLES.items():
            at = plain.find(f" {level} ", 8, 40)  # after the clock, in the level column
            if at >= 0:
                text.stylize(style, at + 1, at + 1 + len(level))
                break
        if self.search:
            for found in re.finditer(re.escape(self.search), plain, re.IGNORECASE):
                text.stylize(MATCH_STYLE, found.start(), found.end())


class ConsoleLog(MarkableLog):
    highlighter: LineHighlighter

    """A Log that tells its pane when the operator scrolls away or asks to follow again.

    Measuring on the loop and the marked line come from `MarkableLog` (tui/_textual_compat.py).
    """

    class ScrolledUp(Message):
        """The operator scrolled the log up: the view should stop following."""

    class FollowAsked(Message):
        """The operator asked for the end (End key): follow again."""

    class OpenAsked(Message):
        """Enter: show the marked line (or the last one in view) in full."""

    BINDINGS = [Binding("enter", "open_line", "Details", show=False)]  # the footer keeps its room

    DEFAULT_CSS = """
    ConsoleLog {
        height: 1fr;
        /* No horizontal scrollbar: it would take a line from a short pane. Long lines are cut;
           Enter shows the whole line, and left/right still scroll. */
        scrollbar-size-horizontal: 0;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.highlighter = LineHighlighter()
        self.marked: int | None = None  # a line picked by `w` or a click, shown reversed

    def mark(self, index: int | None) -> None:
        self.marked = index
        self.restyle()

    def _scrolled_up(self) -> None:
        if self.max_scroll_y > 0:
            self.post_message(self.ScrolledUp())

    def action_scroll_up(self) -> None:
        super().action_scroll_up()
        self._scrolled_up()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._scrolled_up()

    def action_scroll_home(self) -> None:
        super().action_scroll_home()
        self._scrolled_up()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        # No super() call: Textual runs Widget's own wheel handler (the scrolling) after this one.
        self._scrolled_up()

    def action_scroll_end(self) -> None:
        self.post_message(self.FollowAsked())

    def action_open_line(self) -> None:
        self.post_message(self.OpenAsked())

    def on_click(self, event: events.Click) -> None:
        line = int(self.scroll_y) + event.y
        if 0 <= line < len(self.lines):
            self.mark(line)


def format_line(line: LogLine) -> str:
    # Escaped again here: a later source (another process) may not have escaped it for us.
    return f"{clock_time(line.created)} {line.level:<7} {line.logger} {escape_untrusted(line.message, limit=None)}"


def level_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)  # CRITICAL and unknown: highest


class LogPane(Vertical):
    """The pane's state is reactive: its title (following or PAUSED · +N new, level, search and
    its count) follows whichever of them changes."""

    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
        min-height: 5;
        border: round $primary;
    }
    LogPane #log-search {
        dock: bottom;
        height: 1;
        border: none;
        padding: 0 1;
    }
    """

    class LineOpened(Message):
        """Show this record in full (the app pushes the detail view)."""

        def __init__(self, record: LogLine) -> None:
            super().__init__()
            self.record = record

    paused = var(False)  # the view is frozen; new records are counted, not shown
    pending = var(0)  # records that arrived (and pass the filter) while paused
    min_level = var("DEBUG")
    search = var("")
    matches = var(0)  # lines matching the search (all of them pass the filter)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._records: deque[tuple[LogLine, str]] = deque(maxlen=KEEP)
        self._shown: deque[LogLine] = deque(maxlen=KEEP)  # the records behind the Log's lines, 1:1
        self.last_seq = 0

    def compose(self) -> ComposeResult:
        yield ConsoleLog(max_lines=KEEP, highlight=True, auto_scroll=False, id="log")
        yield Input(placeholder="search the log (Enter keeps it, Esc clears)", id="log-search")

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self._update_title()

    @property
    def log_view(self) -> ConsoleLog:
        return self.query_one("#log", ConsoleLog)

    @property
    def following(self) -> bool:
        return not self.paused

    # -- feeding -------------------------------------------------------------------------------

    def follow_new_source(self) -> None:
        """Another gateway's records come next (attach, take-over): their numbering starts anew."""
        self.last_seq = 0

    def ingest(self, records: Iterable[LogLine]) -> None:
        """Take the records after `last_seq`; show the ones that pass the filter unless paused."""
        fresh: list[tuple[LogLine, str]] = []
        for record in records:
            if record.seq <= self.last_seq:
                continue
            if record.seq > self.last_seq + 1 and self.last_seq:
                # The ring buffer moved on faster than we read: say so instead of hiding the gap.
                skipped = record.seq - self.last_seq - 1
                gap = LogLine(
                    record.seq,
                    record.created,
                    "WARNING",
                    "gatewatch.console",
                    f"… {skipped} records not shown (the log outran the console)",
                )
                fresh.append((gap, format_line(gap)))
            fresh.append((record, format_line(record)))
            self.last_seq = record.seq
        if not fresh:
            return
        self._records.extend(fresh)
        shown = [(record, text) for record, text in fresh if self._passes(record, text)]
        if self.search:
            self.matches += len(shown)
        if self.paused:
            self.pending += len(shown)
        elif shown:
            self._show_lines(shown)

    def _show_lines(self, shown: list[tuple[LogLine, str]]) -> None:
        log = self.log_view
        before = len(log.lines)
        log.write_lines([text for _, text in shown], scroll_end=False)
        self._shown.extend(record for record, _ in shown)
        pruned = before + len(shown) - len(log.lines)
        if pruned and log.marked is not None:
            log.marked = log.marked - pruned if log.marked >= pruned else None
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        """Following: the last line in view now, and again once the layout has caught up."""
        log = self.log_view
        log.scroll_end(animate=False, immediate=True, x_axis=False)
        self.call_after_refresh(self._settle_at_end)

    def _settle_at_end(self) -> None:
        if not self.paused:
            self.log_view.scroll_end(animate=False, immediate=True, x_axis=False)

    def _passes(self, record: LogLine, text: str) -> bool:
        if level_rank(record.level) < level_rank(self.min_level):
            return False
        return not self.search or self.search.casefold() in text.casefold()

    def redraw(self) -> None:
        """Show the kept records through the current filter and follow from there."""
        log = self.log_view
        shown = [(record, text) for record, text in self._records if self._passes(record, text)]
        log.clear()
        log.marked = None
        self._shown.clear()
        log.highlighter.search = self.search
        log.restyle()
        self.matches = len(shown) if self.search else 0
        self.pending = 0
        self.paused = False
        self._show_lines(shown)

    # -- operator controls ---------------------------------------------------------------------

    def pause(self) -> None:
        """Freeze the view where it is; new records are counted, not shown."""
        if not self.paused:
            self.paused = True
            self.pending = 0

    def resume(self) -> None:
        """Follow again: everything collected meanwhile is shown and the last line is in view."""
        self.redraw()

    def toggle_pause(self) -> bool:
        if self.paused:
            self.resume()
        else:
            self.pause()
        return self.paused

    def cycle_level(self) -> str:
        self.min_level = LEVELS[(LEVELS.index(self.min_level) + 1) % len(LEVELS)]
        self.redraw()
        return self.min_level

    def next_loud_line(self) -> LogLine | None:
        """Mark the next WARNING or ERROR after the marked line (wrapping) and bring it into view.

        The view pauses there: reading a warning while lines keep arriving would move it away.
        """
        log = self.log_view
        records = list(self._shown)
        start = log.marked + 1 if log.marked is not None else int(log.scroll_y)
        order: list[int] = [*range(start, len(records)), *range(0, min(start, len(records)))]
        for index in order:
            if records[index].level in LOUD:
                self.pause()
                log.mark(index)
                log.focus()  # the operator reads the log now: Enter opens this line
                log.scroll_to(
                    y=max(0, index - log.scrollable_content_region.height // 2), animate=False, immediate=True
                )
                return records[index]
        return None

    def open_marked(self) -> None:
        """Enter on the log: the marked line, or else the last one in view, in full."""
        log = self.log_view
        if not self._shown:
            return
        index = log.marked
        if index is None:
            bottom = int(log.scroll_y) + log.scrollable_content_region.height - 1
            index = min(bottom, len(self._shown) - 1)
        self.post_message(self.LineOpened(self._shown[index]))

    def on_console_log_scrolled_up(self, event: ConsoleLog.ScrolledUp) -> None:
        event.stop()
        self.pause()

    def on_console_log_follow_asked(self, event: ConsoleLog.FollowAsked) -> None:
        event.stop()
        self.resume()

    def on_console_log_open_asked(self, event: ConsoleLog.OpenAsked) -> None:
        event.stop()
        self.open_marked()

    def open_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.value = self.search
        box.focus()

    def clear_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = ""
        box.display = False
        self.search = ""
        self.redraw()  # and follow: Esc leaves the pane live, whatever it was before

    @property
    def searching(self) -> bool:
        return self.query_one("#log-search", Input).display

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.search = event.value
        self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        box = self.query_one("#log-search", Input)
        box.display = False
        self.log_view.focus()

    def visible_lines(self) -> list[str]:
        """What the Log widget holds now (tests read it; the screen shows its tail)."""
        return list(self.log_view.lines)

    def lines_in_view(self) -> list[str]:
        """The lines the operator can see right now."""
        log = self.log_view
        top = int(log.scroll_y)
        return list(log.lines[top : top + log.scrollable_content_region.height])

    def _update_title(self) -> None:
        """The border title says the pane's state; every change of it redraws the title."""
        parts = ["Log", f"PAUSED · +{self.pending} new (End/p follows)" if self.paused else "following"]
        if self.min_level != "DEBUG":
            parts.append(f"≥ {self.min_level}")
        if self.search:
            parts.append(f"/{escape_untrusted(self.search, limit=30)} · {self.matches} matching")
        self.border_title = Text(" · ".join(parts))  # a Text: the search string is never markup

    watch_paused = watch_pending = watch_min_level = watch_search = watch_matches = _update_title
