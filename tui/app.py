"""The operations console: one profile's gateway, in this process, with its vital signs on screen.

The gateway runs on a loop thread of its own (`LocalSource`), never on the App's loop. The UI only
ever reads snapshots (cheap, lock-guarded copies) on a timer and calls the few operations of
`GatewaySource`; anything that could block (a Feishu restart, a fault injection, stopping) runs in
a worker with `exit_on_error=False`, because an exception that exits the app would also stop the
gateway. Errors of the gateway's own tasks reach the log pane through its log (gateway_core).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
import os
import signal
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from gateway_core.config import Home, check_profile_name, load_profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import ProfileBusy, read_owner
from gateway_core.states import GatewayState

from .panels import ExecutorPanel, FeishuPanel, HeaderBar, LogPane, MessagesPanel, ModelsPanel, ProcessStats
from .panels.header import ProcessSampler
from .screens import (
    Fault,
    HelpScreen,
    activity_detail,
    fault_menu,
    hand_back_confirm,
    log_line_detail,
    model_picker,
    owned_by_another,
    quit_confirm,
)
from .screens.owned import ATTACH, TAKE_OVER
from .screens.quit_confirm import HAND_BACK, STOP
from .remote import RemoteSource
from .source import GatewaySource, LocalSource
from gateway_core.threads import in_own_thread

log = logging.getLogger("gatewatch.console")

REFRESH_INTERVAL = 0.5  # panels redraw from a fresh snapshot this often (and after each action)
LOG_INTERVAL = 0.2  # the log pane pulls new records this often
EXIT_FAILED = 1  # the gateway could not start (the error is on screen and in the log)
EXIT_OWNED = 3  # as `run --headless`: the profile is served by someone else
# SIGTERM: asked to stop. SIGHUP: the SSH session went away. Either way: drain, release, exit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ConsolePhase(StrEnum):
    """What the console is doing with its profile's gateway."""

    STARTING = "starting"  # starting (or restarting) the gateway, or attaching to it
    SERVING = "serving"  # the gateway runs in this process
    ATTACHED = "attached"  # another process serves it; this console watches over the socket
    OWNED = "owned"  # another process serves it and this console did not attach
    FAILED = "failed"  # the gateway could not start
    STOPPING = "stopping"


# The gateway state the header shows while the console has no gateway of its own to ask.
PHASE_STATE = {
    ConsolePhase.STARTING: GatewayState.STARTING,
    ConsolePhase.OWNED: GatewayState.STOPPED,
    ConsolePhase.FAILED: GatewayState.STOPPED,
}


