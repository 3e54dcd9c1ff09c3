"""The fleet table: one row per profile — verdict and why, owner, Feishu, model, traffic, backlog
and its service-manager job — and one per foreign gateway job the doctor knows.

Columns give way by priority when the terminal is narrow (at 80 columns: profile, verdict, owner,
the job's state and the reason), and the reason takes whatever width is left, so it is cut last.
Rows are keyed by profile and updated cell by cell, only where something changed; the table is
rebuilt only when profiles come or go, or when the width changes the columns. A profile with a
doctor or fleet finding is flagged ⚑ (key `d` shows them). Every cell is a `Text`, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from gateway_core.fleet import FleetRow
from gateway_core.states import FleetVerdict

from ..text import STATE_STYLES, duration

SPARK = "▁▂▃▄▅▆▇█"
FINDING_FLAG = "⚑ "
SERVICE_STYLES = {"running": "green", "not installed": "dim", "not loaded": "dim", "loaded": ""}
VERDICT_STYLES = {FleetVerdict.STOPPED: "dim", FleetVerdict.INVALID: "bold magenta"}


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    wide: int  # its width when there is room for every column


# Left to right as drawn; the reason is last and flexible.
COLUMNS = (
    Column("profile", "profile", 12, 16),
    Column("verdict", "verdict", 13, 13),
    Column("owner", "owner", 8, 8),
    Column("pid", "PID", 7, 7),
    Column("uptime", "up", 6, 7),
    Column("feishu", "Feishu", 12, 12),
    Column("model", "model", 10, 12),
    Column("rate", "msg/min", 11, 16),
    Column("pending", "pending", 9, 12),
    Column("service", "job", 14, 26),
    Column("reason", "reason", 18, 20),
)
BY_KEY = {c.key: c for c in COLUMNS}
# Which columns stay when the room runs out, most important first (the reason at its minimum).
PRIORITY = ("profile", "verdict", "reason", "owner", "service", "feishu", "pending", "pid", "model", "uptime", "rate")
CELL_PADDING = 2  # DataTable pads each cell by one column on either side
ROOM_FOR_WIDE = 180  # from this width every column gets its wide size


def choose_columns(width: int) -> list[tuple[Column, int]]:
    """The columns that fit `width` by priority, drawn in their own order, the reason taking the rest."""
    room = width  # inside the border
    wide = width >= ROOM_FOR_WIDE
    chosen: dict[str, int] = {}
    for key in PRIORITY:
        column = BY_KEY[key]
        size = column.wide if wide else column.width
        if size + CELL_PADDING <= room:
            chosen[key] = size
            room -= size + CELL_PADDING
    if "reason" in chosen:
        chosen["reason"] += max(0, room)
    return [(c, chosen[c.key]) for c in COLUMNS if c.key in chosen]


def sparkline(values: tuple[int, ...], width: int) -> str:
    if not values:
        return ""
    values = values[-width:]
    top = max(values) or 1
    return "".join(SPARK[min(len(SPARK) - 1, v * (len(SPARK) - 1) // top)] if v else " " for v in values)


def row_cells(row: FleetRow, now: float, rate_width: int) -> dict[str, Text]:
    """Each column's cell for one row (only those drawn are used)."""
    profile = Text(row.profile, style="italic" if row.foreign else "", overflow="ellipsis", no_wrap=True)
    if row.findings:  # first, so a long name cut at the column's edge keeps its flag
        profile = Text.assemble((FINDING_FLAG, "bold yellow"), profile, overflow="ellipsis", no_wrap=True)
    if row.verdict is None:
        verdict = Text("— foreign", style="dim")
    else:
        style = VERDICT_STYLES.get(row.verdict) or STATE_STYLES.get(row.verdict, "dim")
        verdict = Text(f"● {row.verdict.upper()}", style=style)
    pending = "—" if row.pending is None else str(row.pending)
    if row.pending and row.oldest_pending_at is not None:
        pending += f" · {duration(now - row.oldest_pending_at)}"
    rate = ""
    if row.per_minute is not None:
        rate = f"{row.per_minute:>3} {sparkline(row.rate, max(0, rate_width - 4))}"
    service_style = "bold red" if row.service.startswith("restarting") else SERVICE_STYLES.get(row.service, "yellow")
    reason = row.reason or (row.findings[0] if row.findings else "")
    return {
        "profile": profile,
        "verdict": verdict,
        "owner": Text(row.owner, style="dim" if row.owner == "none" else ""),
        "pid": Text(str(row.pid) if row.pid else "—", justify="right"),
        "uptime": Text(duration(now - row.started_at) if row.started_at else "—", justify="right"),
        "feishu": Text(row.feishu or "—", style=STATE_STYLES.get(row.feishu or "", "dim")),
        "model": Text(row.model or "—", overflow="ellipsis", no_wrap=True),
        "rate": Text(rate),
        "pending": Text(pending),
        "service": Text(row.service or "—", style=service_style, overflow="ellipsis", no_wrap=True),
        "reason": Text(reason, overflow="ellipsis", no_wrap=True, style="dim" if row.verdict is None else ""),
    }


