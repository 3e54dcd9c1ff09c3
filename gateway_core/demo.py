"""`gatewatch demo`: the gateway on the built-in simulators, no credentials needed.

The console demo lives with the console (`tui.demo`); it is imported only when asked for, so
the gateway core never imports the UI.
"""

from __future__ import annotations

import sys


def run_demo(headless: bool, extra_messages: int = 0) -> int:
    if headless:
        print("gatewatch: the headless demo is not available in this build; run: gatewatch demo", file=sys.stderr)
        return 1
    try:
        from tui.demo import run_console_demo
    except ImportError:
        print("gatewatch: the console is not installed; run: gatewatch demo --headless", file=sys.stderr)
        return 1
    return run_console_demo()
