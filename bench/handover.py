"""Hand-over time on the launchctl simulator: median and max over 10 take-over/hand-back cycles.

One cycle, as the console's `t` then `h` keys run it:
  take over  = take_over() (bootout, launchd's gateway drains and exits, lock free)
               + an in-process console gateway started and connected to Feishu;
  hand back  = the console gateway stopped (drained) + hand_back() (bootstrap, launchd's gateway
               holds the lock and reports Feishu connected on its control socket).
Each cycle also sends one message to each owner and checks it is answered exactly once.

    .venv/bin/python bench/handover.py [--cycles 10]
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
from launchd.agents import AgentSettings, install, uninstall
from launchd.handover import hand_back, take_over
from tests.sim.launchctl_harness import LaunchctlSim, write_launchd_sim_profile

PROFILE = "bench"


def quiet(_line: str) -> None:
    pass


async def answered_once(sims: Simulators, text: str) -> None:
    event = sims.feishu.inject_text(text)
    await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
    replies = [r for r in sims.feishu.replies_to(event) if not r.duplicate]
    assert len(replies) == 1, replies


async def run(cycles: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gatewatch-bench-") as tmp:
        root = Path(tmp)
        simulator = LaunchctlSim(root / "launchctl")
        os.environ.update(simulator.environment())
        home = Home(root / "home")
        os.environ["GATEWATCH_HOME"] = str(home.root)
        secret, key = "bench-secret-" + uuid.uuid4().hex[:8], "bench-key-" + uuid.uuid4().hex[:8]
        settings = AgentSettings(agents_dir=root / "LaunchAgents", throttle_interval=1)
        takes, backs, take_calls, back_calls = [], [], [], []
        try:
            with Simulators(
                feishu={"app_id": f"cli_{uuid.uuid4().hex[:12]}", "app_secret": secret}, llm={"api_key": key}
            ) as sims:
                write_launchd_sim_profile(home, PROFILE, sims, secret, key)
                install(home, PROFILE, settings, quiet)
                hand_back(home, PROFILE, quiet, settings=settings)  # wait until launchd's gateway serves
                profile = load_profile(home, PROFILE)
                for cycle in range(cycles):
                    await answered_once(sims, f"launchd {cycle}")
                    start = time.perf_counter()
                    take_over(home, PROFILE, quiet, settings=settings)
                    take_calls.append(time.perf_counter() - start)
                    console = Gateway(profile, home, owner="console", log_to_file=False)
                    await console.start()
                    assert await console.wait_connected(20)
                    takes.append(time.perf_counter() - start)
                    await answered_once(sims, f"console {cycle}")
                    start = time.perf_counter()
                    await console.stop()
                    back_start = time.perf_counter()
                    hand_back(home, PROFILE, quiet, settings=settings)
                    back_calls.append(time.perf_counter() - back_start)
                    backs.append(time.perf_counter() - start)
                    print(f"cycle {cycle + 1:2}: take over {takes[-1]:.2f}s, hand back {backs[-1]:.2f}s", flush=True)
                await answered_once(sims, "launchd final")
                uninstall(home, PROFILE, settings, quiet)
        finally:
            simulator.cleanup()

    def line(name: str, values: list[float]) -> str:
        return f"{name:47} median {statistics.median(values):6.2f}s   max {max(values):6.2f}s"

    print(f"\nhand-over on the launchctl simulator, {cycles} cycles (ThrottleInterval 1, drain idle):")
    print(line("take over (bootout -> console connected)", takes))
    print(line("  of which take_over() (bootout -> lock free)", take_calls))
    print(line("hand back (console drained -> launchd serves)", backs))
    print(line("  of which hand_back() (bootstrap -> connected)", back_calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    asyncio.run(run(parser.parse_args().cycles))


if __name__ == "__main__":
    main()
