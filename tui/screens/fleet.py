"""The fleet view: every profile at a glance, and the keys that act on the selected one.

It draws; the rows come from a `FleetSource` (tui/fleet.py). Two workers keep it live: one
follows every running gateway over its control socket (on the console's loop), the other samples
the service manager every few seconds (its calls block, so on a thread). Each reports a change
with a `FleetChanged` message; a one-second timer only ages what is shown (uptimes, waits).

Keys act on the selected row and are dimmed when they cannot run for it: Enter opens the
profile's own view (the app attaches to its owner, or serves it here after asking), `r`
reconnects its Feishu, `m` switches its model, `h`/`t` hand back / take over, `s` starts it
under the service manager or stops it (asking first), `d` shows the doctor's findings and
offers the fix, `/` filters by name. Everything runs as a worker; failures are reported by the
app's one handler, named by the worker.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from gateway_core.control import arequest
from gateway_core.fleet import FleetRow
from gateway_core.states import FleetVerdict, OwnerKind
from gateway_core.threads import in_own_thread

from ..fleet import SAMPLE_INTERVAL, FleetSource
from ..panels.fleet import FleetTable
from ..source import OPERATION_TIMEOUT, RESTART_TIMEOUT
from .choice import Choice, ChoiceModal

if TYPE_CHECKING:
    from ..app import ConsoleApp

# Seconds between redraws of what only ages (uptimes, waits, "for 93s" in a reason); news (a
# verdict, an owner, a model, a message) is drawn when it arrives. Each redraw repaints the table.
AGE_INTERVAL = 10.0
FLEET_RESTART = "fleet-restart"
MANAGED = (OwnerKind.LAUNCHD, OwnerKind.SYSTEMD)

FLEET_BINDINGS = [
    # ? and q first, as on the profile's view: in the footer at any width.
    Binding("question_mark", "help", "Help", key_display="?", tooltip="every key"),
    Binding("q", "quit", "Quit", tooltip="quit the console (asks first when it serves a profile here)"),
    Binding(
        "enter", "open", "Open", key_display="Enter", show=False, tooltip="the selected profile's own view (Esc: back)"
    ),
    Binding("r", "restart_feishu", "Reconnect", tooltip="restart the selected profile's Feishu connection"),
    Binding("m", "pick_model", "Model", tooltip="switch the selected profile's model"),
    Binding(
        "h",
        "hand_back",
        "Hand back",
        show=False,
        tooltip="hand the profile this console serves back to its service manager",
    ),
    Binding(
        "t",
        "take_over",
        "Take over",
        show=False,
        tooltip="take the profile over from its service manager, serve it here",
    ),
    Binding("s", "start_stop", "Start/stop", tooltip="start under the service manager, or stop (asks first)"),
    Binding("d", "doctor", "Doctor", tooltip="the doctor's findings for the selected row, and the fix"),
    Binding("slash", "filter", "Filter", key_display="/", tooltip="show only profiles whose name contains…"),
    Binding("escape", "clear_filter", "Clear filter", key_display="Esc", show=False, tooltip="show every profile"),
]
OWN_ACTIONS = frozenset(b.action for b in FLEET_BINDINGS)


class FleetChanged(Message):
    """Something the rows show changed (a verdict, an owner, a job): draw them again."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetChanged)  # only the newest of several queued matters


