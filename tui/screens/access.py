"""`a`: pairing requests waiting for the owner — who asked, in which chat, when — approved or denied here.

What is shown comes from the gateway's snapshot (`AccessSnapshot.pending`): never a code, only who
asked; the key acts on the highlighted request by its open_id. Every cell is literal text.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gateway_core.access import AccessOp, PendingCode

from ..text import age


def request_label(request: PendingCode, now: float) -> Text:
    out = Text(request.open_id, style="bold")
    out.append("  in ", style="dim")
    out.append(request.chat_id)
    out.append(f"  {age(request.requested_at, now)}", style="dim")
    return out


class AccessModal(ModalScreen[tuple[AccessOp, str] | None]):
    """Dismissed with (approve | deny, open_id), or None (Esc)."""

    BINDINGS = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("d", "decide('deny')", "Deny"),
        Binding("escape", "cancel", "Close"),
    ]
    DEFAULT_CSS = """
    AccessModal {
        align: center middle;
    }
    """

    def __init__(self, pending: tuple[PendingCode, ...], now: float, policy: str):
        super().__init__()
        self.pending, self.now, self.policy = pending, now, policy

    def compose(self) -> ComposeResult:
        with Vertical(classes="choice-box") as box:
            box.border_title = Text("Pairing requests")
            body = f"dm_policy {self.policy}: these people sent the bot a message and got a pairing code."
            yield Static(Text(body), classes="choice-body")
            yield OptionList(*(Option(request_label(p, self.now), id=p.open_id) for p in self.pending))
            yield Static(Text("↑↓ choose · a approve · d deny · Esc close", style="dim"), classes="choice-hint")

    def action_decide(self, op: str) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return
        open_id = options.get_option_at_index(options.highlighted).id
        if open_id is not None:
            self.dismiss((AccessOp(op), open_id))

    def action_cancel(self) -> None:
        self.dismiss(None)
