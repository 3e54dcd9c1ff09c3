"""The console's keys: one registry for the footer, the help screen (`?`) and the command palette.

Single keys only: they work over any SSH terminal, and ctrl+s/ctrl+q are often swallowed. ? and q
come first so they are in the footer at any width; rarely used keys are in the help and the
command palette (:) only. Short labels: at 80 columns all shown ones fit.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from .host import ConsoleHost
from .screens import HelpScreen

BINDINGS = [
    Binding("question_mark", "help", "Help", key_display="?", tooltip="every key"),
    Binding("q", "quit", "Quit", tooltip="stop the gateway or hand it back, then quit"),
    Binding("m", "pick_model", "Model", tooltip="switch the model for the next messages"),
    Binding("r", "restart_feishu", "Reconnect", tooltip="restart the Feishu connection now"),
    Binding("e", "rebuild_executor", "Executor", tooltip="rebuild the executor now"),
    Binding("a", "access", "Access", tooltip="pairing requests: approve or deny who may talk to the bot"),
    Binding(
        "h",
        "hand_back",
        "Hand back",
        show=False,
        tooltip="hand the profile back to its service manager",
    ),
    Binding(
        "t",
        "take_over",
        "Take over",
        show=False,
        tooltip="take the profile over from its service manager",
    ),
    Binding("f", "faults", "Faults", tooltip="inject a fault (demo only)"),
    Binding("s", "serve_here", "Serve here", tooltip="the attached gateway exited: serve the profile here"),
    Binding("p", "screen.toggle_pause", "Pause", tooltip="freeze / follow the log view"),
    Binding(
        "end",
        "screen.follow_log",
        "Follow",
        key_display="End",
        show=False,
        priority=True,
        tooltip="follow the log again (after scrolling up)",
    ),
    Binding("l", "screen.cycle_level", "Level", show=False, tooltip="minimum log level shown (cycles)"),
    Binding("slash", "screen.search", "Search", key_display="/", tooltip="search the log (highlights, counts)"),
    Binding("w", "screen.next_warning", "Warn", tooltip="jump to the next WARNING/ERROR in the log"),
    Binding(
        "enter",
        "screen.details",
        "Details",
        key_display="Enter",
        show=False,
        tooltip="the selected message or log line in full",
    ),
    Binding(
        "escape",
        "screen.clear_search",
        "Clear search",
        key_display="Esc",
        show=False,
        tooltip="close the search and follow the whole log",
    ),
    Binding(
        "colon", "command_palette", "Palette", key_display=":", show=False, tooltip="search every operation by name"
    ),
]


class KeyRegistry(ConsoleHost):
    """Help and palette list the keys the console offers now (`check_action`): one list for both."""

    BINDINGS: ClassVar[list[BindingType]] = [*BINDINGS]

    def action_help(self) -> None:
        fleet = self.fleet_shown()
        keys = [b for b in fleet.BINDINGS if isinstance(b, Binding)] if fleet is not None else []
        self.push_screen(HelpScreen(keys + self.operator_bindings()))

    def fleet_shown(self) -> Any:
        """The fleet screen when it is what the operator sees (no profile open over it), else None."""
        from .screens.fleet import FleetScreen

        fleet = getattr(self, "fleet_screen", None)
        return fleet if isinstance(fleet, FleetScreen) and getattr(self, "main", None) is None else None

    def operator_bindings(self, enabled_only: bool = False) -> list[Binding]:
        """The keys on offer: `check_action` None is shown (disabled for now), False is not."""
        states = ((b, self.check_action(b.action, ())) for b in BINDINGS)
        return [b for b, state in states if (state if enabled_only else state is not False)]

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # The palette lists the same operations as the keys, the ones that can run now.
        fleet = self.fleet_shown()
        if fleet is not None:
            yield from fleet.commands()
        for binding in self.operator_bindings(enabled_only=True):
            if binding.action == "command_palette":
                continue
            help_text = f"key {binding.key_display or binding.key}"
            if binding.tooltip:
                help_text = f"{binding.tooltip} ({help_text})"
            yield SystemCommand(binding.description, help_text, self._palette_callback(binding.action))
        yield from super().get_system_commands(screen)

    def _palette_callback(self, action: str) -> Callable[[], Any]:
        return lambda: self.run_action(action)