class FleetScreen(Screen[None]):
    DEFAULT_CSS = """
    FleetScreen {
        layout: vertical;
    }
    FleetScreen #fleet-summary {
        height: 1;
        padding: 0 1;
    }
    FleetScreen #fleet-filter {
        display: none;
        height: 1;
        border: none;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [*FLEET_BINDINGS]

    def __init__(self, fleet: FleetSource, clock: Callable[[], float] = time.time, live: bool = True):
        super().__init__()
        self.fleet = fleet
        self.clock = clock
        self.live = live  # False: frozen rows (the tests' pictures); nothing is followed or sampled
        self.filter = ""
        self._shown_selection: tuple[Any, ...] | None = None
        self._summary = Text()

    @property
    def console(self) -> "ConsoleApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-summary")
        yield FleetTable(id="fleet")
        yield Input(placeholder="filter profiles by name (Esc clears)", id="fleet-filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.table.manager_name = self.fleet.manager_name
        self.set_interval(AGE_INTERVAL, self.show_rows)
        self.show_rows()
        if self.live:
            self.follow_gateways()
            self.sample_services()

    def on_screen_resume(self) -> None:
        # Back from a profile's view: rows rebuilt while it covered the table are drawn anew
        # (a repaint of the cached lines alone can show the cursor where it was).
        self.table.refresh(layout=True)
        self.show_rows()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    # -- keeping it live ----------------------------------------------------------------------

    @work(group="fleet-gateways", exit_on_error=False, name="following the fleet's gateways")
    async def follow_gateways(self) -> None:
        def changed() -> None:
            self.post_message(FleetChanged())

        await self.fleet.watch(changed)

    @work(group="fleet-services", exit_on_error=False, name="sampling the service manager")
    async def sample_services(self) -> None:
        import asyncio

        while True:
            changed = await in_own_thread(self.fleet.sample_services)
            if changed:
                self.post_message(FleetChanged())
            # The sampling period (a loop is judged over several); soon again if it could not look yet.
            await asyncio.sleep(SAMPLE_INTERVAL if changed is not None else 0.1)

    def on_fleet_changed(self, _: FleetChanged) -> None:
        self.show_rows()

    def show_rows(self) -> None:
        rows = [r for r in self.fleet.rows() if self.filter.lower() in r.profile.lower()]
        self.table.show(rows, self.clock())
        line = summary(rows, self.filter)
        if line != self._summary:
            self._summary = line
            self.query_one("#fleet-summary", Static).update(line)
        selected = self.table.selected()
        shown = (selected.profile, *(self.can_run(a, selected) for a in OWN_ACTIONS)) if selected else None
        if shown != self._shown_selection:  # the keys on offer changed: the footer is drawn again
            self._shown_selection = shown
            self.refresh_bindings()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._shown_selection = None
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    # -- what can run for the selected row ------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "clear_filter", "help", "quit"):
            return True
        if action not in OWN_ACTIONS:
            return False  # the profile view's keys (the app names them `screen.…`) are not the fleet's
        row = self.table.selected() if self.is_mounted else None
        return self.can_run(action, row) or None

    def can_run(self, action: str, row: FleetRow | None) -> bool:
        if row is None:
            return False
        if action == "doctor":
            return bool(row.findings)
        if row.foreign:
            return False
        if action == "open":
            return row.verdict != FleetVerdict.INVALID or row.owner != OwnerKind.NONE
        if action == "restart_feishu":
            return row.live and not self._restarting(row.profile)
        if action == "pick_model":
            return row.live and bool(row.models)
        if action == "hand_back":
            return self.console.serves_here(row.profile)
        if action == "take_over":
            return row.owner in MANAGED and self.console.free_to_serve(row.profile)
        if action == "start_stop":
            return row.owner != OwnerKind.NONE or row.verdict == FleetVerdict.STOPPED
        return False

    def _restarting(self, profile: str) -> bool:
        return any(w.group == FLEET_RESTART and w.name.endswith(f"'{profile}'") and not w.is_finished
                   for w in self.workers)  # fmt: skip

    def commands(self) -> Iterable[SystemCommand]:
        """The palette: the same keys, those that can run for the selected row."""
        row = self.table.selected()
        for binding in FLEET_BINDINGS:
            if binding.action in ("clear_filter", "help", "quit") or not (
                binding.action == "filter" or self.can_run(binding.action, row)
            ):
                continue
            help_text = f"{binding.tooltip} (key {binding.key_display or binding.key})"
            yield SystemCommand(binding.description, help_text, self._palette_callback(binding.action))

    def _palette_callback(self, action: str) -> Callable[[], Any]:
        return lambda: self.run_action(action)

    def selected_for(self, action: str) -> FleetRow | None:
        row = self.table.selected()
        return row if self.can_run(action, row) else None

    # -- the keys -------------------------------------------------------------------------------

    def action_help(self) -> None:
        self.console.action_help()

    async def action_quit(self) -> None:
        await self.console.action_quit()

    def action_open(self) -> None:
        row = self.selected_for("open")
        if row is not None:
            self.console.open_profile(row.profile)

    def action_restart_feishu(self) -> None:
        row = self.selected_for("restart_feishu")
        if row is not None:
            self.notify(f"restarting the Feishu connection of '{row.profile}'…", markup=False)
            self.restart_feishu(row.profile)
            self.refresh_bindings()

    def restart_feishu(self, profile: str) -> None:
        home = self.fleet.home
        assert home is not None

        async def restart() -> None:
            response = await arequest(home.socket_file(profile), "restart_feishu", RESTART_TIMEOUT)
            if not response.get("restarted"):
                self.notify(f"'{profile}': a Feishu restart is already running", severity="warning", markup=False)
            self.refresh_bindings()

        self.run_worker(
            restart(), group=FLEET_RESTART, exit_on_error=False, name=f"restarting the Feishu connection of '{profile}'"
        )

    def action_pick_model(self) -> None:
        row = self.selected_for("pick_model")
        if row is None:
            return
        choices = [Choice(name, f"{name}  (active)" if name == row.model else name) for name in row.models]
        body = f"Profile '{row.profile}': the next message starts with the model you pick."
        self.app.push_screen(
            ChoiceModal("Switch model", body, choices), lambda name: self._switch_model(row.profile, name)
        )

    def _switch_model(self, profile: str, name: str | None) -> None:
        home = self.fleet.home
        if not name or home is None:
            return

        async def switch() -> None:
            response = await arequest(home.socket_file(profile), "switch_model", OPERATION_TIMEOUT, model=name)
            self.notify(f"'{profile}': model {response['previous']} → {name}", markup=False)
            self.post_message(FleetChanged())

        self.run_worker(
            switch(), group="fleet-operations", exit_on_error=False, name=f"switching the model of '{profile}'"
        )

    def action_hand_back(self) -> None:
        if self.selected_for("hand_back") is not None:
            self.console.action_hand_back()

    def action_take_over(self) -> None:
        row = self.selected_for("take_over")
        if row is not None:
            self.console.take_over_from_fleet(row.profile)

    def action_start_stop(self) -> None:
        row = self.selected_for("start_stop")
        if row is None:
            return
        manager = self.fleet.manager_name
        if row.owner == OwnerKind.NONE:
            how = "start its job" if row.service not in ("", "not installed") else f"install its {manager} job"
            title, body = f"Start '{row.profile}' under {manager}?", f"gatewatch will {how} and wait until it serves."
        elif row.owner in MANAGED:
            title = f"Stop '{row.profile}'?"
            body = (
                f"{manager} stops its gateway (PID {row.pid}) and will not restart it; in-flight answers finish first."
            )
        else:
            title = f"Stop '{row.profile}'?"
            body = f"Its {row.owner} gateway (PID {row.pid}) stops after in-flight answers finish."
        choices = [Choice("yes", "yes", "y"), Choice("no", "no — leave it as it is", "n")]
        self.app.push_screen(
            ChoiceModal(title, body, choices, cancel="no"),
            lambda choice: self.console.start_or_stop(row) if choice == "yes" else None,
        )

    def action_doctor(self) -> None:
        row = self.selected_for("doctor")
        if row is None:
            return
        found = self.fleet.doctor_file(row)
        body = Text()
        for finding in row.findings:
            body.append(f"- {finding}\n")  # untrusted text from files: Text, never markup
        if found is not None:
            body.append(f"\n{found.path}", style="dim")
        choices = []
        if found is not None and found.fixable:
            choices.append(Choice("fix", "fix it: back the file up, rewrite it by our rules, reload the job", "f"))
        choices.append(Choice("close", "close", "c"))
        self.app.push_screen(
            ChoiceModal(f"Doctor: {row.profile}", body, choices, cancel="close"),
            lambda choice: self._fix(row) if choice == "fix" else None,
        )

    def _fix(self, row: FleetRow) -> None:
        found, home = self.fleet.doctor_file(row), self.fleet.home
        if found is None or home is None:
            return

        async def fix() -> None:
            fixed = await in_own_thread(found.fix, home, self.console.say_progress)
            self.notify(f"{found.path.name}: {'fixed' if fixed else 'nothing to fix'}", markup=False)
            await in_own_thread(self.fleet.sample_services)
            self.post_message(FleetChanged())

        self.run_worker(fix(), group="fleet-operations", exit_on_error=False, name=f"fixing {found.path.name}")

    def action_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.display = True
        box.value = self.filter
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.value, box.display, self.filter = "", False, ""
        self.table.focus()
        self.show_rows()

    @on(Input.Changed, "#fleet-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter = event.value
        self.show_rows()

    @on(Input.Submitted, "#fleet-filter")
    def _filter_submitted(self, _: Input.Submitted) -> None:
        self.table.focus()  # the filter stays; the keys act on the rows again


def summary(rows: list[FleetRow], filter_text: str) -> Text:
    """One line above the table: how many, and how many need a look, in words and colour."""
    profiles = [r for r in rows if not r.foreign]
    line = Text(f"gatewatch fleet · {len(profiles)} profile{'s' if len(profiles) != 1 else ''}", style="bold")
    counts: dict[str, int] = {}
    for row in profiles:
        counts[row.verdict or ""] = counts.get(row.verdict or "", 0) + 1
    for verdict in FleetVerdict:
        if counts.get(verdict):
            line.append(f" · {counts[verdict]} {verdict}")
    flagged = sum(1 for r in rows if r.findings)
    if flagged:
        line.append(f" · ⚑ {flagged} with findings (d)", style="yellow")
    if filter_text:
        line.append(" · filter: ")
        line.append(filter_text, style="reverse")
    return line
