"""`?`: every key, the same list the footer and the command palette use."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "close", "Close"), ("question_mark", "close", "Close"), ("q", "close", "Close")]

    def __init__(self, bindings: list[Binding]):
        super().__init__()
        self.keys = bindings

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(style="bold")
        table.add_column(style="dim")
        for binding in self.keys:
            table.add_row(Text(binding.key_display or binding.key), Text(binding.description), Text(binding.tooltip))
        with Vertical(classes="choice-box") as box:
            box.border_title = "Keys"
            yield Static(table)
            yield Static(Text("Esc closes · every key is also in the command palette (:)", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
