"""Frozen sources and pictures for console tests: the GatewaySource protocol over fixed data
(a snapshot, a log, an owner, a frozen clock), the console app around one, and a picture taken
once the console has read it all. The snapshot tests (test_tui_snapshots.py) and the other
console tests that draw from fixed data share them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

from textual.app import App
from textual.pilot import Pilot
from textual.screen import ModalScreen

from gateway_core.config import Home
from gateway_core.executor import ExecutorSnapshot
from gateway_core.feishu import FeishuSnapshot
from gateway_core.llm import ModelsSnapshot
from gateway_core.logs import LogLine
from gateway_core.ownership import OwnerInfo, ProfileBusy
from gateway_core.pipeline import PipelineSnapshot
from gateway_core.process_stats import ProcessStats
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.states import DeliveryMode, Outcome
from tui.app import ConsoleApp
from tui.remote import RemoteSource
from tui.source import Attachment, AttachMode, GatewaySource, starting_snapshot

from .factories import NOW, model_health
from .factories import activity as make_activity
from .snapshot_text import screen_lines
from .support import until

PID = 4242


def frozen_snapshot() -> GatewaySnapshot:
    activity = tuple(
        make_activity(
            at=NOW - 60 + 7 * n,
            chat_id=f"oc_chat{n % 2}",
            sender_id=f"ou_user{n % 3}",
            preview=text,
            model=model,
            latency=latency,
            outcome=outcome,
            message_id=f"om_{n}",
            event_id=f"ev_{n}",
            text=text,
            reply=f"[{model}] {text}" if model else "Sorry — the language model is unavailable right now.",
            reply_mode=DeliveryMode.CARD if n == 1 else DeliveryMode.TEXT,
            delivery="2 cards + 1 text part" if n == 1 else "1 text part",
        )
        for n, (text, model, latency, outcome) in enumerate(
            [
                ("Hello! Are you there?", "alpha", 0.412, Outcome.ANSWERED),
                ("[bold red]x[/] [link=http://e]y[/link] \\x1b[31mz", "alpha", 0.398, Outcome.ANSWERED),
                ("Summarise yesterday's incident in one line", "beta", 1.204, Outcome.ANSWERED),
                ("ping", None, 5.002, Outcome.APOLOGISED),
                ("<image>", None, 0.011, Outcome.UNSUPPORTED),
            ]
        )
    )
    return GatewaySnapshot(
        profile="default",
        state="running",
        owner=OwnerInfo(pid=PID, owner="console", started_at=NOW - 3725, profile="default"),
        uptime=3725.0,
        executor=ExecutorSnapshot(
            state="replaced",
            max_workers=8,
            live_threads=3,
            busy=1,
            queued=0,
            completed=1234,
            failed=2,
            restarts=1,
            last_probe_latency=0.0012,
            probe_p50=0.0009,
            probe_p95=0.0031,
            last_restart_at=NOW - 12,
            last_restart_cause="probe refused: Executor shutdown has been called",
            probe_history=tuple(0.0005 + 0.0001 * (n % 7) for n in range(60)),
        ),
        feishu=FeishuSnapshot(
            state="connected",
            since=NOW - 95,
            detail="",
            conn_id="7f3a9c2e51d0",
            last_frame_at=NOW - 2,
            connects=3,
            reconnects=2,
            restarts=1,
            last_error="connection reset by peer",
        ),
        models=ModelsSnapshot(
            active="alpha",
            models=(
                model_health("alpha", requests=40, last_latency=0.41, avg_latency=0.43),
                model_health(
                    "beta",
                    breaker="open",
                    open_for=22.0,
                    requests=12,
                    errors=3,
                    last_latency=5.0,
                    avg_latency=1.9,
                    last_error="HTTP 500 from the provider",
                ),
            ),
        ),
        pipeline=PipelineSnapshot(
            received=5,
            duplicates=0,
            answered=3,
            apologies=1,
            reply_failures=0,
            in_flight=0,
            last_message_at=NOW - 32,
            activity=activity,
        ),
    )


FROZEN_LOG = [
    LogLine(1, NOW - 70, "INFO", "gatewatch.gateway", "gateway starting: profile default, pid 4242, owner console"),
    LogLine(2, NOW - 65, "INFO", "gatewatch.feishu", "Feishu connected (conn_id 7f3a9c2e51d0)"),
    LogLine(3, NOW - 53, "INFO", "gatewatch.pipeline", "message om_2 from ou_user1: [bold red]x[/] \\x1b[31mz"),
    LogLine(4, NOW - 12, "WARNING", "gatewatch.executor", "executor rebuilt (restart 1): probe refused"),
    LogLine(5, NOW - 5, "ERROR", "gatewatch.llm", "model beta failed: HTTP 500 from the provider"),
]
LATER_LOG = [
    LogLine(6, NOW - 3, "INFO", "gatewatch.pipeline", "message om_5 from ou_user2: later"),
    LogLine(7, NOW - 2, "INFO", "gatewatch.pipeline", "answered om_5 with alpha in 0.40s"),
]
OWNER = OwnerInfo(pid=PID, owner="headless", started_at=NOW - 3725, profile="default")


class Watched:
    """What the console has read from its source: the tests wait on it instead of on time.

    The console reads its source on timers of its own; a picture is taken once it has read the
    snapshot after `start()` returned and asked for the log past its last line — the same data,
    whatever the app's internals look like.
    """

    def watch(self, log: list[LogLine]) -> None:
        self.log = log  # the test may append to it: lines that arrive later
        self.started = False
        self.reads_since_start = 0
        self.log_asked_after = -1

    def read_snapshot(self) -> None:
        self.reads_since_start += self.started

    def read_log(self, seq: int) -> None:
        self.log_asked_after = seq

    def caught_up(self) -> bool:
        last = self.log[-1].seq if self.log else 0
        return self.reads_since_start > 0 and self.log_asked_after >= last


class FrozenSource(Watched):
    """The GatewaySource protocol over fixed data; operations are not used by these tests."""

    def __init__(self) -> None:
        self.watch(list(FROZEN_LOG))
        self._snapshot = frozen_snapshot()
        self.running = True
        self.stop_requested = False

    def snapshot(self) -> GatewaySnapshot:
        self.read_snapshot()
        return self._snapshot

    def log_since(self, seq: int) -> list[LogLine]:
        self.read_log(seq)
        return [line for line in self.log if line.seq > seq]

    async def news_after(self, seq: int, timeout: float) -> bool:
        await asyncio.sleep(timeout)  # frozen: there is never news
        return False

    def attachment(self) -> Attachment | None:
        return None  # served "here"

    async def switch_model(self, name: str) -> str:
        raise NotImplementedError

    async def restart_feishu(self) -> bool:
        raise NotImplementedError

    async def rebuild_executor(self) -> None:
        raise NotImplementedError

    async def access_request(self, op: str, argument: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"console, PID {PID}"

    def redact(self, text: str) -> str:
        return text

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> int:
        self.running = False
        return 0


class OwnedSource(FrozenSource):
    """Another gateway holds the profile: start() is refused, as a LocalSource's would be."""

    def __init__(self) -> None:
        super().__init__()
        self.watch([])  # no gateway here, so no log of its own

    def snapshot(self) -> GatewaySnapshot:
        self.read_snapshot()
        return starting_snapshot("default", NOW)  # no gateway of its own to ask

    async def start(self) -> None:
        self.started = True  # attempted: what the console reads from now on follows the refusal
        raise ProfileBusy("default", OWNER)