class ConsoleApp(App[None]):
    CSS_PATH = Path(__file__).with_name("console.tcss")  # absolute: subclasses live elsewhere
    TITLE = "gatewatch"
    # Single keys only: they work over any SSH terminal, and ctrl+s/ctrl+q are often swallowed.
    # ? and q come first so they are in the footer at any width; rarely used keys are in the
    # help (?) and the command palette (:) only. Short labels: at 80 columns all shown ones fit.
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?", tooltip="every key"),
        Binding("q", "quit", "Quit", tooltip="stop the gateway or hand it back, then quit"),
        Binding("m", "pick_model", "Model", tooltip="switch the model for the next messages"),
        Binding("r", "restart_feishu", "Reconnect", tooltip="restart the Feishu connection now"),
        Binding("e", "rebuild_executor", "Executor", tooltip="rebuild the executor now"),
        Binding("h", "hand_back", "Hand back", show=False, tooltip="hand the profile back to launchd"),
        Binding("t", "take_over", "Take over", show=False, tooltip="take the profile over from launchd"),
        Binding("f", "faults", "Faults", tooltip="inject a fault (demo only)"),
        Binding("s", "serve_here", "Serve here", tooltip="the attached gateway exited: serve the profile here"),
        Binding("p", "toggle_pause", "Pause", tooltip="freeze / follow the log view"),
        Binding(
            "end",
            "follow_log",
            "Follow",
            key_display="End",
            show=False,
            priority=True,
            tooltip="follow the log again (after scrolling up)",
        ),
        Binding("l", "cycle_level", "Level", show=False, tooltip="minimum log level shown (cycles)"),
        Binding("slash", "search", "Search", key_display="/", tooltip="search the log (highlights, counts)"),
        Binding("w", "next_warning", "Warn", tooltip="jump to the next WARNING/ERROR in the log"),
        Binding(
            "enter",
            "details",
            "Details",
            key_display="Enter",
            show=False,
            tooltip="the selected message or log line in full",
        ),
        Binding(
            "escape",
            "clear_search",
            "Clear search",
            key_display="Esc",
            show=False,
            tooltip="close the search and follow the whole log",
        ),
        Binding(
            "colon", "command_palette", "Palette", key_display=":", show=False, tooltip="search every operation by name"
        ),
    ]

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
        # How to serve the profile in this process (after a take-over from attach mode).
        self._make_local = make_local
        self.home = home
        self.faults = list(faults)
        self.clock = clock
        self.process_stats = process_stats or ProcessSampler()
        self.handle_signals = handle_signals
        self.phase = ConsolePhase.STARTING
        self._restarting = False
        self._reported: deque[str] = deque(maxlen=32)  # recent errors, so a refresh does not repeat them
        # Every notice shown, newest last: a toast expires after seconds, this record does not
        # (the tests read it; nothing else of Textual's notification internals).
        self.told: deque[str] = deque(maxlen=200)
        self._busy: ProfileBusy | None = None
        self.terminal_lost = False  # SIGHUP: the SSH session (and with it the terminal) went away
        self._source_word = ""  # attached: the source's last mode, to say each change once

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="panels"):
            yield ExecutorPanel(id="executor")
            yield FeishuPanel(id="feishu")
            yield ModelsPanel(id="models")
        yield MessagesPanel(id="messages")
        yield LogPane(id="logpane")
        yield Footer(compact=True)

    # -- start-up: paint first, then start the gateway --------------------------------------------

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_stop_signal, signum)
        self.set_interval(REFRESH_INTERVAL, self.refresh_panels)
        self.set_interval(LOG_INTERVAL, self.pull_logs)
        self.refresh_panels()
        # After the first paint: Gateway.start() is quick, but nothing may delay the first frame.
        self.call_after_refresh(self._start_serving)

    def _start_serving(self) -> None:
        self.run_worker(self._serve(), name="start gateway", group="gateway", exit_on_error=False)

    async def _serve(self) -> None:
        try:
            await self.source.start()
        except ProfileBusy as busy:
            self.phase = ConsolePhase.OWNED
            self._busy = busy
            self._ask_owned()
            return
        except Exception as exc:
            self.phase = ConsolePhase.FAILED
            self.report("starting the gateway", exc)
            return
        self.phase = ConsolePhase.ATTACHED if isinstance(self.source, RemoteSource) else ConsolePhase.SERVING
        self.refresh_panels()

    async def on_unmount(self) -> None:
        # A safety net for any way out that skipped the quit flow: never leave the gateway half-run.
        await self._stop_source()
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.told.append(message)
        super().notify(message, *args, **kwargs)

    # -- refreshing ---------------------------------------------------------------------------

    def refresh_panels(self) -> None:
        try:
            snap = self.source.snapshot()
            now = self.clock()
            # Words for what the console is doing; while serving or stopping, the gateway's own state.
            state = PHASE_STATE.get(self.phase, snap.state)
            stats = self.process_stats(snap.owner.pid if snap.owner else None)
            self.query_one(HeaderBar).show(snap, state, self.source.describe(), stats)
            self.query_one(ExecutorPanel).show(snap.executor, now)
            self.query_one(FeishuPanel).show(snap.feishu, now)
            self.query_one(ModelsPanel).show(snap.models)
            messages = self.query_one(MessagesPanel)
            messages.show(snap.pipeline.activity)
            messages.show_answering(snap.pipeline.answering, now)
            messages.show_reply_mode(snap.pipeline.reply_mode, snap.pipeline.cardkit_unavailable)
            messages.show_pending(snap.pipeline.pending, snap.pipeline.oldest_pending_at, now)
            self._show_staleness()
            if self.phase == ConsolePhase.SERVING and self.source.stop_requested:
                # The console owns this gateway, so it is the one that acts on a stop request.
                self.notify("stop requested over the control socket: stopping", severity="warning")
                self.phase = ConsolePhase.STOPPING
                self.run_worker(self._stop_and_exit(), group="gateway", exit_on_error=False)
        except Exception as exc:
            self.report("refreshing the panels", exc)

    def _show_staleness(self) -> None:
        """Attached: dim and mark the panels while they show a gone gateway's last word; say changes."""
        source = self.source
        stale = isinstance(source, RemoteSource) and source.stale
        self.set_class(stale, "-stale")
        for panel in self.query("#panels > *"):
            panel.border_subtitle = "stale" if stale else None
        if not isinstance(source, RemoteSource):
            return
        word = f"{source.mode} {source.owner.pid} {source.attaches}"
        if word == self._source_word:
            return
        self._source_word = word
        if source.mode == "socket" and source.attaches > 1:
            self.notify(f"re-attached to PID {source.owner.pid} ({source.owner.owner})")
            self.refresh_bindings()
        elif source.mode == "unreachable":
            self.notify(source.gone_sentence(), title="UNREACHABLE", severity="error", markup=False)
        elif source.mode == "exited":
            offer = "; press s to serve the profile here" if self._make_local is not None else ""
            self.notify(
                source.gone_sentence() + offer, title="gateway exited", severity="error", markup=False, timeout=15
            )
            self.refresh_bindings()

    def pull_logs(self) -> None:
        try:
            pane = self.query_one(LogPane)
            pane.ingest(self.source.log_since(pane.last_seq))
        except Exception as exc:
            self.report("reading the log", exc)

    # -- errors are shown, never fatal --------------------------------------------------------

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
        if action == "faults":
            return bool(self.faults)  # the fault menu exists only in the demo
        if action in ("hand_back", "take_over"):
            return self.home is not None  # the demo has no gatewatch home, hence no launchd
        if action == "serve_here":  # only while attached to an owner that is gone
            return isinstance(self.source, RemoteSource) and self.source.lock_free and self._make_local is not None
        return True

    def _serving(self) -> bool:
        if isinstance(self.source, RemoteSource) and self.source.stale:
            self.notify(self.source.gone_sentence(), severity="warning", markup=False)
            return False
        if self.phase not in (ConsolePhase.SERVING, ConsolePhase.ATTACHED) or not self.source.running:
            self.notify("the gateway is not running", severity="warning")
            return False
        return True

    def action_pick_model(self) -> None:
        if self._serving():
            self.push_screen(model_picker(self.source.snapshot().models), self._switch_model)

    def _switch_model(self, name: str | None) -> None:
        if name:
            self.run_worker(self._do_switch_model(name), group="operations", exit_on_error=False)

    async def _do_switch_model(self, name: str) -> None:
        try:
            previous = await self.source.switch_model(name)
        except Exception as exc:
            self.report(f"switching to model {name!r}", exc)
            return
        if previous != name:
            self.notify(f"model switched: {previous} → {name}", markup=False)
        self.refresh_panels()

    def action_restart_feishu(self) -> None:
        if not self._serving():
            return
        if self._restarting:  # one restart at a time; a repeated key is not a second restart
            self.notify("a Feishu restart is already running", severity="warning")
            return
        self._restarting = True
        self.notify("restarting the Feishu connection…")
        self.run_worker(self._restart_feishu(), group="feishu-restart", exit_on_error=False)

    async def _restart_feishu(self) -> None:
        try:
            if not await self.source.restart_feishu():
                self.notify("a Feishu restart is already running", severity="warning")
        except Exception as exc:
            self.report("restarting the Feishu connection", exc)
        finally:
            self._restarting = False
            self.refresh_panels()

    def action_rebuild_executor(self) -> None:
        if self._serving():
            self.run_worker(self._rebuild_executor(), group="operations", exit_on_error=False)

    async def _rebuild_executor(self) -> None:
        try:
            await self.source.rebuild_executor()
        except Exception as exc:
            self.report("rebuilding the executor", exc)
            return
        self.notify("executor rebuilt")
        self.refresh_panels()

    def action_faults(self) -> None:
        if self.faults and self._serving():
            self.push_screen(fault_menu(self.faults), self._inject_fault)

    def _inject_fault(self, fault_id: str | None) -> None:
        fault = next((f for f in self.faults if f.id == fault_id), None)
        if fault is not None:
            self._run_fault(fault)

    @work(group="faults", exit_on_error=False)
    async def _run_fault(self, fault: Fault) -> None:
        # Fault injections block (the simulator waits until a socket really dropped): off the loop.
        try:
            outcome = await in_own_thread(fault.inject)
        except Exception as exc:
            self.report(f"fault '{fault.label}'", exc)
            return
        self.notify(outcome, title="fault injected", severity="warning", markup=False)

    # -- launchd hand-over (launchd.handover does the work; the console only sequences it) ---------

    def _can_hand_over(self) -> bool:
        if self.home is None:
            self.notify("no launchd hand-over here: this console has no gatewatch home (the demo)", severity="warning")
            return False
        return True

    def _agent_installed(self) -> bool:
        """Checked before stopping anything: without a LaunchAgent, a hand-back would leave nobody."""
        from launchd.agents import AgentSettings

        profile = self._profile_name()
        path = AgentSettings.default().plist(profile)
        if not path.exists():
            self.notify(
                f"no LaunchAgent for profile '{profile}' at {path}; install it with: "
                f"gatewatch launchd install --profile {profile}",
                severity="warning",
                markup=False,
            )
            return False
        return True

    def action_hand_back(self) -> None:
        if self.phase == ConsolePhase.ATTACHED:
            self.notify(
                "nothing to hand back: this console is attached to a gateway it does not own", severity="warning"
            )
        elif self._serving() and self._can_hand_over() and self._agent_installed():
            self.push_screen(hand_back_confirm(self._profile_name(), self.source.describe()), self._on_quit_choice)

    def action_take_over(self) -> None:
        if self.phase == ConsolePhase.SERVING:
            self.notify("this console already serves the profile")
        elif self.phase in (ConsolePhase.OWNED, ConsolePhase.ATTACHED) and self._can_hand_over():
            self.run_worker(self._take_over(), group="gateway", exit_on_error=False)

    async def _take_over(self) -> None:
        from launchd.handover import take_over

        profile = self._profile_name()
        attached = self.phase == ConsolePhase.ATTACHED
        try:
            await in_own_thread(take_over, self.home, profile, self._say_from_thread)
        except Exception as exc:
            self.report("taking the profile over from launchd", exc)
            if not attached:
                self._ask_owned()  # nothing changed: the same choices again
            return
        if self._make_local is not None and isinstance(self.source, RemoteSource):
            await self.source.stop()  # detach from the gateway that just went away
            self._switch_source(self._make_local())
        self.phase = ConsolePhase.STARTING
        await self._serve()

    def action_serve_here(self) -> None:
        if isinstance(self.source, RemoteSource) and self.source.lock_free and self._make_local is not None:
            self.run_worker(self._serve_here(), group="gateway", exit_on_error=False)

    async def _serve_here(self) -> None:
        """The attached owner exited and nobody took the profile: serve it from this console."""
        await self.source.stop()
        self._switch_source(self._make_local())
        self._source_word = ""
        self.phase = ConsolePhase.STARTING
        await self._serve()  # ProfileBusy if someone was quicker: the usual choices then
        self.refresh_bindings()

    async def _hand_back(self) -> None:
        from launchd.handover import hand_back

        await self._stop_source()
        try:
            await in_own_thread(hand_back, self.home, self._profile_name(), self._say_from_thread)
        except Exception as exc:
            self.report("handing the profile back to launchd", exc)
            self.phase = ConsolePhase.STARTING  # launchd did not take it: serve it here again rather than nobody
            await self._serve()
            return
        self.exit()

    def _say_from_thread(self, line: str) -> None:
        """A progress line from launchd.handover, which runs on a thread of its own."""
        log.info("%s", line)
        self.call_from_thread(self.notify, line, markup=False)

    # -- leaving --------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if self.phase == ConsolePhase.STOPPING:
            return
        if self.phase == ConsolePhase.ATTACHED:
            await self.source.stop()  # detach only: the gateway keeps serving
            self.exit(return_code=0)
            return
        if self.phase != ConsolePhase.SERVING or not self.source.running:
            self.exit(return_code={ConsolePhase.OWNED: EXIT_OWNED, ConsolePhase.FAILED: EXIT_FAILED}.get(self.phase, 0))
            return
        self.push_screen(
            quit_confirm(self._profile_name(), self.source.describe(), launchd=self.home is not None),
            self._on_quit_choice,
        )

    def _on_quit_choice(self, choice: str | None) -> None:
        if choice == STOP:
            self.run_worker(self._stop_and_exit(), group="gateway", exit_on_error=False)
        elif choice == HAND_BACK and self._can_hand_over() and self._agent_installed():
            self.run_worker(self._hand_back(), group="gateway", exit_on_error=False)

    def _ask_owned(self) -> None:
        if self._busy is not None:
            self.push_screen(owned_by_another(self._busy), self._on_owned_choice)

    def _on_owned_choice(self, choice: str | None) -> None:
        if choice == ATTACH:
            self.run_worker(self._attach(), group="gateway", exit_on_error=False)
        elif choice == TAKE_OVER:
            if self._can_hand_over():
                self.run_worker(self._take_over(), group="gateway", exit_on_error=False)
            else:
                self._ask_owned()
        else:
            self.exit(return_code=EXIT_OWNED)

    async def _attach(self) -> None:
        """Watch and operate the owner through its control socket, owning nothing."""
        holder = self._busy.holder if self._busy else None
        if self.home is None or holder is None:
            self.notify("cannot attach: the owner is unknown", severity="warning")
            self._ask_owned()
            return
        self._switch_source(RemoteSource(self.home, self._profile_name(), holder))
        await self._serve()

    def _switch_source(self, source: GatewaySource) -> None:
        self.source = source
        self.query_one(LogPane).follow_new_source()  # its records number from 1 again
        self.refresh_panels()

    async def _stop_and_exit(self) -> None:
        await self._stop_source()
        self.exit()

    async def _stop_source(self) -> None:
        if not self.source.running:
            return
        self.phase = ConsolePhase.STOPPING
        self.notify("stopping the gateway: in-flight answers finish first…")
        try:
            unfinished = await self.source.stop()
        except Exception as exc:
            self.report("stopping the gateway", exc)
            return
        if unfinished:
            log.error("stopped with %d answers unfinished", unfinished)

    def _detach_from_terminal(self) -> None:
        """The terminal is gone (an SSH session dropped): draw nowhere from now on.

        Textual 8 writes the screen through an output thread that dies on the first write to a
        hung-up terminal; every later write (the exit's terminal restore included) would then
        block the event loop forever — and the gateway with it. Its writes go to a fresh output
        thread writing to /dev/null instead, so stopping and exiting proceed as usual.
        """
        from textual.drivers._writer_thread import WriterThread

        self.terminal_lost = True
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        driver = self._driver
        if driver is not None and hasattr(driver, "_writer_thread"):
            sink = WriterThread(open(os.devnull, "w"))
            sink.start()
            driver._writer_thread = sink

    def _on_stop_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._detach_from_terminal()
        self.run_worker(self._stop_and_exit(), group="gateway", exit_on_error=False)

    # -- help and the command palette -----------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self._operator_bindings()))

    def _operator_bindings(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding) and self.check_action(b.action, ())]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # The palette lists the same operations as the keys, one registry for both.
        for binding in self._operator_bindings():
            if binding.action == "command_palette":
                continue
            help_text = f"key {binding.key_display or binding.key}"
            if binding.tooltip:
                help_text = f"{binding.tooltip} ({help_text})"
            yield SystemCommand(binding.description, help_text, self._palette_callback(binding.action))
        yield from super().get_system_commands(screen)

    def _palette_callback(self, action: str) -> Callable[[], Any]:
        return lambda: self.run_action(action)

    # -- log pane controls ----------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        self.query_one(LogPane).toggle_pause()

    def action_cycle_level(self) -> None:
        level = self.query_one(LogPane).cycle_level()
        self.notify(f"log: {level} and above", timeout=2)

    def action_search(self) -> None:
        self.query_one(LogPane).open_search()

    def action_follow_log(self) -> None:
        if isinstance(self.focused, Input):
            raise SkipAction()  # End in the search box moves its cursor
        self.query_one(LogPane).resume()

    def action_next_warning(self) -> None:
        if self.query_one(LogPane).next_loud_line() is None:
            self.notify("no WARNING or ERROR in the log view", timeout=3)

    def action_details(self) -> None:
        """Enter from anywhere on the main screen: the log's marked line, else the message row."""
        pane = self.query_one(LogPane)
        if pane.log.marked is not None or self.focused is pane.log:
            pane.open_marked()
            return
        activity = self.query_one(MessagesPanel).selected_activity()
        if activity is not None:
            self.push_screen(activity_detail(activity))

    def on_log_pane_line_opened(self, event: LogPane.LineOpened) -> None:
        self.push_screen(log_line_detail(event.record))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        activity = self.query_one(MessagesPanel).activity_for(event.row_key.value)
        if activity is not None:
            self.push_screen(activity_detail(activity))

    def action_clear_search(self) -> None:
        self.query_one(LogPane).clear_search()

    def _profile_name(self) -> str:
        return self.source.snapshot().profile

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "narrow")
        # Below 80 columns the three panels would be unreadable and squeeze the log out: the
        # header keeps the states in words, the panels fold to their first lines.
        self.set_class(self.size.width < 80, "cramped")


def run_console(home: Home, profile_name: str) -> int:
    """`gatewatch console`: serve the profile in this process, or attach to the gateway serving it.

    When another live gateway owns the profile (usually launchd's headless one), the console
    attaches to it through its control socket instead of refusing; attaching needs none of the
    profile's secrets. Otherwise a bad profile raises ConfigError before anything is drawn (the CLI
    prints its one line). Returns the exit code: 0 after a clean stop, hand-back or detach, 3 when
    another owns the profile and the operator quit.
    """
    check_profile_name(profile_name)

    def make_local() -> GatewaySource:
        # Loaded when the gateway is made (on its own thread): a take-over reads the profile anew.
        return LocalSource(profile_name, lambda: Gateway(load_profile(home, profile_name), home, owner="console"))

    source = console_source(home, profile_name, make_local)
    if not isinstance(source, RemoteSource):
        load_profile(home, profile_name)  # fail fast: a bad profile is one line, before the first frame
    app = ConsoleApp(source, home=home, handle_signals=True, make_local=make_local)
    app.run()
    return leave(app)


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
