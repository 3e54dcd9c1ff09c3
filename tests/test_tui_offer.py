"""What the console offers follows what it knows: `check_action` dims or hides, nothing is refused after.

Attached to a gateway that stopped answering, the operations cannot reach it: their keys are shown
disabled (check_action None) and pressing one does nothing; hand back is not on offer (this
console serves nothing of its own). Once the owner answers again, they are on offer again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from textual.app import App
from textual.widgets import Footer

from gateway_core.config import Home
from gateway_core.process_stats import ProcessStats
from tui.app import ConsoleApp
from tui.screens import ChoiceModal
from tui.source import AttachMode

from .factories import NOW
from .frozen import FrozenRemote
from .support import until


def footer_keys(app: App[None]) -> dict[str, bool]:
    """Each key in the footer, and whether it is enabled (the footer dims a disabled one)."""
    # Textual's FooterKey class is private (tests/test_textual_compat.py): queried by name, its `key` read untyped.
    keys = app.screen.query_one(Footer).query("FooterKey")
    return {cast(Any, key).key: not key.has_class("-disabled") for key in keys}


async def test_operations_on_a_gateway_gone_quiet_are_shown_disabled_and_come_back(tmp_path: Path) -> None:
    source = FrozenRemote(tmp_path, "unreachable")
    app = ConsoleApp(
        source, home=Home(tmp_path / "home"), clock=lambda: NOW, process_stats=lambda pid: ProcessStats(1.0, 1)
    )
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await until(lambda: app.phase == "attached", 5, "attached", pilot=pilot)
        for action in ("pick_model", "restart_feishu", "rebuild_executor", "hand_back"):
            assert app.check_action(action, ()) is None, action
        assert app.check_action("take_over", ()) is True  # attached: taking over is the way out
        assert app.check_action("serve_here", ()) is False  # the owner still holds the profile
        assert app.check_action("faults", ()) is False  # no fault menu outside the demo
        await until(lambda: footer_keys(app).get("m") is False, 5, "m shown disabled", pilot=pilot)
        assert "s" not in footer_keys(app) and "f" not in footer_keys(app)
        told = len(app.told)
        await pilot.press("m", "e", "h")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceModal) and len(app.told) == told  # nothing happens, nothing said

        source.mode = AttachMode.SOCKET  # the owner answers again
        app.refresh_panels()
        assert app.check_action("pick_model", ()) is True and app.check_action("hand_back", ()) is None
        await until(lambda: footer_keys(app).get("m") is True, 5, "m enabled again", pilot=pilot)
        await pilot.press("m")
        await until(lambda: isinstance(app.screen, ChoiceModal), 5, "the model picker", pilot=pilot)
