"""SVG snapshots of every screen the console has: serving, paused, attached (live, UNREACHABLE,
exited) and every modal, from frozen data.

The source here is a test double of the *data source* only (the panels' input): a hand-built
GatewaySnapshot, fixed log lines, a frozen clock and fixed process figures, so every run draws
the same screen. The app is built and driven only as an operator or a caller would: the
constructor, key presses, and waiting until it has read its source. Each picture is also read
back as text and checked to say what its test claims. Update with
`pytest tests/test_tui_snapshots.py --snapshot-update`, then look:
`python -m tests.snapshot_text tests/__snapshots__/test_tui_snapshots/*.svg`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from gateway_core.config import Home
from launchd.agents import AgentSettings
from tui.demo import DemoRun, demo_faults

from .frozen import LATER_LOG, FrozenRemote, FrozenSource, OwnedSource, console, picture
from .support import SnapCompare

pytestmark = pytest.mark.usefixtures("utc")  # the pictures show clock times: the same in every zone


SIZES = pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])

# -- the main screen, serving ----------------------------------------------------------------------


def test_main_screen_80x24(snap_compare: SnapCompare) -> None:
    source = FrozenSource()
    assert snap_compare(console(source), terminal_size=(80, 24), run_before=picture(source, shows=("REPLACED",)))


def test_main_screen_160x48(snap_compare: SnapCompare) -> None:
    source = FrozenSource()
    shows = ("REPLACED", "CONNECTED", "HTTP 500 from the provider")
    assert snap_compare(console(source), terminal_size=(160, 48), run_before=picture(source, shows=shows))


def test_main_screen_60x20(snap_compare: SnapCompare) -> None:
    source = FrozenSource()
    assert snap_compare(console(source), terminal_size=(60, 20), run_before=picture(source, shows=("REPLACED",)))


@SIZES
def test_paused_log_with_new_lines(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    source = FrozenSource()

    async def run_before(pilot: Pilot[None]) -> None:
        await picture(source, "p", shows=("PAUSED",))(pilot)
        source.log.extend(LATER_LOG)  # they arrive while paused: counted, not shown
        await picture(source, shows=("+2 new",), hides=("later",))(pilot)

    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


# -- every modal ---------------------------------------------------------------------------------


@SIZES
def test_message_detail(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    # The cursor follows the newest row; three up is the one with markup and an escape in it: shown literally.
    source = FrozenSource()
    run_before = picture(
        source, "up", "up", "up", "enter", modal=True, shows=("Message", "[bold red]x[/]", "2 cards + 1 text part")
    )
    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


@SIZES
def test_log_line_detail(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    source = FrozenSource()
    run_before = picture(source, "w", "enter", modal=True, shows=("Log line", "WARNING", "#4"))
    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


@SIZES
def test_quit_confirm(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = FrozenSource()
    shows = ("Quit the console?", "hand the profile back to launchd")
    run_before = picture(source, "q", modal=True, shows=shows)
    assert snap_compare(console(source, home=Home(tmp_path / "home")), terminal_size=size, run_before=run_before)


def test_quit_confirm_in_the_demo(snap_compare: SnapCompare) -> None:
    # No gatewatch home (the demo): no launchd, so no hand-back choice.
    source = FrozenSource()
    run_before = picture(source, "q", modal=True, shows=("Quit the console?",), hides=("hand the profile back",))
    assert snap_compare(console(source), terminal_size=(80, 24), run_before=run_before)


@SIZES
def test_hand_back_confirm(
    snap_compare: SnapCompare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.setenv("GATEWATCH_LAUNCH_AGENTS_DIR", str(tmp_path / "agents"))
    plist = AgentSettings.default().plist("default")  # installed: a hand-back has someone to go to
    plist.parent.mkdir()
    plist.touch()
    source = FrozenSource()
    run_before = picture(source, "h", modal=True, shows=("Hand the profile back to launchd?", "hand back and quit"))
    assert snap_compare(console(source, home=Home(tmp_path / "home")), terminal_size=size, run_before=run_before)


@SIZES
def test_owned_by_another(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = OwnedSource()
    shows = ("STOPPED", "Profile owned by another gateway", "already served by PID 4242", "take it over from launchd")
    run_before = picture(source, modal=True, shows=shows)
    assert snap_compare(console(source, home=Home(tmp_path / "home")), terminal_size=size, run_before=run_before)


@SIZES
def test_model_picker(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    source = FrozenSource()
    run_before = picture(source, "m", modal=True, shows=("Switch model", "alpha", "beta"))
    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


@SIZES
def test_fault_menu(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    # The demo's own faults (made, never injected here).
    source = FrozenSource()
    run_before = picture(source, "f", modal=True, shows=("Inject a fault (demo only)", "drop the Feishu WebSocket"))
    assert snap_compare(console(source, faults=demo_faults(DemoRun())), terminal_size=size, run_before=run_before)


@SIZES
def test_help(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = FrozenSource()
    run_before = picture(source, "question_mark", modal=True, shows=("Keys", "Hand back", "Follow"))
    assert snap_compare(console(source, home=Home(tmp_path / "home")), terminal_size=size, run_before=run_before)


# -- attached to a gateway in another process -----------------------------------------------------


@SIZES
def test_attached(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = FrozenRemote(tmp_path, "socket")
    run_before = picture(source, shows=("attached to PID 4242",), hides=("stale", "UNREACHABLE"))
    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


@SIZES
def test_attached_unreachable(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = FrozenRemote(tmp_path, "unreachable")
    run_before = picture(source, shows=("UNREACHABLE", "stale", "no answer from PID 4242 for 4s"))
    assert snap_compare(console(source), terminal_size=size, run_before=run_before)


@SIZES
def test_attached_exited(snap_compare: SnapCompare, tmp_path: Path, size: tuple[int, int]) -> None:
    source = FrozenRemote(tmp_path, "exited")
    shows = ("EXITED", "stale", "gateway exited (code 1)", "Serve here")
    run_before = picture(source, shows=shows)
    assert snap_compare(console(source, make_local=FrozenSource), terminal_size=size, run_before=run_before)
