"""One modal for picking one of a few choices: by arrow keys and Enter, or by its letter.

Esc always backs out with the cancel choice, so no destructive choice is ever the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class Choice:
    id: str
    label: Text | str
    key: str | None = None  # a single letter that picks it directly


class ChoiceModal(ModalScreen[str | None]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: Text | str, choices: list[Choice], cancel: str | None = None):
        super().__init__()
        self.title_text, self.body = title, body
        self.choices, self.cancel = choices, cancel

    def compose(self) -> ComposeResult:
        with Vertical(classes="choice-box") as box:
            box.border_title = Text(self.title_text)
            yield Static(Text(self.body) if isinstance(self.body, str) else self.body, classes="choice-body")
            yield OptionList(*(Option(self._option_label(c), id=c.id) for c in self.choices))
            hint = "↑↓ Enter choose · Esc cancel"
            yield Static(Text(hint, style="dim"), classes="choice-hint")

    @staticmethod
    def _option_label(choice: Choice) -> Text:
        label = Text(f"{choice.key}  ", style="bold") if choice.key else Text()
        label.append_text(choice.label if isinstance(choice.label, Text) else Text(choice.label))
        return label

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def on_key(self, event: events.Key) -> None:
        for choice in self.choices:
            if choice.key and event.key == choice.key:
                event.stop()
                self.dismiss(choice.id)
                return

    def action_cancel(self) -> None:
        self.dismiss(self.cancel)
