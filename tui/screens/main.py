"""The main screen: the header, the three panels, recent messages, the log and the keys.

It draws; it does not fetch. The app sets `reading` (one look at the source) and `phase`; the
panels are bound to them and render from them. Layout changes with the width by Textual's
breakpoints: below 100 columns the panels lose their padding, below 80 they fold to their first
lines so the log keeps its room. The log pane's keys act here (the app's key list names them
`screen.…`), and so does Enter on a message or a log line.
"""

from __future__ import annotations

from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from ..panels import ExecutorPanel, FeishuPanel, HeaderBar, LogPane, MessagesPanel, ModelsPanel
from ..phase import ConsolePhase
from ..reading import Reading
from .detail import activity_detail, log_line_detail


class MainScreen(Screen[None]):
    DEFAULT_CSS = """
    MainScreen {
        layout: vertical;
    }
    MainScreen #panels {
        height: 9;
    }
    MainScreen #panels > * {
        width: 1fr;
        height: 100%;
        border: round $primary;
        border-title-color: $text;
        padding: 0 1;
    }
    /* Attached to a gateway that stopped answering or exited: what is shown is its last word. */
    MainScreen.-stale #panels *, MainScreen.-stale #messages {
        text-opacity: 50%;
    }
    MainScreen.-narrow #panels > *, MainScreen.-cramped #panels > * {
        padding: 0 0;
    }
    MainScreen.-cramped #panels {
        height: 7;
    }
    MainScreen.-cramped #executor-spark {
        display: none;
    }
    MainScreen.-cramped #messages {
        height: 1fr;
        min-height: 4;
    }
    MainScreen.-cramped #logpane {
        height: 2fr;
    }
    """

    # Below 80 columns the three panels would be unreadable and squeeze the log out: "-cramped".
    HORIZONTAL_BREAKPOINTS = [(0, "-cramped"), (80, "-narrow"), (100, "-wide")]

    reading: reactive[Reading | None] = reactive(None, repaint=False)  # the watcher repaints what changed
    phase: reactive[str] = reactive(ConsolePhase.STARTING)

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header").data_bind(MainScreen.reading, MainScreen.phase)
        with Horizontal(id="panels"):
            yield ExecutorPanel(id="executor").data_bind(MainScreen.reading)
            yield FeishuPanel(id="feishu").data_bind(MainScreen.reading)
            yield ModelsPanel(id="models").data_bind(MainScreen.reading)
        yield MessagesPanel(id="messages").data_bind(MainScreen.reading)
        yield LogPane(id="logpane")
        yield Footer(compact=True)

    def watch_reading(self, reading: Reading | None) -> None:
        self.set_class(reading is not None and reading.stale, "-stale")  # the panels dim (and say so)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    @property
    def messages(self) -> MessagesPanel:
        return self.query_one(MessagesPanel)

    # -- the log pane's controls and the detail views -------------------------------------------

    def action_toggle_pause(self) -> None:
        self.log_pane.toggle_pause()

    def action_cycle_level(self) -> None:
        level = self.log_pane.cycle_level()
        self.notify(f"log: {level} and above", timeout=2)

    def action_search(self) -> None:
        self.log_pane.open_search()

    def action_clear_search(self) -> None:
        """Esc: close the log's search; with none open, back to the fleet (when there is one)."""
        if self.log_pane.searching or self.log_pane.search:
            self.log_pane.clear_search()
        elif not self.app.back_to_fleet():  # type: ignore[attr-defined]
            self.log_pane.clear_search()

    def action_follow_log(self) -> None:
        if isinstance(self.focused, Input):
            raise SkipAction()  # End in the search box moves its cursor
        self.log_pane.resume()

    def action_next_warning(self) -> None:
        if self.log_pane.next_loud_line() is None:
            self.notify("no WARNING or ERROR in the log view", timeout=3)

    def action_details(self) -> None:
        """Enter: the detail of what the operator is on — a log line only while the log has focus,
        otherwise the message under the Messages cursor (a line marked earlier in the log does
        not steal Enter from a message); the marked log line when there is no message."""
        pane = self.log_pane
        if self.focused is pane.log_view:
            pane.open_marked()
            return
        activity = self.messages.selected_activity()
        if activity is not None:
            self.app.push_screen(activity_detail(activity))
        elif pane.log_view.marked is not None:
            pane.open_marked()

    def on_log_pane_line_opened(self, event: LogPane.LineOpened) -> None:
        self.app.push_screen(log_line_detail(event.record))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        activity = self.messages.activity_for(event.row_key.value)
        if activity is not None:
            self.app.push_screen(activity_detail(activity))
