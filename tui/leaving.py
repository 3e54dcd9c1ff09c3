"""Leaving the console, and the choices when another gateway owns the profile.

`q` asks how to leave a gateway this console serves (stop it, or hand it back to launchd), only
detaches from one it is attached to, and simply quits otherwise; SIGTERM and SIGHUP stop and exit
without asking. The exit code says how it ended (see `run_console`).
"""

from __future__ import annotations

import logging
import signal

from textual import work

from ._textual_compat import draw_nowhere
from .host import ConsoleHost
from .phase import ConsolePhase
from .remote import RemoteSource
from .screens import owned_by_another, quit_confirm
from .screens.owned import ATTACH, TAKE_OVER
from .screens.quit_confirm import HAND_BACK, STOP

log = logging.getLogger("gatewatch.console")

EXIT_FAILED = 1  # the gateway could not start (the error is on screen and in the log)
EXIT_OWNED = 3  # as `run --headless`: the profile is served by someone else
# SIGTERM: asked to stop. SIGHUP: the SSH session went away. Either way: drain, release, exit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Leaving(ConsoleHost):
    """Mixed into ConsoleApp: `q`, the stop signals, and the "owned by another" choices."""

    async def action_quit(self) -> None:
        if self.phase == ConsolePhase.STOPPING:
            return
        if self.phase == ConsolePhase.ATTACHED:
            await self.opened.stop()  # detach only: the gateway keeps serving
            self.exit(return_code=0)
        elif self.phase != ConsolePhase.SERVING or not self.opened.running:
            codes: dict[str, int] = {ConsolePhase.OWNED: EXIT_OWNED, ConsolePhase.FAILED: EXIT_FAILED}
            self.exit(return_code=codes.get(self.phase, 0))
        else:
            from launchd.service import default_manager_name  # this machine's: launchd, systemd

            manager = default_manager_name() if self.home is not None else None
            screen = quit_confirm(self.profile_name(), self.opened.describe(), manager)
            self.push_screen(screen, self.on_quit_choice)

    def on_quit_choice(self, choice: str | None) -> None:
        if choice == STOP:
            self.stop_and_exit()
        elif choice == HAND_BACK and self.home is not None and self.agent_installed():
            self.hand_back()

    def ask_owned(self) -> None:
        if self._busy is not None:
            from launchd.service import default_manager_name

            self.push_screen(owned_by_another(self._busy, default_manager_name()), self._on_owned_choice)

    def _on_owned_choice(self, choice: str | None) -> None:
        if choice == ATTACH:
            holder = self._busy.holder if self._busy else None
            if self.home is None or holder is None:
                self.notify("cannot attach: the owner is unknown", severity="warning")
                self.ask_owned()
                return
            self.switch_source(RemoteSource(self.home, self.profile_name(), holder))
            self.serve()  # watch and operate the owner through its control socket, owning nothing
        elif choice == TAKE_OVER and self.home is not None:
            self.take_over()
        elif choice == TAKE_OVER:
            self.notify("no launchd hand-over here: this console has no gatewatch home", severity="warning")
            self.ask_owned()
        else:
            self.exit(return_code=EXIT_OWNED)

    @work(group="gateway", exit_on_error=False, name="stopping the gateway")
    async def stop_and_exit(self) -> None:
        try:
            await self.stop_source()
        finally:
            self.exit()

    async def stop_source(self) -> None:
        if self.source is None or not self.opened.running:
            return
        self.phase = ConsolePhase.STOPPING
        self.notify("stopping the gateway: in-flight answers finish first…")
        unfinished = await self.opened.stop()
        if unfinished:
            log.error("stopped with %d answers unfinished", unfinished)

    def _on_stop_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.terminal_lost = True
            draw_nowhere(self)  # the terminal is gone: draw nowhere from now on
        self.stop_and_exit()
