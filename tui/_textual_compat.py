"""Every use of a private Textual API in gatewatch, in one place (checked on Textual 8.2.8).

Each one is a workaround with a reason; when Textual changes, this file is the one to look at
(tests/test_textual_compat.py fails on any private Textual attribute used anywhere else). The
rest of the console uses the public names defined here.
"""

from __future__ import annotations

import os
from typing import Any

from rich.style import Style
from textual.app import App
from textual.strip import Strip
from textual.widgets import DataTable, Log
from textual.widgets.data_table import ColumnKey


class MarkableLog(Log):
    """Textual's `Log` with one thing it cannot do publicly: mark a line.

    Private API used (Textual 8.2.8): `Log._render_line_cache`, `Log._render_line_strip`.
    (Textual's Log measures new lines in a thread worker on the app loop's default executor. That
    executor is Textual's own now that the gateway runs on a loop of its own, so a fault that shuts
    the gateway's held pool down no longer reaches it, and Log needs no workaround for it.)
    """

    marked: int | None = None  # the index of the line shown reversed, if any
    MARK_STYLE = Style(reverse=True)

    def restyle(self) -> None:
        """The highlighting or the mark changed: render every line anew.

        Why private: Log caches rendered lines and has no public way to drop the cache.
        """
        self._render_line_cache.clear()
        self.refresh()

    # Why: the marked line is drawn reversed; Log has no per-line style hook, and a marked line
    # must not stay in the cache (the mark moves).
    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        if y == self.marked:
            self._render_line_cache.discard(y)
            strip = super()._render_line_strip(y, rich_style + self.MARK_STYLE)
            self._render_line_cache.discard(y)
            return strip
        return super()._render_line_strip(y, rich_style)


def draw_nowhere(app: App[Any]) -> None:
    """The terminal is gone (an SSH session dropped): the app draws to /dev/null from now on.

    Why private (Textual 8.2.8: `textual.drivers._writer_thread.WriterThread`, `App._driver`,
    `driver._writer_thread`): Textual writes the screen through an output thread that dies on the
    first write to a hung-up terminal; every later write (the exit's terminal restore included)
    would then block the app's loop forever — and with it the stop that drains the gateway. The driver's
    writes go to a fresh output thread writing to /dev/null instead, so stopping and exiting
    proceed as usual.
    """
    from textual.drivers._writer_thread import WriterThread

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    driver = app._driver
    if driver is not None and hasattr(driver, "_writer_thread"):
        sink = WriterThread(open(os.devnull, "w"))
        sink.start()
        driver._writer_thread = sink


def set_column_width(table: DataTable[Any], key: str, width: int) -> None:
    """Give a DataTable's column a new fixed width, rows and all, and repaint them at it.

    Textual has no public way to change a column's width once it has rows; the table caches
    painted rows by its update count, so without clearing them a row already painted stays cut
    at the old width. Private API used (Textual 8.2.8): `DataTable._clear_caches`,
    `DataTable._require_update_dimensions`.
    """
    column = table.columns[ColumnKey(key)]
    if column.width == width:
        return
    column.width = width
    table._require_update_dimensions = True
    table._clear_caches()
    table.refresh()
