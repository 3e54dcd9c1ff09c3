"""The operations console: one profile's gateway, in this process, with its vital signs on screen.

The gateway runs on a loop thread of its own (`LocalSource`), never on the App's loop. The UI only
reads snapshots (cheap, lock-guarded copies) on a timer and sets them on the main screen, whose
panels are bound to them. Anything that could block (a Feishu restart, a fault injection, stopping)
runs in a worker with `exit_on_error=False`, because an exception that exits the app would also stop
the gateway; one `Worker.StateChanged` handler reports every failure. Errors of the gateway's own
tasks reach the log pane through its log (gateway_core). Operations live in tui/operations.py, the
launchd hand-over in handover.py, leaving in leaving.py, keys in keys.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from textual import work
from textual.worker import Worker, WorkerState

from gateway_core.config import ConfigError, Home, check_profile_name, load_profile
from gateway_core.ownership import AppIdBusy, ProfileBusy, read_owner
from gateway_core.process_stats import ProcessSampler, ProcessStats
from gateway_core.states import OwnerKind
from gateway_core.threads import in_own_thread

from .attachment import AttachWatch
from .handover import TAKING_OVER, Handover
from .keys import KeyRegistry
from .leaving import STOP_SIGNALS, Leaving
from .operations import OPERATIONS, Operations
from .phase import ConsolePhase
from .reading import read_source
from .remote import RemoteSource
from .screens import Choice, ChoiceModal, Fault
from .screens.main import MainScreen
from .source import OPERATION_TIMEOUT, GatewaySource, LocalSource

if TYPE_CHECKING:
    from gateway_core.fleet import FleetRow
    from gateway_core.gateway import Gateway

    # The fleet's modules (and the service managers' they read) load when a fleet is shown:
    # a console on one profile never pays for them before its first frame.
    from .fleet import FleetSource, LiveFleet
    from .screens.fleet import FleetScreen

__all__ = ["ConsoleApp", "ConsolePhase", "console_source", "leave", "run_console", "run_fleet"]

log = logging.getLogger("gatewatch.console")

REFRESH_INTERVAL = 2.0  # with no news, panels read a fresh snapshot this often: at rest only ages move
REDRAW_GAP = 0.2  # news redraws at most this often: a flood of log lines is drawn in batches
FLEET_ACTIONS = ("command_palette",)  # the app's own keys while the fleet view shows (it has ? and q)


class ConsoleApp(Leaving, Handover, Operations, KeyRegistry):
    CSS_PATH = Path(__file__).with_name("console.tcss")  # absolute: subclasses live elsewhere
    TITLE = "gatewatch"

    def __init__(
        self,
        source: GatewaySource | None,
        *,
        home: Home | None = None,
        faults: Iterable[Fault] = (),
        clock: Callable[[], float] = time.time,
        process_stats: Callable[[int | None], ProcessStats | None] | None = None,
        handle_signals: bool = False,
        make_local: Callable[[], GatewaySource] | None = None,
        fleet: FleetSource | None = None,
        fleet_live: bool = True,
    ):
        super().__init__()
        # The profile open now (None: only the fleet view, nothing opened yet or left with Esc).
        self.source: GatewaySource | None = source
        self.fleet = fleet  # every profile at a glance; None: this console shows one profile only
        self._fleet_live = fleet_live
        self.fleet_screen: FleetScreen | None = None
        self.main: MainScreen | None = None
        self._make_local = make_local  # how to serve the profile here (after a take-over or exit)
        self.home = home
        self.faults = list(faults)
        self.clock = clock
        self.process_stats = process_stats or ProcessSampler()
        self.handle_signals = handle_signals
        self._reported: deque[str] = deque(maxlen=32)  # recent errors, so a refresh does not repeat them
        # Every notice shown, newest last: a toast expires after seconds, this record does not
        # (the tests read it; nothing else of Textual's notification internals).
        self.told: deque[str] = deque(maxlen=200)
        self._busy: ProfileBusy | None = None
        self.terminal_lost = False  # SIGHUP: the SSH session (and with it the terminal) went away
        self._attach_watch = AttachWatch()
        self._pairing_requests = 0  # as last shown: when it changes, so does whether `a` is on offer

    def get_default_screen(self) -> MainScreen | FleetScreen:
        if self.fleet is not None:
            # The fleet is the base; a profile's view goes on top of it and Esc takes it off.
            from .screens.fleet import FleetScreen

            self.fleet_screen = FleetScreen(self.fleet, self.clock, live=self._fleet_live)
            return self.fleet_screen
        self.main = MainScreen().data_bind(ConsoleApp.phase)
        return self.main

    def show_profile(self) -> None:
        """The open profile's view, fresh, over the fleet (its panels fill from the next reading)."""
        self.call_after_refresh(self.follow)  # once the log pane is laid out: it takes lines then
        # Not data_bind: that binds to the screen whose handler runs this (the fleet's); watch_phase
        # passes the phase on instead.
        self.main = MainScreen()
        self.main.phase = self.phase
        self.push_screen(self.main)
        self.refresh_panels()

    # -- start-up: paint first, then start the gateway --------------------------------------------

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_stop_signal, signum)
        if self.source is None:
            return  # the fleet view only: a profile opens with Enter
        if self.fleet is not None:
            self.show_profile()  # `console --profile P` with its fleet underneath
        self.refresh_panels()
        # After the first paint: Gateway.start() is quick, but nothing may delay the first frame
        # (and the log pane takes lines once it is laid out).
        self.call_after_refresh(self._start_serving)

    def _start_serving(self) -> None:
        self.follow()
        self.serve()

    @work(group="gateway", exit_on_error=False, name="starting the gateway")
    async def serve(self) -> None:
        if self.source is None:
            return
        try:
            await self.source.start()
        except ProfileBusy as busy:
            self.phase, self._busy = ConsolePhase.OWNED, busy
            self.ask_owned()
            return
        except AppIdBusy as busy:  # another profile serves this Feishu app: nothing to attach to
            self.phase = ConsolePhase.FAILED
            self.notify(str(busy), title="not served", severity="error", markup=False, timeout=15)
            return
        except Exception:
            self.phase = ConsolePhase.FAILED
            raise
        self.phase = ConsolePhase.ATTACHED if self.source.attachment() is not None else ConsolePhase.SERVING
        self.refresh_panels()

    async def on_unmount(self) -> None:
        # A safety net for any way out that skipped the quit flow: never leave the gateway half-run.
        try:
            await self.stop_source()
        except Exception as exc:
            self.report("stopping the gateway", exc)
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def watch_phase(self, phase: str) -> None:
        if self.fleet is not None and self.main is not None:
            self.main.phase = phase  # a profile's view opened over the fleet is not data-bound
        self.offer_keys()  # what is on offer follows the phase

    def offer_keys(self) -> None:
        """The footer (and so the keys) asks check_action again; not while shutting down."""
        if self.is_running:
            self.refresh_bindings()

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.told.append(message)
        super().notify(message, *args, **kwargs)

    # -- refreshing ---------------------------------------------------------------------------

    def refresh_panels(self) -> None:
        if self.source is None:
            return
        try:
            if self.main is None:
                # On the fleet, a profile served here stays served: its stop requests still count.
                self._act_on_stop_request()
                return
            self.main.reading = read_source(self.source, self.clock, self.process_stats)
            access = self.main.reading.snapshot.pipeline.access
            if (requests := len(access.pending) if access is not None else 0) != self._pairing_requests:
                self._pairing_requests = requests
                self.offer_keys()
            news = self._attach_watch.news(self.main.reading.attachment, can_serve_here=self._make_local is not None)
            if news is not None:  # attached, and the owner's state changed: keys may change too
                self.offer_keys()
                if news.text:
                    self.notify(news.text, markup=False, **news.style)
            self._act_on_stop_request()
        except Exception as exc:
            self.report("refreshing the panels", exc)

    def follow(self) -> None:
        """Follow the open source (once: a second call while following does nothing)."""
        if not any(worker.group == "follow" and not worker.is_finished for worker in self.workers):
            self.follow_gateway()

    @work(group="follow", exit_on_error=False, name="following the gateway")
    async def follow_gateway(self) -> None:
        """Redraw when the gateway has news (every state change is logged), else every 2 s.

        Waiting on the source instead of polling it lets the console rest when nothing moves,
        and shows a change (CONNECTED, a message) as soon as it is logged, not at the next tick.
        On the fleet, a profile still served here is only checked for stop requests, every
        2 s; with no source at all (the fleet alone) nothing is followed.
        """
        while (source := self.source) is not None:
            if self.main is None:
                await asyncio.sleep(REFRESH_INTERVAL)
                self.refresh_panels()
                continue
            news = await source.news_after(self.main.log_pane.last_seq, REFRESH_INTERVAL)
            self.pull_logs()
            self.refresh_panels()
            if news:
                await asyncio.sleep(REDRAW_GAP)

    def _act_on_stop_request(self) -> None:
        if self.source is not None and self.phase == ConsolePhase.SERVING and self.source.stop_requested:
            # The console owns this gateway, so it is the one that acts on a stop request.
            self.notify("stop requested over the control socket: stopping", severity="warning")
            self.phase = ConsolePhase.STOPPING
            if self.fleet is None:
                self.stop_and_exit()
            else:
                self.stop_and_return()

    def pull_logs(self) -> None:
        if self.source is None or self.main is None:
            return
        try:
            pane = self.main.log_pane
            pane.ingest(self.source.log_since(pane.last_seq))
        except Exception as exc:
            self.report("reading the log", exc)

    # -- errors are shown, never fatal --------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every operation is a worker named for what it does: its failure is reported here, once."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report(event.worker.name, event.worker.error)
        self.offer_keys()  # a running restart dims its key; a finished one frees it

    def report(self, doing: str, exc: BaseException) -> None:
        """Notify and log an error; a recent error is notified once, not on every refresh."""
        # The log is redacted by its handlers; the screen is not, so redact here too.
        text = f"{doing} failed: {type(exc).__name__}: {exc}"
        text = self.source.redact(text) if self.source is not None else text
        log.error("%s", text, exc_info=(type(exc), exc, exc.__traceback__))
        if text not in self._reported:
            self._reported.append(text)
            self.notify(text, title="gatewatch error", severity="error", markup=False, timeout=10)

    # -- operations ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.main is None or self.source is None:
            return action in FLEET_ACTIONS  # the fleet view's own keys are its screen's
        if action in OPERATIONS:
            return self.operation_state(action)
        if action in ("hand_back", "take_over", "serve_here"):
            return self.handover_state(action)
        return True

    def profile_name(self) -> str:
        assert self.source is not None
        return self.source.snapshot().profile

    def switch_source(self, source: GatewaySource) -> None:
        self.source = source
        self._attach_watch = AttachWatch()
        if self.main is not None:
            self.main.log_pane.follow_new_source()  # its records number from 1 again
        self.refresh_panels()

    # -- the fleet view and the profile open over it ----------------------------------------------

    def serves_here(self, profile: str) -> bool:
        """This console serves the profile's gateway itself."""
        return (
            isinstance(self.source, LocalSource)
            and self.source.profile == profile
            and self.phase == ConsolePhase.SERVING
            and self.source.running
        )

    def free_to_serve(self, profile: str) -> bool:
        """Nothing else is served here: one profile per console (its loop thread, its log pane)."""
        return not isinstance(self.source, LocalSource) or not self.source.running or self.source.profile == profile

    def open_profile(self, profile: str) -> None:
        """Enter on the fleet: the profile's view, attached to its owner, or served here after asking."""
        if self.serves_here(profile):
            self.show_profile()
            return
        if not self.free_to_serve(profile):
            served = self.source.profile if isinstance(self.source, LocalSource) else "another profile"
            self.notify(
                f"this console serves '{served}': open it and quit (q) or hand it back (h) first",
                severity="warning",
                markup=False,
            )
            return
        if self.home is None:
            return
        owner = read_owner(self.home.lock_file(profile))
        if owner is not None:
            self._open(RemoteSource(self.home, profile, owner), profile)
            return
        body = f"Nobody serves profile '{profile}'. Serve it in this console (until you quit or hand it back)?"
        choices = [Choice("yes", "yes — serve it here", "y"), Choice("no", "no — back to the fleet", "n")]
        self.push_screen(
            ChoiceModal(f"Serve '{profile}' here?", body, choices, cancel="no"),
            lambda choice: self.serve_profile_here(profile) if choice == "yes" else None,
        )

    def serve_profile_here(self, profile: str) -> None:
        assert self.home is not None
        try:
            load_profile(self.home, profile)  # a bad profile is one line, before anything starts
        except ConfigError as error:
            self.notify(str(error), title="cannot serve", severity="error", markup=False, timeout=15)
            return
        make_local = local_source_maker(self.home, profile)
        self._open(make_local(), profile)

    def _open(self, source: GatewaySource, profile: str) -> None:
        assert self.home is not None
        self._make_local = local_source_maker(self.home, profile)
        self._busy = None
        self.source, self._attach_watch = source, AttachWatch()
        self.phase = ConsolePhase.STARTING
        self.show_profile()
        self.serve()

    def back_to_fleet(self) -> bool:
        """Esc on the profile's view: back to the fleet. A gateway served here keeps serving; an
        attached one is detached from (the fleet follows it anyway). False without a fleet."""
        if self.fleet is None or self.main is None:
            return False
        self.leave_profile()
        return True

    @work(group="gateway", exit_on_error=False, name="leaving the profile's view")
    async def leave_profile(self) -> None:
        source = self.source
        if not self.serves_here(source.profile if isinstance(source, LocalSource) else ""):
            self.source = None
            self.phase = ConsolePhase.STARTING
            if source is not None and source.running:
                await source.stop()  # detach: the remote gateway is not touched
        self.back_on_fleet()

    def back_on_fleet(self) -> None:
        """The profile's view (and anything over it) off the screen; the fleet shows, fresh."""
        if self.main is not None:
            self.main = None
            while len(self.screen_stack) > 1:
                self.pop_screen()
        self.offer_keys()
        if self.fleet_screen is not None:
            from .screens.fleet import FleetChanged

            self.fleet_screen.post_message(FleetChanged())

    @work(group="gateway", exit_on_error=False, name="stopping the gateway")
    async def stop_and_return(self) -> None:
        """Stop the gateway served here and show the fleet (the fleet's `s`, a remote stop request)."""
        await self.stop_source()
        self.source, self.phase = None, ConsolePhase.STARTING
        self.back_on_fleet()

    def take_over_from_fleet(self, profile: str) -> None:
        self._take_over_then_serve(profile)

    @work(group="gateway", exit_on_error=False, name=TAKING_OVER)
    async def _take_over_then_serve(self, profile: str) -> None:
        from launchd.handover import take_over

        assert self.home is not None
        await in_own_thread(take_over, self.home, profile, self.say_progress)
        self.serve_profile_here(profile)

    def start_or_stop(self, row: FleetRow) -> None:
        """The fleet's `s`, confirmed: start a stopped profile under the service manager, or stop it."""
        if self.serves_here(row.profile):
            self.stop_and_return()
        elif row.owner == OwnerKind.NONE:
            self._start_under_manager(row.profile, row.service not in ("", "not installed"))
        elif row.owner in (OwnerKind.LAUNCHD, OwnerKind.SYSTEMD):
            self._stop_managed(row.profile)
        else:
            self._stop_over_socket(row.profile)

    @work(group="fleet-service", exit_on_error=False, name="starting the profile under its service manager")
    async def _start_under_manager(self, profile: str, installed: bool) -> None:
        from launchd.handover import hand_back
        from launchd.service import choose_manager

        assert self.home is not None
        if installed:
            await in_own_thread(hand_back, self.home, profile, self.say_progress)
        else:
            await in_own_thread(choose_manager().install, self.home, profile, self.say_progress)

    @work(group="fleet-service", exit_on_error=False, name="stopping the profile's job")
    async def _stop_managed(self, profile: str) -> None:
        from launchd.handover import take_over

        assert self.home is not None
        await in_own_thread(take_over, self.home, profile, self.say_progress)  # stopped, and not restarted

    @work(group="fleet-service", exit_on_error=False, name="stopping the profile's gateway")
    async def _stop_over_socket(self, profile: str) -> None:
        from gateway_core.control import arequest

        assert self.home is not None
        await arequest(self.home.socket_file(profile), "stop", OPERATION_TIMEOUT)
        self.notify(f"'{profile}': stopping (in-flight answers finish first)", markup=False)


