"""A fleet as an operator has one: several profiles in one gatewatch home, some served by headless
gateways (real child processes, each on a Feishu app of its own — one app per gateway), one
whose Feishu refuses it, one stopped, one whose file does not load, and a foreign gateway's
LaunchAgent the doctor knows (the incident's `ai.hermes.gateway-*.plist`, `--replace` and all).

Used by the fleet's tmux test and by bench/fleet_idle.py. Every process it starts it stops, by PID.
"""

from __future__ import annotations

import contextlib
import functools
import plistlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from gateway_core.config import Home
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators

from .support import FEISHU_SECRET, LLM_KEY, HeadlessProcess, gateway_env, unique_app_id, wait_until, write_profile

FOREIGN_LABEL = "ai.hermes.gateway-work"


@dataclass
class Fleet:
    home: Home
    agents_dir: Path
    sims: dict[str, Simulators] = field(default_factory=dict)  # per served profile
    gateways: dict[str, HeadlessProcess] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """What a console on this fleet runs with: the home, the secrets, launchd's agents here."""
        env = gateway_env(self.home)
        env.update(GATEWATCH_LAUNCH_AGENTS_DIR=str(self.agents_dir), GATEWATCH_SERVICE_MANAGER="launchd")
        return env


def write_foreign_plist(agents_dir: Path) -> Path:
    """The seed's plist: another gateway's job, `--replace` in its arguments."""
    agents_dir.mkdir(parents=True, exist_ok=True)
    path = agents_dir / f"{FOREIGN_LABEL}.plist"
    path.write_bytes(
        plistlib.dumps(
            {
                "Label": FOREIGN_LABEL,
                "ProgramArguments": ["/usr/local/bin/hermes", "gateway", "--replace", "--profile", "work"],
                "KeepAlive": True,
                "RunAtLoad": True,
            }
        )
    )
    return path


def is_held(lock: Path) -> bool:
    return read_owner(lock) is not None


@contextlib.contextmanager
def running_fleet(
    root: Path,
    healthy: tuple[str, ...] = ("alpha",),
    refused: tuple[str, ...] = ("bravo",),
    stopped: tuple[str, ...] = ("charlie",),
    invalid: tuple[str, ...] = ("delta",),
    foreign: bool = True,
) -> Iterator[Fleet]:
    """The fleet, its gateways serving (or trying to), until the block ends."""
    home = Home(root / "home")
    home.ensure_dirs()
    fleet = Fleet(home, root / "LaunchAgents")
    fleet.agents_dir.mkdir(parents=True, exist_ok=True)
    if foreign:
        write_foreign_plist(fleet.agents_dir)
    with contextlib.ExitStack() as stack:
        for name in (*healthy, *refused, *stopped):
            sims = stack.enter_context(
                Simulators(feishu={"app_id": unique_app_id(), "app_secret": FEISHU_SECRET}, llm={"api_key": LLM_KEY})
            )
            fleet.sims[name] = sims
            write_profile(home, name, sims)
        for name in invalid:
            write_profile(home, name, fleet.sims[healthy[0]], extra="max_wrokers = 8\n")  # a typo: exit 2 at start
        for name in refused:
            fleet.sims[name].feishu.refuse_reconnects(3600)  # 503 at every endpoint discovery
        for name in (*healthy, *refused):
            fleet.gateways[name] = stack.enter_context(HeadlessProcess.start(home, name))
        for name in healthy:
            fleet.gateways[name].wait_for_line("Feishu connected")
        for name in refused:
            wait_until(functools.partial(is_held, home.lock_file(name)), 45, f"{name} holds its profile")
            wait_until(home.socket_file(name).exists, 45, f"{name}'s control socket")
        yield fleet
