"""One module per panel. Each panel renders a snapshot with a pure function, so a frozen snapshot
always draws the same screen (the SVG snapshot tests rely on it)."""

from .executor import ExecutorPanel
from .feishu import FeishuPanel
from .header import HeaderBar
from .logpane import LogPane
from .messages import MessagesPanel
from .models import ModelsPanel

__all__ = [
    "ExecutorPanel",
    "FeishuPanel",
    "HeaderBar",
    "LogPane",
    "MessagesPanel",
    "ModelsPanel",
]