class FleetTable(DataTable[Text]):
    DEFAULT_CSS = """
    FleetTable {
        height: 1fr;
        border: round $primary;
        overflow-x: hidden;
    }
    """

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.rows_shown: dict[str, FleetRow] = {}
        self._cells: dict[str, dict[str, Text]] = {}
        self._columns: list[tuple[Column, int]] = []
        self._order: list[str] = []
        self._last: tuple[list[FleetRow], float] = ([], 0.0)
        self.manager_name = "launchd"

    def on_mount(self) -> None:
        self.border_title = "Fleet"

    def on_resize(self) -> None:
        columns = choose_columns(self.size.width)
        if [(c.key, w) for c, w in columns] != [(c.key, w) for c, w in self._columns]:
            self._columns = columns
            self._rebuild()

    def show(self, rows: list[FleetRow], now: float) -> None:
        """Draw these rows; a cell is written only when it changed."""
        self._last = (rows, now)
        if not self._columns:
            return  # not laid out yet: on_resize draws them
        if [r.profile for r in rows] != self._order:
            self._rebuild()
            return
        rate_width = self._width_of("rate")
        for row in rows:
            cells = row_cells(row, now, rate_width)
            shown = self._cells.get(row.profile, {})
            for column, _ in self._columns:
                if shown.get(column.key) != cells[column.key]:
                    self.update_cell(row.profile, column.key, cells[column.key])
            self._cells[row.profile] = cells
            self.rows_shown[row.profile] = row

    def _width_of(self, key: str) -> int:
        return next((w for c, w in self._columns if c.key == key), 0)

    def _rebuild(self) -> None:
        rows, now = self._last
        keep = self.selected()
        self.clear(columns=True)
        for column, width in self._columns:
            title = self.manager_name if column.key == "service" else column.title
            self.add_column(title, key=column.key, width=width)
        rate_width = self._width_of("rate")
        self.rows_shown, self._cells, self._order = {}, {}, []
        for row in rows:
            cells = row_cells(row, now, rate_width)
            self.add_row(*(cells[c.key] for c, _ in self._columns), key=row.profile)
            self._cells[row.profile], self.rows_shown[row.profile] = cells, row
            self._order.append(row.profile)
        # Explicitly, even to the first row: a table rebuilt while another screen covers it keeps
        # whatever cursor row it had, and rows added under it would move the selection.
        at = self._order.index(keep.profile) if keep is not None and keep.profile in self.rows_shown else 0
        self.move_cursor(row=at)

    def selected(self) -> FleetRow | None:
        if not self.row_count or not self._order:
            return None
        index = min(self.cursor_row, len(self._order) - 1)
        return self.rows_shown.get(self._order[index])

    def select(self, profile: str) -> bool:
        if profile not in self._order:
            return False
        self.move_cursor(row=self._order.index(profile))
        return True
