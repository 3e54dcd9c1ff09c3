"""End to end under the systemctl simulator: install, take over, hand back, crash, clean exit, and
— on both simulators — ten take-over/hand-back cycles with never two owners.

The headless gateway runs as the unit's main process (a real process under the simulator); this
test process plays the console with an in-process Gateway. The ownership watcher of the launchd
tests samples, all along, every process that could serve the profile and the lock's owner.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import ProfileLock, read_owner
from gateway_core.sim import Simulators
from launchd.agents import AgentError, AgentSettings, LaunchdManager, pid_alive, poll
from launchd.handover import HandoverError, hand_back, headless_feishu_connected, take_over
from launchd.service import ServiceManager
from launchd.systemctl import Systemctl
from launchd.systemd import SystemdManager, UnitSettings
from launchd.unit import unit_name

from .handover_support import PROFILE, OwnershipWatch, pid_serving
from .sim.launchctl_harness import LaunchctlSim, write_launchd_sim_profile
from .sim.systemctl_harness import SystemctlSim
from .support import FEISHU_SECRET, LLM_KEY, ask, in_own_thread, present

pytestmark = pytest.mark.process  # the unit's gateway is a real child process under the simulator

UNIT = unit_name(PROFILE)


@pytest.fixture
def manager(systemctl_sim: SystemctlSim) -> SystemdManager:
    return SystemdManager(UnitSettings(unit_dir=systemctl_sim.unit_dir, restart_sec=1))


def systemd_pid_serving(home: Home, other_than: int | None = None, timeout: float = 20) -> int:
    """The unit's MainPID once it holds the profile and says Feishu is connected."""
    systemctl = Systemctl()
    return pid_serving(home, lambda: systemctl.show(UNIT), "systemd", other_than, timeout)


async def test_install_takeover_handback_crash_and_clean_exit_with_one_owner_throughout(
    home: Home, sims: Simulators, systemctl_sim: SystemctlSim, manager: SystemdManager
) -> None:
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
    systemctl = Systemctl()
    steps: list[str] = []
    events = []
    with OwnershipWatch(home, systemctl_sim) as watch:
        # install -> enabled, started: systemd's headless gateway serves and answers
        manager.install(home, PROFILE, steps.append)
        first = systemd_pid_serving(home)
        assert present(read_owner(home.lock_file(PROFILE))).launchd_label == UNIT
        assert present(systemctl.show(UNIT)).unit_file_state == "enabled"
        events.append((await ask(sims, "to the systemd gateway")).event)

        # take over -> stopped (not restarted), the lock free; a message sent meanwhile waits
        take_over(home, PROFILE, steps.append, manager=manager)
        assert not pid_alive(first) and present(systemctl.show(UNIT)).active_state == "inactive"
        assert read_owner(home.lock_file(PROFILE)) is None
        events.append(sims.feishu.inject_text("sent during the take-over"))
        watch.console_serving.set()
        console = Gateway(load_profile(home, PROFILE), home, owner="console")
        await console.start()
        try:
            assert await console.wait_connected(15)
            events.append((await ask(sims, "to the console")).event)
            await in_own_thread(sims.feishu.wait_for_replies, events[1], 1, 20)
        finally:
            await console.stop(drain_timeout=5)
        watch.console_serving.clear()
        assert systemctl_sim.spawned("job") == [first]  # stopped: never restarted

        # hand back -> systemd's gateway answers again, including what arrived in between
        events.append(sims.feishu.inject_text("sent during the hand-back"))
        second = hand_back(home, PROFILE, steps.append, manager=manager)
        assert second != first and present(read_owner(home.lock_file(PROFILE))).pid == second
        await in_own_thread(sims.feishu.wait_for_replies, events[-1], 1, 20)

        # a crash -> Restart=on-failure brings a new PID after RestartSec
        os.kill(second, signal.SIGKILL)
        events.append(sims.feishu.inject_text("sent while it was down"))
        third = systemd_pid_serving(home, other_than=second)
        await in_own_thread(sims.feishu.wait_for_replies, events[-1], 1, 20)
        state = systemctl.show(UNIT)
        assert state is not None
        assert (state.last_signal, state.restarts) == (signal.SIGKILL, 1)

        # SIGTERM from outside -> drains, exits 0: a clean exit, systemd leaves it down
        os.kill(third, signal.SIGTERM)
        assert poll(lambda: present(systemctl.show(UNIT)).active_state == "inactive", 20)
        state = systemctl.show(UNIT)
        assert state is not None
        assert (state.exit_code, state.pid, state.result) == (0, None, "success")
        assert not poll(lambda: len(systemctl_sim.spawned("job")) > 3, 1.5)  # a RestartSec passes
        assert systemctl_sim.spawned("job") == [first, second, third]

        # hand back a unit that is stopped -> start
        fourth = hand_back(home, PROFILE, steps.append, manager=manager)
        assert fourth not in (first, second, third)
        events.append((await ask(sims, "after the restart")).event)

    assert watch.samples > 50 and watch.violations == []
    for event in events:
        replies = [r for r in sims.feishu.replies_to(event) if not r.duplicate]
        assert len(replies) == 1, (event.text, replies)
        assert replies[0].text == f"[alpha] {event.text}"
    assert any(line.startswith("stopping gatewatch-p.service") for line in steps)
    assert any(line.startswith("handed back: systemd's gateway PID") for line in steps)
    journal = systemctl_sim.journal(UNIT)
    assert journal and FEISHU_SECRET not in journal and LLM_KEY not in journal
    unit_text = manager.definition(PROFILE).read_text()
    assert FEISHU_SECRET not in unit_text and LLM_KEY not in unit_text and "--replace" not in unit_text

    manager.uninstall(home, PROFILE, steps.append)
    assert not manager.definition(PROFILE).exists() and systemctl.show(UNIT) is None
    assert not any(pid_alive(pid) for pid in systemctl_sim.spawned("job"))