def run_fleet(home: Home) -> int:
    """`gatewatch console` (and bare `gatewatch`): the fleet view; Enter opens a profile."""
    app = ConsoleApp(None, home=home, handle_signals=True, fleet=live_fleet(home))
    app.run()
    return leave(app)


def live_fleet(home: Home) -> LiveFleet:
    """The fleet with this machine's service manager (none if it cannot be told: the rows say so)."""
    from launchd.fleet import ServiceWatch
    from launchd.service import ServiceError, choose_manager

    from .fleet import LiveFleet

    try:
        services: ServiceWatch | None = ServiceWatch(choose_manager())
    except ServiceError:
        services = None
    return LiveFleet(home, services)


def run_console(home: Home, profile_name: str) -> int:
    """`gatewatch console`: serve the profile in this process, or attach to the gateway serving it.

    When another live gateway owns the profile (usually launchd's headless one), the console
    attaches to it through its control socket instead of refusing; attaching needs none of the
    profile's secrets. Otherwise a bad profile raises ConfigError before anything is drawn (the CLI
    prints its one line). Returns the exit code: 0 after a clean stop, hand-back or detach, 3 when
    another owns the profile and the operator quit.
    """
    check_profile_name(profile_name)
    make_local = local_source_maker(home, profile_name)
    source = console_source(home, profile_name, make_local)
    if source.attachment() is None:
        load_profile(home, profile_name)  # fail fast: a bad profile is one line, before the first frame
    app = ConsoleApp(source, home=home, handle_signals=True, make_local=make_local, fleet=live_fleet(home))
    app.run()
    return leave(app)


def local_source_maker(home: Home, profile_name: str) -> Callable[[], GatewaySource]:
    """How this console serves the profile itself (at start, or after a take-over or "serve here")."""

    def make_gateway() -> Gateway:
        # Runs on the gateway's own thread, after the first frame: the gateway's modules are imported
        # here, and a take-over reads the profile anew.
        from gateway_core.gateway import Gateway

        return Gateway(load_profile(home, profile_name), home, owner="console")

    def make_local() -> GatewaySource:
        return LocalSource(profile_name, make_gateway)

    return make_local


def console_source(home: Home, profile: str, make_local: Callable[[], GatewaySource]) -> GatewaySource:
    """Attach to the live owner of the profile if there is one; otherwise serve it here."""
    owner = read_owner(home.lock_file(profile))
    return RemoteSource(home, profile, owner) if owner else make_local()


def leave(app: ConsoleApp) -> int:
    """The exit code once the app has returned and everything of ours is closed.

    After a hang-up, Textual's input threads spin on the dead terminal and never end, so the
    interpreter would wait for them forever: the gateway is already drained and its lock released
    by then, so the process ends here instead.
    """
    code = app.return_code or 0
    if app.terminal_lost:
        os._exit(code)
    return code
