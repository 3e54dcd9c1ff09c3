"""The fleet view as a user meets it: `gatewatch console` in a real terminal (tmux), three
profiles — two headless gateways and a stopped one — keys pressed, the screen read back.

tmux runs on a server of its own (`-L`, a name only this test uses) and that server is killed at
the end; the gateways are this test's children, signalled by PID.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

import pytest

from .fleet_env import running_fleet
from .support import wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


class Terminal:
    """A tmux server of our own with one window running `command`."""

    def __init__(self, command: list[str], env: dict[str, str], size: tuple[int, int] = (100, 30)) -> None:
        self.server = f"gw-fleet-{uuid.uuid4().hex[:8]}"
        assignments = [
            f"{k}={v}" for k, v in env.items() if k.startswith(("GATEWATCH_", "GW_TEST_", "NO_PROXY", "no_proxy"))
        ]
        shell = " ".join(shlex.quote(part) for part in ["env", "TERM=xterm-256color", *assignments, *command])
        self.tmux("new-session", "-d", "-s", "fleet", "-x", str(size[0]), "-y", str(size[1]), shell)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.server, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p", "-t", "fleet")
        except subprocess.CalledProcessError:
            return ""  # the window closed: the console quit

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "fleet", *keys)

    def row(self, profile: str) -> str:
        return next((line for line in self.screen().splitlines() if f"│ {profile} " in line), "")

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        try:
            wait_until(predicate, timeout, what)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; the screen:\n{self.screen()}") from None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10)


def test_console_fleet_in_a_real_terminal(short_tmp: Path) -> None:
    with running_fleet(
        short_tmp, healthy=("alpha", "bravo"), refused=(), stopped=("charlie",), invalid=(), foreign=False
    ) as fleet:
        env = fleet.environment()
        terminal = Terminal([sys.executable, "-m", "tui", "console"], env)
        try:
            # Three rows, each profile's verdict as its gateway judges it.
            terminal.wait_for(lambda: "HEALTHY" in terminal.row("alpha") and "HEALTHY" in terminal.row("bravo"), 45,
                              "alpha and bravo healthy")  # fmt: skip
            assert "STOPPED" in terminal.row("charlie")

            # The cursor is on alpha: `r` reconnects alpha's Feishu — its simulator sees a new connection.
            feishu = fleet.sims["alpha"].feishu
            before = feishu.connections_total
            terminal.press("r")
            feishu.wait_for_connection(count=before + 1, timeout=20)
            assert fleet.sims["bravo"].feishu.connections_total == 1  # only the selected one

            # A frozen gateway turns UNREACHABLE within 15 s, and back when it answers.
            bravo = fleet.gateways["bravo"].process
            os.kill(bravo.pid, signal.SIGSTOP)
            try:
                terminal.wait_for(lambda: "UNREACHABLE" in terminal.row("bravo"), 15, "bravo UNREACHABLE")
            finally:
                os.kill(bravo.pid, signal.SIGCONT)
            terminal.wait_for(lambda: "HEALTHY" in terminal.row("bravo"), 15, "bravo answers again")

            # Enter: alpha's own view (attached to its gateway); Esc: the fleet again.
            terminal.press("Enter")
            terminal.wait_for(lambda: "profile alpha" in terminal.screen() and "attached" in terminal.screen(), 15,
                              "alpha's view")  # fmt: skip
            terminal.press("Escape")
            terminal.wait_for(lambda: "gatewatch fleet" in terminal.screen(), 15, "the fleet again")
            assert fleet.gateways["alpha"].process.poll() is None  # leaving its view left it serving
            terminal.press("q")
            terminal.wait_for(lambda: "gatewatch fleet" not in terminal.screen(), 15, "the console quit")
        finally:
            terminal.close()
