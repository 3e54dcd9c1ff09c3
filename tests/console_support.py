"""What the console tests that drive a real gateway share: the terminal size they use, the
untrusted text they inject, the notices the app showed, what a panel shows, and waiting until the
console's gateway is connected and its Feishu panel says so. (The `console` fixture itself is in
conftest.py.)"""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widget import Widget

from gateway_core.gateway import Gateway
from tui.app import ConsoleApp
from tui.panels import FeishuPanel
from tui.source import LocalSource

from .support import until

SIZE = (120, 36)
INJECTION = "[bold red]x[/] [link=http://e]y[/link] \x1b[31mz"


def notices(app: ConsoleApp) -> list[str]:
    return list(app.told)


def shown(widget: Widget) -> str:
    """The text a panel is showing now (what the operator reads)."""
    return str(widget.render())


async def connected(pilot: Pilot[None]) -> Gateway:
    assert isinstance(pilot.app, ConsoleApp)
    source = pilot.app.source
    assert isinstance(source, LocalSource)
    await until(
        lambda: source.gateway is not None and source.gateway.feishu.state == "connected",
        20,
        "Feishu connected",
        pilot=pilot,
    )
    gateway = source.gateway
    assert gateway is not None
    await until(lambda: "CONNECTED" in shown(pilot.app.query_one(FeishuPanel)), 5, "panel shows CONNECTED", pilot=pilot)
    return gateway
