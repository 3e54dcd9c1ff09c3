"""A dropped SSH session must not leave a half-dead gateway: the console drains it and exits.

A real `gatewatch console` process on a real pseudo-terminal, against the simulators in this
process. The terminal is closed and the process gets SIGHUP, as when an SSH session drops.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading

import pytest

from gateway_core.config import Home, Profile
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators

from .support import gateway_env, present, wait_until

pytestmark = pytest.mark.process  # a console on a pty, as a child process


def drain(fd: int) -> None:
    """Read the console's screen output so it never blocks on a full terminal buffer."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass  # the terminal was closed: done


def test_hangup_drains_the_gateway_releases_the_profile_and_exits(
    home: Home, profile: Profile, sims: Simulators
) -> None:
    master, slave = pty.openpty()
    env = gateway_env(home) | {"TERM": "xterm-256color"}
    console = subprocess.Popen(
        [sys.executable, "-m", "tui", "console", "--profile", profile.name],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    threading.Thread(target=drain, args=(master,), daemon=True).start()
    try:
        lock = home.lock_file(profile.name)
        wait_until(lambda: (owner := read_owner(lock)) is not None and owner.pid == console.pid, 30, "console owns")
        assert present(read_owner(lock)).owner == "console"
        wait_until(lambda: sims.feishu.live_connections == 1, 30, "Feishu connected")

        os.close(master)  # the terminal goes away…
        console.send_signal(signal.SIGHUP)  # …and the session leader's hang-up reaches the console
        assert console.wait(timeout=20) == 0
        assert read_owner(lock) is None
        wait_until(lambda: sims.feishu.live_connections == 0, 5, "the WebSocket closed")
    finally:
        if console.poll() is None:
            console.kill()
            console.wait(10)
