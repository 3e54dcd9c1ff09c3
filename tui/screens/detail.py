"""Enter on a log line or a message row: the whole record, not the cut-off line.

Every value shown here is untrusted (user text, model output, log messages): each becomes a
`Text` with control characters made visible, never markup.
"""

from __future__ import annotations

import datetime

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gateway_core.logs import LogLine, escape_untrusted
from gateway_core.pipeline import Activity

from ..text import STATE_STYLES, millis


def _literal(text: str) -> Text:
    return Text(escape_untrusted(text, limit=None))


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class DetailScreen(ModalScreen[None]):
    """A record's fields, then its long texts in full; Esc, Enter or q closes."""

    BINDINGS = [("escape", "close", "Close"), ("enter", "close", "Close"), ("q", "close", "Close")]

    def __init__(self, title: str, fields: list[tuple[str, Text]], texts: list[tuple[str, Text]]):
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.texts = texts

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in self.fields:
            table.add_row(Text(label), value)
        with Vertical(classes="choice-box detail-box") as box:
            box.border_title = self.title_text
            with VerticalScroll(id="detail-body"):
                yield Static(table)
                for label, text in self.texts:
                    yield Static(Text(label, style="bold"), classes="detail-label")
                    yield Static(text, classes="detail-text")
            yield Static(Text("Esc closes · ↑↓ scroll", style="dim"), classes="choice-hint")

    def action_close(self) -> None:
        self.dismiss(None)


def log_line_detail(line: LogLine) -> DetailScreen:
    fields = [
        ("time", Text(_when(line.created))),
        ("level", Text(line.level, style=STATE_STYLES.get(line.level.lower(), "bold"))),
        ("logger", _literal(line.logger)),
        ("record", Text(f"#{line.seq}")),
    ]
    return DetailScreen("Log line", fields, [("message", _literal(line.message))])


def activity_detail(activity: Activity) -> DetailScreen:
    fields = [
        ("received", Text(_when(activity.at))),
        ("outcome", Text(activity.outcome, style=STATE_STYLES.get(activity.outcome, ""))),
        ("model", Text(activity.model or "— (no model answered)")),
        ("latency", Text(millis(activity.latency))),
        # How the reply went out: a long answer in several cards or text parts, a card Feishu ended.
        ("delivered", Text(activity.delivery or "—")),
        ("chat", _literal(activity.chat_id)),
        ("sender", _literal(activity.sender_id)),
        ("message id", _literal(activity.message_id or "—")),
        ("event id", _literal(activity.event_id or "—")),
    ]
    if activity.media:  # an image, file or voice note: its name, size and type (a name is untrusted)
        fields.insert(1, ("media", _literal(activity.media)))
    texts = [
        ("in (the user wrote)", _literal(activity.text or activity.preview)),
        ("out (the gateway replied)", _literal(activity.reply) if activity.reply else Text("—", style="dim")),
    ]
    return DetailScreen("Message", fields, texts)
