"""The fleet view: pictures (80x24, 160x48) from frozen rows, the keys with Pilot, and the rows
gathered from a live fleet — two headless gateways (one healthy, one whose Feishu refuses it),
a stopped profile, an invalid one and a foreign LaunchAgent.

The frozen rows are what `LiveFleet` made of that live fleet (the live test checks it says the
same), with fixed PIDs, times and a frozen clock, so every picture is the same."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest
from textual.app import App
from textual.pilot import Pilot

from gateway_core.config import Home
from gateway_core.fleet import FleetRow
from gateway_core.process_stats import ProcessStats
from gateway_core.sim import Simulators
from gateway_core.states import FleetVerdict, OwnerKind
from launchd.fleet import DoctorFile, ServiceWatch
from launchd.service import choose_manager
from tui.app import ConsoleApp
from tui.fleet import LiveFleet
from tui.panels.fleet import choose_columns
from tui.screens import ChoiceModal

from .factories import NOW
from .fleet_env import FOREIGN_LABEL, running_fleet
from .frozen import assert_picture_says, screen_text
from .support import SnapCompare, present, until

HERMES_FINDING = (
    "ProgramArguments carries --replace: a manual restart kills launchd's process, launchd respawns its own, "
    "and two gateways fight over one Feishu app"
)


def frozen_rows() -> list[FleetRow]:
    return [
        FleetRow(
            "alpha", FleetVerdict.HEALTHY, owner=OwnerKind.HEADLESS, pid=4101, started_at=NOW - 3725,
            feishu="connected", model="alpha", models=("alpha", "beta"), per_minute=7,
            rate=(0, 1, 3, 2, 0, 1, 4, 2, 1, 0, 2, 3), pending=0, service="not installed", app_id="cli_a",
        ),
        FleetRow(
            "bravo", FleetVerdict.UNHEALTHY, owner=OwnerKind.HEADLESS, pid=4102, started_at=NOW - 95,
            reason="Feishu reconnecting for 93s: ServerException: 503 system busy; next attempt in 4s",
            feishu="reconnecting", model="alpha", models=("alpha", "beta"), per_minute=0, rate=(0, 0, 0),
            pending=2, oldest_pending_at=NOW - 80, service="not installed", app_id="cli_b",
        ),
        FleetRow("charlie", FleetVerdict.STOPPED, service="not installed", app_id="cli_c"),
        FleetRow(
            "delta", FleetVerdict.INVALID, service="not installed",
            reason="unknown key gateway.max_wrokers: valid are admins, drain_timeout, …",
        ),
        FleetRow(
            FOREIGN_LABEL, None, reason=f"doctor: {HERMES_FINDING}", owner=OwnerKind.LAUNCHD, service="found",
            findings=(HERMES_FINDING, "KeepAlive is unconditionally true: launchd restarts even a clean stop"),
            foreign=True, label=FOREIGN_LABEL,
        ),
    ]  # fmt: skip


class FrozenFleet:
    """The FleetSource protocol over fixed rows: nothing is followed or sampled."""

    def __init__(self, home: Home | None = None, rows: list[FleetRow] | None = None) -> None:
        self.home = home
        self._rows = frozen_rows() if rows is None else rows
        self.fixed: list[str] = []

    @property
    def manager_name(self) -> str:
        return "launchd"

    def rows(self) -> list[FleetRow]:
        return list(self._rows)

    async def watch(self, on_change: Callable[[], None]) -> None:
        return None

    def sample_services(self) -> bool:
        return False

    def doctor_file(self, row: FleetRow) -> DoctorFile | None:
        if not row.foreign:
            return None
        return DoctorFile(Path(f"/Users/op/Library/LaunchAgents/{row.label}.plist"), row.label or "", False,
                          "work", row.findings, True, lambda home, report: self.fix(row.profile))  # fmt: skip

    def fix(self, profile: str) -> bool:
        self.fixed.append(profile)
        return True


pytestmark = pytest.mark.usefixtures("utc")  # the pictures show clock times: the same in every zone


def fleet_console(fleet: FrozenFleet, home: Home | None = None) -> ConsoleApp:
    return ConsoleApp(
        None,
        home=home,
        clock=lambda: NOW,
        process_stats=lambda pid: ProcessStats(1.5, 87_654_321),
        fleet=fleet,
        fleet_live=False,
    )


def drawn(app: App[None]) -> Callable[[], bool]:
    assert isinstance(app, ConsoleApp)
    return lambda: app.fleet_screen is not None and app.fleet_screen.table.row_count == 5


def picture(
    *keys: str, shows: tuple[str, ...] = (), hides: tuple[str, ...] = ()
) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await until(drawn(pilot.app), 15, "the fleet drawn", pilot=pilot)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
        pilot.app.clear_notifications()
        await pilot.pause()
        assert_picture_says(pilot.app, shows, hides)

    return run_before


# -- pictures ---------------------------------------------------------------------------------------


def test_fleet_80x24(snap_compare: SnapCompare) -> None:
    # Five rows, the columns that fit by priority: profile, verdict, owner, the job, the reason.
    shows = ("alpha", "HEALTHY", "UNHEALTHY", "STOPPED", "INVALID", "foreign", "⚑", "not installed", "? Help")
    assert snap_compare(fleet_console(FrozenFleet()), terminal_size=(80, 24), run_before=picture(shows=shows))


def test_fleet_160x48(snap_compare: SnapCompare) -> None:
    shows = ("4101", "1h02m", "connected", "reconnecting", "2 · 1m20s", "Feishu reconnecting for 93s", "msg/min")
    assert snap_compare(fleet_console(FrozenFleet()), terminal_size=(160, 48), run_before=picture(shows=shows))


def test_fleet_doctor_findings_80x24(snap_compare: SnapCompare) -> None:
    keys = ("down", "down", "down", "down", "d")  # the foreign plist, then its findings
    shows = ("Doctor: ai.hermes.gateway-work", "--replace", "fix it")
    assert snap_compare(fleet_console(FrozenFleet()), terminal_size=(80, 24), run_before=picture(*keys, shows=shows))


def test_columns_give_way_by_priority() -> None:
    at_80 = [c.key for c, _ in choose_columns(78)]
    assert at_80 == ["profile", "verdict", "owner", "service", "reason"]
    at_200 = [c.key for c, _ in choose_columns(198)]
    assert len(at_200) == 11
    assert dict((c.key, w) for c, w in choose_columns(198))["reason"] > 40  # the room goes to the reason


# -- keys -------------------------------------------------------------------------------------------


async def test_keys_act_on_the_selected_row_and_what_cannot_run_is_dimmed(tmp_path: Path) -> None:
    fleet = FrozenFleet(Home(tmp_path / "home"))
    app = fleet_console(fleet)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(drawn(app), 15, "the fleet drawn", pilot=pilot)
        screen = app.fleet_screen
        assert screen is not None
        table = screen.table

        def state(action: str) -> bool | None:
            return screen.check_action(action, ())

        assert present(table.selected()).profile == "alpha"
        assert state("restart_feishu") and state("pick_model") and state("start_stop") and state("open")
        assert state("doctor") is None and state("hand_back") is None and state("take_over") is None
        await pilot.press("down", "down")  # charlie: stopped
        assert present(table.selected()).profile == "charlie"
        assert state("restart_feishu") is None and state("pick_model") is None and state("start_stop")
        await pilot.press("down")  # delta: invalid
        assert state("start_stop") is None and state("open") is None
        await pilot.press("down")  # the foreign plist: only its findings
        assert state("doctor") and state("open") is None and state("restart_feishu") is None
        # The palette offers what can run for the selected row, and no more.
        names = [c.title for c in screen.commands()]
        assert "Doctor" in names and "Reconnect" not in names
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ChoiceModal), 10, "the doctor's findings", pilot=pilot)
        await pilot.press("f")
        await until(lambda: fleet.fixed == [FOREIGN_LABEL], 10, "the fix applied", pilot=pilot)
        # `/` filters by name, Enter keeps it, Esc clears it.
        await pilot.press("slash", "b", "r", "enter")
        await until(lambda: table.row_count == 1, 10, "filtered", pilot=pilot)
        assert present(table.selected()).profile == "bravo" and "filter: br" in screen_text(app)
        assert app.focused is table
        await pilot.press("escape")
        await until(lambda: table.row_count == 5, 10, "the filter cleared", pilot=pilot)


async def test_cli_without_profile_opens_the_fleet(home: Home) -> None:
    from tui.cli import build_parser

    assert build_parser().parse_args(["console"]).profile is None  # and bare `gatewatch` is `console`
    assert build_parser().parse_args(["console", "--profile", "p"]).profile == "p"


# -- the rows of a live fleet -------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.slow
async def test_a_live_fleet_gives_one_row_per_profile_and_follows_a_frozen_owner(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_fleet(short_tmp) as live:
        for name, value in live.environment().items():
            monkeypatch.setenv(name, value)
        fleet = LiveFleet(live.home, ServiceWatch(choose_manager("launchd")))
        rows: dict[str, FleetRow] = {}

        def seen(condition: Callable[[dict[str, FleetRow]], bool]) -> Callable[[], bool]:
            def check() -> bool:
                rows.clear()
                rows.update({r.profile: r for r in fleet.rows()})
                return condition(rows)

            return check

        import asyncio

        watching = asyncio.get_running_loop().create_task(fleet.watch(lambda: None))
        try:
            await until(seen(lambda r: r.get("alpha", FleetRow("", None)).verdict == FleetVerdict.HEALTHY), 30, "alpha")
            await asyncio.to_thread(fleet.sample_services)  # the service manager's view of every profile seen
            await until(seen(lambda r: r["bravo"].verdict == FleetVerdict.UNHEALTHY), 30, "bravo judged by itself")
            assert "Feishu" in rows["bravo"].reason and rows["bravo"].feishu in ("connecting", "reconnecting")
            assert rows["alpha"].owner == OwnerKind.HEADLESS and rows["alpha"].pid == live.gateways["alpha"].process.pid
            assert rows["charlie"].verdict == FleetVerdict.STOPPED and rows["charlie"].service == "not installed"
            assert rows["delta"].verdict == FleetVerdict.INVALID and "max_wrokers" in rows["delta"].reason
            foreign = rows[FOREIGN_LABEL]
            assert foreign.foreign and foreign.verdict is None and any("--replace" in f for f in foreign.findings)
            # A frozen owner turns UNREACHABLE within 15 s, and back when it answers.
            bravo = live.gateways["bravo"].process
            started = time.monotonic()
            os.kill(bravo.pid, signal.SIGSTOP)
            try:
                await until(seen(lambda r: r["bravo"].verdict == FleetVerdict.UNREACHABLE), 15, "bravo unreachable")
                assert time.monotonic() - started <= 15
            finally:
                os.kill(bravo.pid, signal.SIGCONT)
            await until(seen(lambda r: r["bravo"].verdict == FleetVerdict.UNHEALTHY), 15, "bravo answers again")
            # A profile that stops shows as stopped within 5 s.
            live.gateways["alpha"].terminate_and_wait()
            stopped = time.monotonic()
            await until(seen(lambda r: r["alpha"].verdict == FleetVerdict.STOPPED), 5, "alpha stopped")
            assert time.monotonic() - stopped <= 5
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)


def test_profiles_on_one_feishu_app_are_flagged_on_both_rows() -> None:
    from gateway_core.fleet import flag_shared_apps

    rows = flag_shared_apps([FleetRow("a", FleetVerdict.STOPPED, app_id="cli_x"),
                             FleetRow("b", FleetVerdict.STOPPED, app_id="cli_x"),
                             FleetRow("c", FleetVerdict.STOPPED, app_id="cli_y")])  # fmt: skip
    assert ["shares Feishu app cli_x" in " ".join(r.findings) for r in rows] == [True, True, False]


async def test_one_profile_opens_over_the_fleet_and_esc_goes_back_to_it() -> None:
    # `gatewatch console --profile P`: P's own view as today, the fleet underneath.
    from tui.screens.main import MainScreen

    from .frozen import FrozenSource

    source = FrozenSource()
    app = ConsoleApp(
        source, clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.5, 87_654_321), fleet=FrozenFleet(),
        fleet_live=False,
    )  # fmt: skip
    async with app.run_test(size=(100, 30)) as pilot:
        await until(source.caught_up, 15, "the profile's view read its source", pilot=pilot)
        assert isinstance(app.screen, MainScreen) and "REPLACED" in screen_text(app)
        await pilot.press("slash", "x")  # Esc first closes the log's search, as before
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and not present(app.main).log_pane.searching
        await pilot.press("escape")
        await until(lambda: app.screen is app.fleet_screen, 10, "back on the fleet", pilot=pilot)
        assert app.source is None and not source.running  # detached: the gateway itself is not touched
        assert "gatewatch fleet" in screen_text(app)


async def test_the_console_refuses_to_serve_a_profile_whose_feishu_app_another_profile_serves(
    home: Home, sims: Simulators
) -> None:
    # Two profiles on one Feishu app: 'first' serves it (in this process), the console is asked for 'second'.
    from gateway_core.config import load_profile
    from gateway_core.gateway import Gateway
    from gateway_core.ownership import read_owner
    from tui.phase import ConsolePhase
    from tui.source import LocalSource

    from .support import connected_gateway, write_profile

    write_profile(home, "first", sims)
    write_profile(home, "second", sims)
    async with connected_gateway(home, load_profile(home, "first")):
        second = LocalSource("second", lambda: Gateway(load_profile(home, "second"), home, owner="console"))
        app = ConsoleApp(second, home=home)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(lambda: app.phase == ConsolePhase.FAILED, 30, "refused", pilot=pilot)
            told = " ".join(app.told)
            assert f"app {sims.feishu.app_id}" in told and "profile 'first'" in told and f"PID {os.getpid()}" in told
        assert read_owner(home.lock_file("second")) is None  # it let its profile go again
        assert sims.feishu.live_connections == 1


def test_a_restart_loop_is_judged_from_more_than_one_sample() -> None:
    from collections import deque

    from launchd.fleet import JobSample, judge

    failed_once = deque([JobSample(None, False, False, 1)])
    assert judge(failed_once) == "exited 1"  # one look: a failure, not yet a loop
    respawning = deque(
        [JobSample(501, True, False, 3), JobSample(502, True, False, 3), JobSample(None, False, False, 3)]
    )
    assert judge(respawning) == "restarting in a loop (exit 3)"  # back with a new PID, and down again
    recovered = deque(
        [JobSample(501, True, False, None), JobSample(None, False, False, 1), JobSample(502, True, False, 1)]
    )
    assert judge(recovered) == "running"  # one crash, restarted, running: no loop
    looping_twice = deque([JobSample(None, False, True, 1), JobSample(None, False, True, 1)])
    assert judge(looping_twice) == "restarting in a loop (exit 1)"
    assert judge(deque([JobSample(600, True, False, None)])) == "running"
    assert judge(deque([JobSample(None, False, False, None)])) == "loaded"
