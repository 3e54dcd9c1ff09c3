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

from gateway_core.config import Home, check_profile_name, load_profile
from gateway_core.ownership import ProfileBusy, read_owner
from gateway_core.process_stats import ProcessSampler, ProcessStats

from .attachment import AttachWatch
from .handover import Handover
from .keys import KeyRegistry
from .leaving import STOP_SIGNALS, Leaving
from .operations import OPERATIONS, Operations
from .phase import ConsolePhase
from .reading import read_source
from .remote import RemoteSource
from .screens import Fault
from .screens.main import MainScreen
from .source import GatewaySource, LocalSource

if TYPE_CHECKING:
    from gateway_core.gateway import Gateway

__all__ = ["ConsoleApp", "ConsolePhase", "console_source", "leave", "run_console"]

log = logging.getLogger("gatewatch.console")

REFRESH_INTERVAL = 1.0  # with no news, panels read a fresh snapshot this often: ages are in seconds
REDRAW_GAP = 0.2  # news redraws at most this often: a flood of log lines is drawn in batches


class ConsoleApp(Leaving, Handover, Operations, KeyRegistry):
    CSS_PATH = Path(__file__).with_name("console.tcss")  # absolute: subclasses live elsewhere
    TITLE = "gatewatch"

    def __init__(
        self,
        source: GatewaySource,
        *,
        home: Home | None = None,
        faults: Iterable[Fault] = (),
        clock: Callable[[], float] = time.time,
        process_stats: Callable[[int | None], ProcessStats | None] | None = None,
        handle_signals: bool = False,
        make_local: Callable[[], GatewaySource] | None = None,
    ):
        super().__init__()
        self.source = source
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

    def get_default_screen(self) -> MainScreen:
        self.main = MainScreen().data_bind(ConsoleApp.phase)
        return self.main

    # -- start-up: paint first, then start the gateway --------------------------------------------

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_stop_signal, signum)
        self.refresh_panels()
        # After the first paint: Gateway.start() is quick, but nothing may delay the first frame
        # (and the log pane takes lines once it is laid out).
        self.call_after_refresh(self._start_serving)

    def _start_serving(self) -> None:
        self.follow_gateway()
        self.serve()

    @work(group="gateway", exit_on_error=False, name="starting the gateway")
    async def serve(self) -> None:
        try:
            await self.source.start()
        except ProfileBusy as busy:
            self.phase, self._busy = ConsolePhase.OWNED, busy
            self.ask_owned()
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

    def watch_phase(self) -> None:
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
        try:
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
            if self.phase == ConsolePhase.SERVING and self.source.stop_requested:
                # The console owns this gateway, so it is the one that acts on a stop request.
                self.notify("stop requested over the control socket: stopping", severity="warning")
                self.phase = ConsolePhase.STOPPING
                self.stop_and_exit()
        except Exception as exc:
            self.report("refreshing the panels", exc)

    @work(group="follow", exit_on_error=False, name="following the gateway")
    async def follow_gateway(self) -> None:
        """Redraw when the gateway has news (every state change is logged), else once a second.

        Waiting on the source instead of polling it lets the console rest when nothing moves,
        and shows a change (CONNECTED, a message) as soon as it is logged, not at the next tick.
        """
        while True:
            news = await self.source.news_after(self.main.log_pane.last_seq, REFRESH_INTERVAL)
            self.pull_logs()
            self.refresh_panels()
            if news:
                await asyncio.sleep(REDRAW_GAP)

    def pull_logs(self) -> None:
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
        text = self.source.redact(f"{doing} failed: {type(exc).__name__}: {exc}")
        log.error("%s", text, exc_info=(type(exc), exc, exc.__traceback__))
        if text not in self._reported:
            self._reported.append(text)
            self.notify(text, title="gatewatch error", severity="error", markup=False, timeout=10)

    # -- operations ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in OPERATIONS:
            return self.operation_state(action)
        if action in ("hand_back", "take_over", "serve_here"):
            return self.handover_state(action)
        return True

    def profile_name(self) -> str:
        return self.source.snapshot().profile

    def switch_source(self, source: GatewaySource) -> None:
        self.source = source
        self._attach_watch = AttachWatch()
        self.main.log_pane.follow_new_source()  # its records number from 1 again
        self.refresh_panels()


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
    app = ConsoleApp(source, home=home, handle_signals=True, make_local=make_local)
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
