"""End to end under the launchctl simulator: install, take over, hand back, crash, SIGTERM.

The headless gateway runs as launchd's job (a real process under the simulator), this test process
plays the console with an in-process Gateway. A watcher thread samples, all along, every process
that could serve the profile and the lock's owner: at no moment may two serve it. Every message
injected — including those sent while nobody is connected mid-hand-over — is answered exactly once.
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
from launchd.agents import (
    AgentError,
    AgentSettings,
    AgentStatus,
    LaunchdManager,
    install,
    pid_alive,
    poll,
    status,
    uninstall,
)
from launchd.doctor import run_doctor
from launchd.handover import HandoverError, hand_back, headless_feishu_connected, take_over
from launchd.launchctl import Launchctl
from launchd.plist import job_label, render_agent, stderr_path, write_plist

from .handover_support import PROFILE, OwnershipWatch, launchd_pid_serving
from .sim.launchctl_harness import LaunchctlSim, write_launchd_sim_profile
from .support import FEISHU_SECRET, LLM_KEY, ask, in_own_thread, present

pytestmark = pytest.mark.process  # launchd jobs are real child processes under the launchctl simulator


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(agents_dir=tmp_path / "LaunchAgents", throttle_interval=1)


def write_launchd_profile(home: Home, sims: Simulators) -> None:
    write_launchd_sim_profile(home, PROFILE, sims, FEISHU_SECRET, LLM_KEY)


async def test_install_takeover_handback_crash_and_sigterm_with_one_owner_throughout(
    home: Home, sims: Simulators, launchctl_sim: LaunchctlSim, settings: AgentSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_launchd_profile(home, sims)
    label = job_label(PROFILE)
    lc = Launchctl()
    steps: list[str] = []
    events = []
    with OwnershipWatch(home, launchctl_sim) as watch:
        # install -> launchd's headless gateway serves and answers
        install(home, PROFILE, settings, steps.append)
        first = launchd_pid_serving(home, lc, label)
        assert present(read_owner(home.lock_file(PROFILE))).launchd_label == label
        events.append((await ask(sims, "to the launchd gateway")).event)

        # take over -> its process exits and is not respawned; a message sent meanwhile waits
        take_over(home, PROFILE, steps.append, manager=LaunchdManager(settings))
        assert not pid_alive(first) and lc.print_job(label) is None
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
        assert launchctl_sim.spawned("job") == [first]  # booted out: never respawned

        # hand back -> launchd's gateway answers again, including what arrived in between
        events.append(sims.feishu.inject_text("sent during the hand-back"))
        monkeypatch.setenv("LAUNCHCTL_SIM_TEARDOWN_DELAY", "5")  # read by the bootstrap below; long enough that the
        # old process exits (it drains first, slower on a busy machine) while the job is still listed
        second = hand_back(home, PROFILE, steps.append, manager=LaunchdManager(settings))
        assert second != first and present(read_owner(home.lock_file(PROFILE))).pid == second
        await in_own_thread(sims.feishu.wait_for_replies, events[-1], 1, 20)
        events.append((await ask(sims, "to launchd again")).event)

        # a crash -> launchd respawns it with a new PID
        os.kill(second, signal.SIGKILL)
        events.append(sims.feishu.inject_text("sent while it was down"))
        third = launchd_pid_serving(home, lc, label, other_than=second)
        await in_own_thread(sims.feishu.wait_for_replies, events[-1], 1, 20)
        assert present(lc.print_job(label)).last_signal == 9

        # SIGTERM -> drains, exits 0, launchd leaves it down
        os.kill(third, signal.SIGTERM)
        assert poll(lambda: present(lc.print_job(label)).state == "not running", 20)
        job = lc.print_job(label)
        assert job is not None
        assert (job.last_exit_code, job.pid) == (0, None)
        assert not poll(lambda: len(launchctl_sim.spawned("job")) > 3, 1.5)  # a ThrottleInterval passes
        assert launchctl_sim.spawned("job") == [first, second, third]

        # hand back a job that is loaded but stopped -> kickstart
        fourth = hand_back(home, PROFILE, steps.append, manager=LaunchdManager(settings))
        assert any("kickstarting" in line for line in steps) and fourth not in (first, second, third)
        events.append((await ask(sims, "after the kickstart")).event)

        # hand back while launchd still tears the job down (its process gone, the job still listed:
        # this job was bootstrapped with a 5 s teardown) -> refused with 37, polled through
        lc.bootout(label)
        assert poll(lambda: not pid_alive(fourth), 20) and lc.print_job(label) is not None
        calls_before = len(launchctl_sim.calls())
        fifth = hand_back(home, PROFILE, steps.append, manager=LaunchdManager(settings))
        verbs = [(c["argv"][0], c["code"]) for c in launchctl_sim.calls()[calls_before:] if c["argv"][0] != "print"]
        assert ("kickstart", 37) in verbs and verbs[-1] == ("bootstrap", 0), verbs
        events.append((await ask(sims, "after the teardown race")).event)
        assert launchctl_sim.spawned("job") == [first, second, third, fourth, fifth]

    assert watch.samples > 50 and watch.violations == []
    for event in events:
        replies = [r for r in sims.feishu.replies_to(event) if not r.duplicate]
        assert len(replies) == 1, (event.text, replies)
        assert replies[0].text == f"[alpha] {event.text}"
    assert any(line.startswith("booting out") for line in steps)
    assert any(line.startswith("handed back") for line in steps)
    log = stderr_path(home, PROFILE).read_text()
    assert FEISHU_SECRET not in log and LLM_KEY not in log
    plist = settings.plist(PROFILE).read_bytes()
    assert FEISHU_SECRET.encode() not in plist and b"--replace" not in plist

    uninstall(home, PROFILE, settings, steps.append)
    assert not settings.plist(PROFILE).exists() and lc.print_job(label) is None


def test_a_job_refused_by_the_console_loops_visibly_until_taken_over(
    home: Home, sims: Simulators, launchctl_sim: LaunchctlSim, settings: AgentSettings
) -> None:
    write_launchd_profile(home, sims)
    label = job_label(PROFILE)
    lc = Launchctl()
    lock = ProfileLock(home.lock_file(PROFILE), PROFILE)
    lock.acquire("console")  # the console owns the profile
    try:
        with pytest.raises(AgentError, match="would be refused"):
            install(home, PROFILE, settings, print)
        # Loaded behind our back anyway: launchd restarts it every ThrottleInterval, it exits 3.
        path = settings.plist(PROFILE)
        write_plist(path, render_agent(home, PROFILE, drain_timeout=5, throttle_interval=1))
        lc.bootstrap(path)
        assert poll(lambda: present(lc.print_job(label)).runs >= 2 and present(lc.print_job(label)).looping, 20)
        # A status taken while a run is starting reports that run's PID not holding the profile
        # (trouble too); on a busy machine the runs are long, so look until one lands between runs.
        reports: list[AgentStatus] = []

        def a_looping_report() -> bool:
            reports.append(status(home, PROFILE, settings))
            return present(reports[-1].job).looping

        assert poll(a_looping_report, 20)
        report = reports[-1]
        assert all(r.trouble for r in reports)
        text = "\n".join(report.lines())
        assert f"it exits 3 because PID {os.getpid()} (console" in text and "every 1s" in text
        lines: list[str] = []
        # The doctor samples the job too: mid-run a loop looks like a running job (see above).

        def the_doctor_finds_trouble() -> bool:
            lines.clear()
            return run_doctor(home, settings, apply_fix=False, report=lines.append) == 1

        assert poll(the_doctor_finds_trouble, 20)
        assert any("keeps restarting it" in line and "another owner holds the profile" in line for line in lines)
        # A hand-back while the console still holds the profile is refused, nothing changes.
        with pytest.raises(HandoverError, match="still served by"):
            hand_back(home, PROFILE, print, manager=LaunchdManager(settings))
        # Taking over stops the loop; it then finds the console holding the profile, and says so.
        with pytest.raises(HandoverError, match="is unloaded, but profile 'p' is still served by") as held:
            take_over(home, PROFILE, lines.append, manager=LaunchdManager(settings), timeout=10)
        assert f"PID {os.getpid()}" in str(held.value)
    finally:
        lock.release()
    assert lc.print_job(label) is None  # the loop is stopped


def gatewatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it (the simulator first on PATH via the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "tui", "launchd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_cli_takeover_runs_the_gateway_here_and_handback_returns_it_to_launchd(
    home: Home, sims: Simulators, launchctl_sim: LaunchctlSim, settings: AgentSettings
) -> None:
    write_launchd_profile(home, sims)
    label = job_label(PROFILE)
    lc = Launchctl()
    where = ["--profile", PROFILE, "--agents-dir", str(settings.agents_dir)]
    installed = gatewatch("install", *where, "--throttle-interval", "1")
    assert installed.returncode == 0, installed.stderr
    first = launchd_pid_serving(home, lc, label)

    here = subprocess.Popen(
        [sys.executable, "-m", "tui", "launchd", "takeover", "--headless", *where],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert poll(lambda: headless_feishu_connected(home, PROFILE, here.pid), 30), here.poll()
        assert not pid_alive(first) and lc.print_job(label) is None
        event = sims.feishu.inject_text("to the terminal")
        assert sims.feishu.wait_for_replies(event, 1, 20)[0].text == "[alpha] to the terminal"

        refused = gatewatch("handback", *where)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert f"still served by PID {here.pid} (headless" in refused.stderr
        assert here.poll() is None  # a refused hand-back touches nothing

        here.send_signal(signal.SIGTERM)
        out, err = here.communicate(timeout=30)
        assert here.returncode == 0
        assert "booting out" in out and "lock free" in out and "gatewatch launchd handback" in out
    finally:
        if here.poll() is None:
            here.kill()
            here.wait(10)

    back = gatewatch("handback", *where)
    assert back.returncode == 0, back.stderr
    assert "handed back: launchd's gateway PID" in back.stdout
    shown = gatewatch("status", *where)
    assert (
        shown.returncode == 0
        and "running, PID" in shown.stdout
        and "launchd job ai.gatewatch.gateway.p" in shown.stdout
    )
    event = sims.feishu.inject_text("back to launchd")
    assert sims.feishu.wait_for_replies(event, 1, 20)[0].text == "[alpha] back to launchd"