def test_a_unit_refused_by_the_console_fails_once_and_says_why(
    home: Home, sims: Simulators, systemctl_sim: SystemctlSim, manager: SystemdManager
) -> None:
    """Exit 3 (another owner) is in RestartPreventExitStatus: no loop, a failed unit that says why."""
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
    lock = ProfileLock(home.lock_file(PROFILE), PROFILE)
    lock.acquire("console")
    try:
        with pytest.raises(AgentError, match="would be refused"):
            manager.install(home, PROFILE, print)
        # Started behind our back anyway: it exits 3 and systemd does not restart it.
        manager.definition(PROFILE).parent.mkdir(parents=True, exist_ok=True)
        from launchd.unit import render_unit, write_unit

        write_unit(manager.definition(PROFILE), render_unit(home, PROFILE, drain_timeout=5, restart_sec=1))
        Systemctl().daemon_reload()
        Systemctl().start(UNIT)
        assert poll(lambda: present(Systemctl().show(UNIT)).active_state == "failed", 20)
        assert not poll(lambda: len(systemctl_sim.spawned("job")) > 1, 2.5)  # RestartSec passes twice
        report = manager.status(home, PROFILE)
        text = "\n".join(report.lines())
        assert report.trouble and f"it exited 3 because PID {os.getpid()} (console" in text
        with pytest.raises(HandoverError, match="still served by"):
            hand_back(home, PROFILE, print, manager=manager)
    finally:
        lock.release()
    # Once the console is gone, a hand-back clears the failure and starts it (a loaded CI machine
    # once took more than the default 20 s for the new gateway to connect: a deadline, not a hope).
    hand_back(home, PROFILE, print, timeout=60, manager=manager)
    assert present(read_owner(home.lock_file(PROFILE))).launchd_label == UNIT


def gatewatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui", "systemd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_cli_install_takeover_handback_status_uninstall(
    home: Home, sims: Simulators, systemctl_sim: SystemctlSim
) -> None:
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
    where = ["--profile", PROFILE]  # the unit dir comes from GATEWATCH_SYSTEMD_UNIT_DIR
    installed = gatewatch("install", *where, "--restart-sec", "1")
    assert installed.returncode == 0, installed.stderr
    assert "started gatewatch-p.service" in installed.stdout
    first = systemd_pid_serving(home)

    here = subprocess.Popen(
        [sys.executable, "-m", "tui", "systemd", "takeover", "--headless", *where],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert poll(lambda: headless_feishu_connected(home, PROFILE, here.pid), 30), here.poll()
        assert not pid_alive(first)
        refused = gatewatch("handback", *where)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert f"still served by PID {here.pid} (headless" in refused.stderr
        here.send_signal(signal.SIGTERM)
        out, err = here.communicate(timeout=30)
        assert here.returncode == 0
        assert "stopping gatewatch-p.service" in out and "gatewatch systemd handback" in out
    finally:
        if here.poll() is None:
            here.kill()
            here.wait(10)

    back = gatewatch("handback", *where)
    assert back.returncode == 0, back.stderr
    shown = gatewatch("status", *where)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "active (running), PID" in shown.stdout and "systemd unit gatewatch-p.service" in shown.stdout
    removed = gatewatch("uninstall", *where)
    assert removed.returncode == 0 and not (systemctl_sim.unit_dir / UNIT).exists()


def test_cli_without_a_user_manager_says_what_to_do_in_one_line(
    home: Home, sims: Simulators, systemctl_sim: SystemctlSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
    monkeypatch.setenv("SYSTEMCTL_SIM_NO_BUS", "1")
    result = gatewatch("status", "--profile", PROFILE)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot reach your systemd user manager" in result.stderr and "XDG_RUNTIME_DIR" in result.stderr


@pytest.fixture(params=["launchd", "systemd"])
def any_manager(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[LaunchctlSim | SystemctlSim, ServiceManager]:
    """Each simulator first on PATH, with the manager that drives it."""
    if request.param == "launchd":
        simulator = request.getfixturevalue("launchctl_sim")
        return simulator, LaunchdManager(AgentSettings(agents_dir=tmp_path / "LaunchAgents", throttle_interval=1))
    simulator = request.getfixturevalue("systemctl_sim")
    return simulator, SystemdManager(UnitSettings(unit_dir=simulator.unit_dir, restart_sec=1))


CYCLES = 10


@pytest.mark.slow
@pytest.mark.timeout(480)  # each hand-back starts a fresh gateway process (lark_oapi alone imports in ~4 s)
async def test_never_two_owners_over_ten_takeover_handback_cycles(
    home: Home, sims: Simulators, any_manager: tuple[LaunchctlSim | SystemctlSim, ServiceManager]
) -> None:
    simulator, manager = any_manager
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)
    profile = load_profile(home, PROFILE)
    manager.install(home, PROFILE, lambda line: None)
    served = [hand_back(home, PROFILE, lambda line: None, manager=manager)]
    with OwnershipWatch(home, simulator) as watch:
        for cycle in range(CYCLES):
            take_over(home, PROFILE, lambda line: None, manager=manager)
            watch.console_serving.set()
            console = Gateway(profile, home, owner="console", log_to_file=False)
            await console.start()
            try:
                assert await console.wait_connected(15)
                assert (await ask(sims, f"console {cycle}")).text == f"[alpha] console {cycle}"
            finally:
                await console.stop(drain_timeout=5)
            watch.console_serving.clear()
            served.append(hand_back(home, PROFILE, lambda line: None, manager=manager))
            assert (await ask(sims, f"{manager.name} {cycle}")).text == f"[alpha] {manager.name} {cycle}"
    assert watch.samples > 50 and watch.violations == []
    # A fresh process per hand-back (a gateway the manager restarted after a failure on a loaded machine
    # may come in between: that is the manager doing its job, and the watch saw no second owner).
    assert len(set(served)) == CYCLES + 1 and set(served) <= set(simulator.spawned("job"))
    manager.uninstall(home, PROFILE, lambda line: None)
