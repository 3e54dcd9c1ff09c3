"""Hand-over time on the launchctl or systemctl simulator: median and max over 10 cycles.

One cycle, as the console's `t` then `h` keys run it:
  take over  = take_over() (launchd: bootout; systemd: stop — the manager's gateway drains and
               exits, lock free) + an in-process console gateway started and connected to Feishu;
  hand back  = the console gateway stopped (drained) + hand_back() (launchd: bootstrap; systemd:
               start — the manager's gateway holds the lock and reports Feishu connected on its
               control socket).
Each cycle also sends one message to each owner and checks it is answered exactly once.

    .venv/bin/python bench/handover.py [--cycles 10] [--manager launchd|systemd]
"""

from __future__ import annotations

import _common  # noqa: F401  (first: loopback only, the repository on sys.path)

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from gateway_core.threads import in_own_thread
from launchd.agents import AgentSettings, LaunchdManager
from launchd.handover import hand_back, take_over
from launchd.service import ServiceManager
from launchd.systemd import SystemdManager, UnitSettings
from tests.sim.launchctl_harness import LaunchctlSim, write_launchd_sim_profile
from tests.sim.systemctl_harness import SystemctlSim

PROFILE = "bench"


def quiet(_line: str) -> None:
    pass


async def answered_once(sims: Simulators, text: str) -> None:
    event = sims.feishu.inject_text(text)
    await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
    replies = [r for r in sims.feishu.replies_to(event) if not r.duplicate]
    assert len(replies) == 1, replies


def simulated(manager_name: str, root: Path) -> tuple[LaunchctlSim | SystemctlSim, ServiceManager]:
    """The simulator first on PATH and the manager that drives it (restart delay 1 s in both)."""
    if manager_name == "launchd":
        launchctl = LaunchctlSim(root / "launchctl")
        os.environ.update(launchctl.environment())
        return launchctl, LaunchdManager(AgentSettings(agents_dir=root / "LaunchAgents", throttle_interval=1))
    systemctl = SystemctlSim(root / "systemctl")
    os.environ.update(systemctl.environment())
    return systemctl, SystemdManager(UnitSettings(unit_dir=systemctl.unit_dir, restart_sec=1))


async def run(cycles: int, manager_name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gatewatch-bench-") as tmp:
        root = Path(tmp)
        simulator, manager = simulated(manager_name, root)
        home = Home(root / "home")
        os.environ["GATEWATCH_HOME"] = str(home.root)
        secret, key = "bench-secret-" + uuid.uuid4().hex[:8], "bench-key-" + uuid.uuid4().hex[:8]
        takes, backs, take_calls, back_calls = [], [], [], []
        try:
            with Simulators(
                feishu={"app_id": f"cli_{uuid.uuid4().hex[:12]}", "app_secret": secret}, llm={"api_key": key}
            ) as sims:
                write_launchd_sim_profile(home, PROFILE, sims, secret, key)
                manager.install(home, PROFILE, quiet)
                hand_back(home, PROFILE, quiet, manager=manager)  # wait until the manager's gateway serves
                profile = load_profile(home, PROFILE)
                for cycle in range(cycles):
                    await answered_once(sims, f"{manager_name} {cycle}")
                    start = time.perf_counter()
                    take_over(home, PROFILE, quiet, manager=manager)
                    take_calls.append(time.perf_counter() - start)
                    console = Gateway(profile, home, owner="console", log_to_file=False)
                    await console.start()
                    assert await console.wait_connected(20)
                    takes.append(time.perf_counter() - start)
                    await answered_once(sims, f"console {cycle}")
                    start = time.perf_counter()
                    await console.stop()
                    back_start = time.perf_counter()
                    hand_back(home, PROFILE, quiet, manager=manager)
                    back_calls.append(time.perf_counter() - back_start)
                    backs.append(time.perf_counter() - start)
                    print(f"cycle {cycle + 1:2}: take over {takes[-1]:.2f}s, hand back {backs[-1]:.2f}s", flush=True)
                await answered_once(sims, f"{manager_name} final")
                manager.uninstall(home, PROFILE, quiet)
        finally:
            simulator.cleanup()

    def line(name: str, values: list[float]) -> str:
        return f"{name:47} median {statistics.median(values):6.2f}s   max {max(values):6.2f}s"

    stop, start, delay = {
        "launchd": ("bootout", "bootstrap", "ThrottleInterval"),
        "systemd": ("stop", "start", "RestartSec"),
    }[manager_name]
    tool = "launchctl" if manager_name == "launchd" else "systemctl"
    print(f"\nhand-over on the {tool} simulator, {cycles} cycles ({delay} 1, drain idle):")
    print(line(f"take over ({stop} -> console connected)", takes))
    print(line(f"  of which take_over() ({stop} -> lock free)", take_calls))
    print(line(f"hand back (console drained -> {manager_name} serves)", backs))
    print(line(f"  of which hand_back() ({start} -> connected)", back_calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--manager", choices=("launchd", "systemd"), default="launchd")
    args = parser.parse_args()
    asyncio.run(run(args.cycles, args.manager))


if __name__ == "__main__":
    main()
