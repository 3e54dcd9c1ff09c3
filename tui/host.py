"""What the console's parts share, declared once.

The console is one App (`ConsoleApp`, app.py) assembled from parts that each own a concern:
leaving (leaving.py), hand-overs (handover.py), operations (operations.py) and the key registry
(keys.py). A part may use only what is declared here — the state the app holds and the few calls
one part offers another — so each part reads on its own and mypy checks every use. Each call is
implemented once, in the module its comment names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from textual.app import App
from textual.reactive import reactive

from .phase import ConsolePhase

if TYPE_CHECKING:
    from gateway_core.config import Home
    from gateway_core.ownership import ProfileBusy

    from .fleet import FleetSource
    from .screens import Fault
    from .screens.main import MainScreen
    from .source import GatewaySource


class ConsoleHost(App[None]):
    phase: reactive[str] = reactive(ConsolePhase.STARTING)

    # The app's state (set in ConsoleApp.__init__ and get_default_screen).
    source: GatewaySource | None  # the open profile: served here (LocalSource) or attached; None: the fleet alone
    home: Home | None
    faults: list[Fault]
    clock: Callable[[], float]
    main: MainScreen | None  # the open profile's view; None while only the fleet shows
    fleet: FleetSource | None  # every profile at a glance; None for a console on one profile only
    _make_local: Callable[[], GatewaySource] | None  # how to serve the profile here, if this console may
    _busy: ProfileBusy | None  # who owned the profile when serving it here was refused

    @property
    def opened(self) -> GatewaySource:
        """The open profile's source. The keys and steps that use it are offered only while a
        profile is open (check_action), so reaching here without one is a bug, said as such."""
        if self.source is None:
            raise RuntimeError("no profile is open")
        return self.source

    # What one part calls on another.
    def refresh_panels(self) -> None:  # app.py
        raise NotImplementedError

    def profile_name(self) -> str:  # app.py
        raise NotImplementedError

    def switch_source(self, source: GatewaySource) -> None:  # app.py
        raise NotImplementedError

    def serve(self) -> Any:  # app.py (a worker)
        raise NotImplementedError

    def take_over(self) -> Any:  # handover.py (a worker)
        raise NotImplementedError

    def hand_back(self) -> Any:  # handover.py (a worker)
        raise NotImplementedError

    def agent_installed(self) -> bool:  # handover.py
        raise NotImplementedError

    async def stop_source(self) -> None:  # leaving.py
        raise NotImplementedError

    def on_quit_choice(self, choice: str | None) -> None:  # leaving.py
        raise NotImplementedError

    def ask_owned(self) -> None:  # leaving.py
        raise NotImplementedError

    def back_on_fleet(self) -> None:  # app.py
        raise NotImplementedError
