"""The console's side of a launchd hand-over: take the profile over, hand it back, serve it here.

launchd.handover does the work on a thread of its own and reports each step; the steps reach the
app as `HandoverProgress` messages (post_message is safe from any thread), which it shows. Each
operation is a worker whose failure the app's one `Worker.StateChanged` handler reports; a worker
that must leave things as they were first (nobody serving is never the outcome) does so and re-raises.
"""

from __future__ import annotations

import logging

from textual import work
from textual.message import Message

from gateway_core.threads import in_own_thread

from .host import ConsoleHost
from .phase import ConsolePhase
from .screens import hand_back_confirm

log = logging.getLogger("gatewatch.console")

TAKING_OVER = "taking the profile over from its service manager"
HANDING_BACK = "handing the profile back to its service manager"


class HandoverProgress(Message):
    """One step of a hand-over, in words (from launchd.handover, which runs on its own thread)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class Handover(ConsoleHost):
    """Mixed into ConsoleApp: `t`, `h` and `s`."""

    def handover_state(self, action: str) -> bool | None:
        """check_action for the hand-over keys: hidden without launchd, disabled when not now."""
        if action == "serve_here":  # only while attached to an owner that is gone
            attached = self.opened.attachment()
            return attached is not None and attached.lock_free and self._make_local is not None
        if self.home is None:
            return False  # the demo has no gatewatch home, hence no launchd
        if action == "hand_back":  # only what this console serves itself can be handed back
            return self.phase == ConsolePhase.SERVING and self.opened.running or None
        return self.phase in (ConsolePhase.OWNED, ConsolePhase.ATTACHED) or None  # take_over

    def agent_installed(self) -> bool:
        """Checked before stopping anything: without the manager's job, a hand-back would leave nobody."""
        from launchd.service import choose_manager  # this machine's: launchd on a Mac, systemd on Linux

        profile = self.profile_name()
        manager = choose_manager()
        path = manager.definition(profile)
        if not path.exists():
            self.notify(
                f"no {manager.kind} for profile '{profile}' at {path}; install it with: "
                f"gatewatch {manager.name} install --profile {profile}",
                severity="warning",
                markup=False,
            )
        return path.exists()

    def action_hand_back(self) -> None:
        if self.agent_installed():
            from launchd.service import default_manager_name

            screen = hand_back_confirm(self.profile_name(), self.opened.describe(), default_manager_name())
            self.push_screen(screen, self.on_quit_choice)

    def action_take_over(self) -> None:
        self.take_over()

    def action_serve_here(self) -> None:
        self.serve_here()

    def say_progress(self, line: str) -> None:
        """launchd.handover's report callback: runs on its thread, so it only logs and posts."""
        log.info("%s", line)
        self.post_message(HandoverProgress(line))

    def on_handover_progress(self, message: HandoverProgress) -> None:
        self.notify(message.line, markup=False)

    @work(group="gateway", exit_on_error=False, name=TAKING_OVER)
    async def take_over(self) -> None:
        from launchd.handover import take_over

        attached = self.phase == ConsolePhase.ATTACHED
        try:
            await in_own_thread(take_over, self.home, self.profile_name(), self.say_progress)  # this machine's manager
        except Exception:
            if not attached:
                self.ask_owned()  # nothing changed: the same choices again
            raise
        if self._make_local is not None and self.opened.attachment() is not None:
            await self.opened.stop()  # detach from the gateway that just went away
            self.switch_source(self._make_local())
        self.phase = ConsolePhase.STARTING
        self.serve()

    @work(group="gateway", exit_on_error=False, name=HANDING_BACK)
    async def hand_back(self) -> None:
        from launchd.handover import hand_back

        profile = self.profile_name()
        try:
            await self.stop_source()
            await in_own_thread(hand_back, self.home, profile, self.say_progress)
        except Exception:
            self.phase = ConsolePhase.STARTING  # launchd did not take it: serve it here again, not nobody
            self.serve()
            raise
        if self.fleet is None:
            self.exit()
        else:  # the manager serves it now: back to the fleet, where it shows so
            self.source, self.phase = None, ConsolePhase.STARTING
            self.back_on_fleet()

    @work(group="gateway", exit_on_error=False, name="serving the profile here")
    async def serve_here(self) -> None:
        """The attached owner exited and nobody took the profile: serve it from this console."""
        make_local = self._make_local
        if make_local is None:  # not offered: check_action hides it without a way to serve here
            return
        await self.opened.stop()
        self.switch_source(make_local())
        self.phase = ConsolePhase.STARTING
        self.serve()  # ProfileBusy if someone was quicker: the usual choices then
