"""SVG snapshots of the main screen at 80x24 and 160x48, from frozen data.

The source here is a test double of the *data source* only (the panels' input): a hand-built
GatewaySnapshot, fixed log lines, a frozen clock and fixed process figures, so every run draws
the same screen. Update with `pytest tests/test_tui_snapshots.py --snapshot-update` and look.
"""

from __future__ import annotations

import time

import pytest

from gateway_core.executor import ExecutorSnapshot
from gateway_core.feishu import FeishuSnapshot
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.llm import ModelHealth, ModelsSnapshot
from gateway_core.logs import LogLine
from gateway_core.ownership import OwnerInfo
from gateway_core.pipeline import Activity, PipelineSnapshot
from gateway_core.config import Home
from tui.app import ConsoleApp
from tui.panels import MessagesPanel, ProcessStats
from tui.remote import RemoteSource

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
PID = 4242


def frozen_snapshot() -> GatewaySnapshot:
    activity = tuple(
        Activity(
            NOW - 60 + 7 * n,
            f"oc_chat{n % 2}",
            f"ou_user{n % 3}",
            text,
            model,
            latency,
            outcome,
            message_id=f"om_{n}",
            event_id=f"ev_{n}",
            text=text,
            reply=f"[{model}] {text}" if model else "Sorry — the language model is unavailable right now.",
        )
        for n, (text, model, latency, outcome) in enumerate(
            [
                ("Hello! Are you there?", "alpha", 0.412, "answered"),
                ("[bold red]x[/] [link=http://e]y[/link] \\x1b[31mz", "alpha", 0.398, "answered"),
                ("Summarise yesterday's incident in one line", "beta", 1.204, "answered"),
                ("ping", None, 5.002, "apology"),
                ("<image>", None, 0.011, "unsupported"),
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
                ModelHealth("alpha", "closed", 0.0, 40, 0, 0.41, 0.43, None),
                ModelHealth("beta", "open", 22.0, 12, 3, 5.0, 1.9, "HTTP 500 from the provider"),
            ),
        ),
        pipeline=PipelineSnapshot(5, 0, 3, 1, 0, 0, NOW - 32, activity),
    )


FROZEN_LOG = [
    LogLine(1, NOW - 70, "INFO", "gatewatch.gateway", "gateway starting: profile default, pid 4242, owner console"),
    LogLine(2, NOW - 65, "INFO", "gatewatch.feishu", "Feishu connected (conn_id 7f3a9c2e51d0)"),
    LogLine(3, NOW - 53, "INFO", "gatewatch.pipeline", "message om_2 from ou_user1: [bold red]x[/] \\x1b[31mz"),
    LogLine(4, NOW - 12, "WARNING", "gatewatch.executor", "executor rebuilt (restart 1): probe refused"),
    LogLine(5, NOW - 5, "ERROR", "gatewatch.llm", "model beta failed: HTTP 500 from the provider"),
]


class FrozenSource:
    """The GatewaySource protocol over fixed data; operations are not used by these tests."""

    def __init__(self) -> None:
        self._snapshot = frozen_snapshot()
        self.running = True
        self.stop_requested = False

    def snapshot(self) -> GatewaySnapshot:
        return self._snapshot

    def log_since(self, seq: int) -> list[LogLine]:
        return [line for line in FROZEN_LOG if line.seq > seq]

    async def switch_model(self, name: str) -> str:
        raise NotImplementedError

    async def restart_feishu(self) -> bool:
        raise NotImplementedError

    async def rebuild_executor(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return f"console, PID {PID}"

    def redact(self, text: str) -> str:
        return text

    async def start(self) -> None:
        pass

    async def stop(self) -> int:
        self.running = False
        return 0


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def frozen_app() -> ConsoleApp:
    return ConsoleApp(FrozenSource(), clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.5, 87_654_321))


async def settle(pilot) -> None:
    await pilot.pause()
    pilot.app.pull_logs()
    pilot.app.refresh_panels()
    await pilot.pause()


def test_main_screen_80x24(snap_compare):
    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=settle)


def test_main_screen_160x48(snap_compare):
    assert snap_compare(frozen_app(), terminal_size=(160, 48), run_before=settle)


async def open_first_message(pilot) -> None:
    await settle(pilot)
    table = pilot.app.query_one(MessagesPanel)
    table.focus()
    table.move_cursor(row=1)  # the one with markup and an escape in it: shown literally
    await pilot.press("enter")
    await pilot.pause()


async def open_log_warning(pilot) -> None:
    await settle(pilot)
    await pilot.press("w", "enter")
    await pilot.pause()


async def pause_with_new_lines(pilot) -> None:
    await settle(pilot)
    await pilot.press("p")
    FROZEN_SOURCE_LATER.extend(LATER_LOG)  # arrive while paused: counted, not shown
    pilot.app.pull_logs()
    await pilot.pause()


LATER_LOG = [
    LogLine(6, NOW - 3, "INFO", "gatewatch.pipeline", "message om_5 from ou_user2: later"),
    LogLine(7, NOW - 2, "INFO", "gatewatch.pipeline", "answered om_5 with alpha in 0.40s"),
]
FROZEN_SOURCE_LATER: list[LogLine] = []


class GrowingSource(FrozenSource):
    def log_since(self, seq: int) -> list[LogLine]:
        return [line for line in [*FROZEN_LOG, *FROZEN_SOURCE_LATER] if line.seq > seq]


@pytest.fixture
def growing_app():
    FROZEN_SOURCE_LATER.clear()
    yield ConsoleApp(GrowingSource(), clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.5, 87_654_321))
    FROZEN_SOURCE_LATER.clear()


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_message_detail(snap_compare, size):
    assert snap_compare(frozen_app(), terminal_size=size, run_before=open_first_message)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_log_line_detail(snap_compare, size):
    assert snap_compare(frozen_app(), terminal_size=size, run_before=open_log_warning)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_paused_log_with_new_lines(snap_compare, growing_app, size):
    assert snap_compare(growing_app, terminal_size=size, run_before=pause_with_new_lines)


def test_main_screen_60x20(snap_compare):
    assert snap_compare(frozen_app(), terminal_size=(60, 20), run_before=settle)


class FrozenRemote(RemoteSource):
    """Attach mode over fixed data: the last snapshot the owner streamed, its log, a frozen clock.

    Only the connection is left out (start does not subscribe); what the console draws from —
    the mode, the stale snapshot, the sentences — is RemoteSource's own.
    """

    def __init__(self, tmp_path, mode: str):
        owner = OwnerInfo(pid=PID, owner="headless", started_at=NOW - 3725, profile="default")
        super().__init__(Home(tmp_path / "home"), "default", owner, clock=lambda: NOW)
        self._snapshot = frozen_snapshot()
        self.mode, self.heard_at, self.attaches = mode, NOW - 4, 1
        self.why = "its control socket is silent (stopped or hung?)"
        for line in FROZEN_LOG:
            self._show(line)

    async def start(self) -> None:
        pass


def remote_app(tmp_path, mode: str) -> ConsoleApp:
    return ConsoleApp(
        FrozenRemote(tmp_path, mode), clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.5, 87_654_321)
    )


async def attached(pilot) -> None:
    pilot.app.phase = "attached"  # as after a successful attach
    await settle(pilot)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_attached(snap_compare, tmp_path, size):
    assert snap_compare(remote_app(tmp_path, "socket"), terminal_size=size, run_before=attached)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_attached_unreachable(snap_compare, tmp_path, size):
    assert snap_compare(remote_app(tmp_path, "unreachable"), terminal_size=size, run_before=attached)