class FrozenRemote(Watched, RemoteSource):
    """Attach mode over fixed data: the last snapshot the owner streamed, its log, a frozen clock.

    Only the connection is left out (start does not subscribe); what the console draws from —
    the mode, the stale snapshot, the sentences — is RemoteSource's own.
    """

    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__(Home(tmp_path / "home"), "default", OWNER, clock=lambda: NOW)
        self.watch(list(FROZEN_LOG))
        self._snapshot = frozen_snapshot()
        self.mode, self.heard_at, self.attaches = AttachMode(mode), NOW - 4, 1
        self.why = "its control socket is silent (stopped or hung?)"
        if mode == "exited":
            self.exit_code = 1
        for line in FROZEN_LOG:
            self._show(line)

    def snapshot(self) -> GatewaySnapshot:
        self.read_snapshot()
        return super().snapshot()

    def log_since(self, seq: int) -> list[LogLine]:
        self.read_log(seq)
        return super().log_since(seq)

    async def start(self) -> None:
        self.started = True


def console(source: GatewaySource, **options: Any) -> ConsoleApp:
    return ConsoleApp(source, clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.5, 87_654_321), **options)


def screen_text(app: App[Any]) -> str:
    """What the screenshot shows, as text: the same export the snapshot is made of."""
    return "\n".join(screen_lines(app.export_screenshot()))


def assert_picture_says(app: App[Any], shows: tuple[str, ...], hides: tuple[str, ...]) -> None:
    """The picture about to be taken says every phrase of `shows` and none of `hides`."""
    text = screen_text(app)
    for phrase in shows:
        assert phrase in text, f"{phrase!r} is not in the picture:\n{text}"
    for phrase in hides:
        assert phrase not in text, f"{phrase!r} is in the picture:\n{text}"


def picture(
    source: Watched, *keys: str, modal: bool = False, shows: tuple[str, ...] = (), hides: tuple[str, ...] = ()
) -> Callable[[Pilot[None]], Awaitable[None]]:
    """The steps before the picture: the console has drawn its source, then `keys` were pressed.

    With `modal`, the keys must have opened a modal screen. Then the picture is checked to say
    what the test claims (`shows`), and not what it must not (`hides`): an updated snapshot
    that shows something else fails here, not only in a reviewer's eye.
    """

    async def run_before(pilot: Pilot[None]) -> None:
        await until(source.caught_up, 15, "the console read its source", pilot=pilot)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        if modal:
            await until(lambda: isinstance(pilot.app.screen, ModalScreen), 15, f"a modal after {keys}", pilot=pilot)
        # A toast expires on the wall clock, so under load it may or may not be left by the time
        # the picture is taken: none is in a picture (what they say is in the header and footer).
        pilot.app.clear_notifications()
        await pilot.pause()
        assert isinstance(pilot.app, ConsoleApp)
        assert_picture_says(pilot.app, shows, hides)

    return run_before
