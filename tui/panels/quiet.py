"""A Static that repaints only when what it shows changed: the console rests when nothing moves.

Every panel is fed a fresh reading at each news and every 2 s at rest. `Static.update` repaints and lays the whole
screen out again each time, even for the same text: at idle that was most of the console's CPU
(issue 22). `show` skips a text equal to the one shown, and skips the layout pass when the new
text has as many lines as the old (the panels' widths come from the CSS grid, not their text).
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static


class QuietStatic(Static):
    _shown: Text | None = None

    def show_text(self, text: Text) -> None:
        previous = self._shown
        if previous is not None and previous == text:
            return
        same_height = previous is not None and previous.plain.count("\n") == text.plain.count("\n")
        self._shown = text
        self.update(text, layout=not same_height)


_subtitles: WeakKeyDictionary[Widget, str] = WeakKeyDictionary()


def set_subtitle(widget: Widget, subtitle: str | None) -> None:
    """Set a border subtitle, literally (a `[access]` in it is text, not markup), and only when it
    changes: setting one, even to the same value, repaints the whole screen."""
    if _subtitles.get(widget) == (subtitle or ""):
        return
    _subtitles[widget] = subtitle or ""
    widget.border_subtitle = Text(subtitle) if subtitle else None
