"""The log pane: the gateway's own records, live, literal, bounded.

Records are pulled in batches from the source (`log_since(seq)`) on a timer — never pushed from
the logging thread — and written to a `Log` widget, which stores plain strings: no markup is
parsed, and control characters are escaped before they get there, so a message containing
`[bold]` or an ANSI escape is shown exactly as typed. The pane keeps its own bounded copy of
the records so a change of level or search can redraw without asking the gateway again.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Log

from gateway_core.logs import LogLine, escape_untrusted

from ..text import clock_time

KEEP = 5000  # records kept for redraws; the Log widget holds at most as many lines
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConsoleLog(Log):
    """A Log that measures new lines on the loop instead of in a thread worker.

    Textual's Log measures line widths in a thread worker, i.e. on the loop's default executor,
    which here is the gateway's held pool (see gateway_core/threads.py): while a fault has that pool shut
    down, the worker would fail and exit the app, gateway included. Measuring a batch of a
    thousand lines on the loop takes about a millisecond.
    """

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        if lines:
            widest = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)


def format_line(line: LogLine) -> str:
    # Escaped again here: a later source (another process) may not have escaped it for us.
    return f"{clock_time(line.created)} {line.level:<7} {line.logger} {escape_untrusted(line.message, limit=None)}"


def level_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)  # CRITICAL and unknown: highest


class LogPane(Vertical):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self._records: deque[tuple[LogLine, str]] = deque(maxlen=KEEP)
        self.last_seq = 0
        self.min_level = "DEBUG"
        self.search = ""
        self.paused = False
        self.pending = 0

    def compose(self) -> ComposeResult:
        yield ConsoleLog(max_lines=KEEP, highlight=False, auto_scroll=True, id="log")
        yield Input(placeholder="search the log (Enter keeps it, Esc clears)", id="log-search")

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self._update_title()

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
                gap = LogLine(record.seq, record.created, "WARNING", "gatewatch.console",
                              f"… {skipped} records not shown (the log outran the console)")
                fresh.append((gap, format_line(gap)))
            fresh.append((record, format_line(record)))
            self.last_seq = record.seq
        if not fresh:
            return
        self._records.extend(fresh)
        shown = [text for record, text in fresh if self._passes(record, text)]
        if self.paused:
            self.pending += len(shown)
            self._update_title()
        elif shown:
            self.query_one("#log", Log).write_lines(shown)

    def _passes(self, record: LogLine, text: str) -> bool:
        if level_rank(record.level) < level_rank(self.min_level):
            return False
        return not self.search or self.search.casefold() in text.casefold()

    def redraw(self) -> None:
        log = self.query_one("#log", Log)
        log.clear()
        log.write_lines([text for record, text in self._records if self._passes(record, text)], scroll_end=True)
        self.pending = 0
        self._update_title()

    # -- operator controls ---------------------------------------------------------------------

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        if self.paused:
            self._update_title()
        else:
            self.redraw()  # resume where the collection is now, not where the view froze
        return self.paused

    def cycle_level(self) -> str:
        self.min_level = LEVELS[(LEVELS.index(self.min_level) + 1) % len(LEVELS)]
        self.redraw()
        return self.min_level

    def open_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.value = self.search
        box.focus()

    def clear_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = ""
        box.display = False
        if self.search:
            self.search = ""
            self.redraw()

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
        self.query_one("#log", Log).focus()

    def visible_lines(self) -> list[str]:
        """What the Log widget holds now (tests read it; the screen shows its tail)."""
        return list(self.query_one("#log", Log).lines)

    def _update_title(self) -> None:
        parts = ["Log", "PAUSED · +%d new (p resumes)" % self.pending if self.paused else "following"]
        if self.min_level != "DEBUG":
            parts.append(f"≥ {self.min_level}")
        if self.search:
            parts.append(f"/{escape_untrusted(self.search, limit=30)}")
        self.border_title = Text(" · ".join(parts))  # a Text: the search string is never markup
