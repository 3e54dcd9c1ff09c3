"""The launchctl simulator keeps launchd's promises on real processes, seen through our wrapper.

Each test drives `launchctl` (the simulator, first on PATH) with small Python programs whose
behaviour on SIGTERM and exit is known, and checks real PIDs: alive or gone, respawned or not.
"""

import os
import plistlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from launchd.agents import pid_alive, poll
from launchd.launchctl import Launchctl, LaunchctlError, explain, parse_list

from .sim.launchctl_harness import LaunchctlSim, simulated_launchctl
from .sim.stand_in import PROGRAM
from .support import present

pytestmark = pytest.mark.process  # the launchctl simulator runs real child processes


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LaunchctlSim]:
    with simulated_launchctl(tmp_path / "sim", monkeypatch.setenv, teardown_delay=0.3) as simulator:
        yield simulator


def make_job(tmp_path: Path, label: str, mode: list[str], **overrides: Any) -> Path:
    script = tmp_path / "job.py"
    script.write_text(PROGRAM)
    data: dict[str, Any] = {
        "Label": label,
        "ProgramArguments": [sys.executable, str(script), *mode],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 1,
        "ExitTimeOut": 2,
        "StandardOutPath": str(tmp_path / "out.log"),
        "StandardErrorPath": str(tmp_path / "err.log"),
        "EnvironmentVariables": {"GATEWATCH_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"},
    }
    data.update(overrides)
    path = tmp_path / f"{label}.plist"
    with open(path, "wb") as fp:
        plistlib.dump(data, fp)
    return path


def starts(tmp_path: Path) -> list[tuple[int, float]]:
    log = tmp_path / "starts.log"
    if not log.exists():
        return []
    return [(int(p), float(t)) for p, t in (line.split() for line in log.read_text().splitlines())]


def running_pid(lc: Launchctl, label: str, other_than: int | None = None, timeout: float = 10) -> int:
    found: dict[str, int] = {}

    def check() -> bool:
        job = lc.print_job(label)
        if job and job.running and job.pid is not None and job.pid != other_than and pid_alive(job.pid):
            found["pid"] = job.pid
            return True
        return False

    assert poll(check, timeout), f"{label} not running: {lc.print_job(label)}"
    return found["pid"]


def launchctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["launchctl", *args], capture_output=True, text=True, timeout=30)


def test_keepalive_respawns_after_a_crash_but_not_after_exit_0(sim: LaunchctlSim, tmp_path: Path) -> None:
    lc = Launchctl()
    lc.bootstrap(make_job(tmp_path, "t.serve", ["serve"]))
    first = running_pid(lc, "t.serve")
    assert psutil.Process(first).cmdline()[-1] == "serve"

    os.kill(first, signal.SIGKILL)  # a crash: launchd restarts it after ThrottleInterval
    second = running_pid(lc, "t.serve", other_than=first)
    assert not pid_alive(first)
    job = lc.print_job("t.serve")
    assert job is not None
    assert (job.runs, job.last_signal) == (2, 9)

    lc.kill("TERM", "t.serve")  # drains and exits 0: launchd leaves it down
    assert poll(lambda: not pid_alive(second), 5)
    assert poll(lambda: present(lc.print_job("t.serve")).state == "not running", 5)
    job = lc.print_job("t.serve")
    assert job is not None
    assert (job.last_exit_code, job.last_signal, job.pid) == (0, None, None)
    # The decision is recorded as "not running" (not "spawn scheduled"); confirm nothing comes
    # back once a whole ThrottleInterval has passed.
    assert not poll(lambda: len(starts(tmp_path)) > 2, 1.5)
    assert present(lc.print_job("t.serve")).runs == 2


def test_failing_job_is_restarted_no_sooner_than_throttle_interval(sim: LaunchctlSim, tmp_path: Path) -> None:
    lc = Launchctl()
    lc.bootstrap(make_job(tmp_path, "t.fail", ["exit", "3"]))
    assert poll(lambda: len(starts(tmp_path)) >= 3, 10)
    times = [t for _, t in starts(tmp_path)]
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:])), times
    job = lc.print_job("t.fail")
    assert job is not None
    assert job.runs >= 3 and job.last_exit_code == 3 and job.looping
    assert job is not None
    assert "restarting it repeatedly" in job.describe() and "another owner holds the profile" in job.describe()
    entry = next(e for e in parse_list(launchctl("list").stdout) if e.label == "t.fail")
    assert entry.status == 3
    detail = launchctl("list", "t.fail").stdout
    assert '"LastExitStatus" = 768;' in detail  # a raw wait status: exit 3 << 8


def test_bootout_terms_then_kills_after_exit_timeout_and_finishes_in_background(
    sim: LaunchctlSim, tmp_path: Path
) -> None:
    lc = Launchctl()
    # ExitTimeOut is the window in which the job is still tearing down: long enough for the two
    # launchctl calls below to land in it on a loaded machine (each starts a Python process).
    plist = make_job(tmp_path, "t.stubborn", ["stubborn"], ExitTimeOut=3)
    lc.bootstrap(plist)
    pid = running_pid(lc, "t.stubborn")
    started = time.monotonic()
    assert lc.bootout("t.stubborn") is True
    # Still tearing down: launchd answers a hasty bootstrap with 5 and still lists the job.
    with pytest.raises(LaunchctlError) as busy:
        lc.bootstrap(plist)
    assert busy.value.code == 5 and "still being torn down" in str(busy.value)
    assert lc.print_job("t.stubborn") is not None
    assert poll(lambda: not pid_alive(pid), 10)
    assert time.monotonic() - started >= 2.95  # it ignored SIGTERM; SIGKILL came after ExitTimeOut
    assert poll(lambda: lc.print_job("t.stubborn") is None, 5)
    assert lc.bootout("t.stubborn") is False  # not loaded any more: exit 3, reported as "nothing to do"
    assert len(starts(tmp_path)) == 1  # booted out jobs are never respawned


def test_exit_codes_match_launchd_and_read_as_one_line(sim: LaunchctlSim, tmp_path: Path) -> None:
    lc = Launchctl()
    plist = make_job(tmp_path, "t.codes", ["serve"], RunAtLoad=False, KeepAlive=False)
    uid = os.getuid()
    assert launchctl("print", f"user/{uid}/t.codes").returncode == 113
    assert launchctl("bootout", f"user/{uid}/t.codes").returncode == 3
    assert lc.print_job("t.codes") is None
    lc.bootstrap(plist)
    assert present(lc.print_job("t.codes")).state == "not running"  # no RunAtLoad, no KeepAlive: loaded, idle
    assert launchctl("bootstrap", f"user/{uid}", str(plist)).returncode == 5
    assert launchctl("bootstrap", f"gui/{uid}", str(plist)).returncode == 125  # no GUI session here
    assert launchctl("print", f"gui/{uid}/t.codes").returncode == 112
    assert Launchctl(f"gui/{uid}").print_job("t.codes") is None
    lc.disable("t.codes")
    assert lc.print_job("t.codes") is not None  # disable does not unload
    lc.bootout("t.codes")
    assert poll(lambda: lc.print_job("t.codes") is None, 5)
    with pytest.raises(LaunchctlError) as disabled:
        lc.bootstrap(plist)
    assert disabled.value.code == 119 and "launchctl enable" in str(disabled.value)
    lc.enable("t.codes")
    lc.bootstrap(plist)
    for code in (3, 5, 36, 112, 113, 119, 125, 42):
        line = explain(code, "bootstrap", "user/1/x", "some\nstderr")
        assert line and "\n" not in line


def test_kickstart_starts_an_idle_job_and_k_restarts_it(sim: LaunchctlSim, tmp_path: Path) -> None:
    lc = Launchctl()
    lc.bootstrap(make_job(tmp_path, "t.kick", ["serve"], RunAtLoad=False, KeepAlive=False))
    assert starts(tmp_path) == []
    first = lc.kickstart("t.kick")
    assert first == running_pid(lc, "t.kick")
    assert lc.kickstart("t.kick") == first  # already running, no -k: nothing happens
    second = lc.kickstart("t.kick", kill=True)
    assert second != first and not pid_alive(first) and pid_alive(second)
    assert present(lc.print_job("t.kick")).runs == 2


def test_job_gets_launchd_environment_own_group_and_log_files(
    sim: LaunchctlSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", "must-not-leak")
    lc = Launchctl()
    lc.bootstrap(make_job(tmp_path, "t.env", ["serve"]))
    pid = running_pid(lc, "t.env")
    assert poll(lambda: (tmp_path / "env.log").exists() and f"started {pid}" in (tmp_path / "out.log").read_text(), 5)
    import json

    seen = json.loads((tmp_path / "env.log").read_text())
    assert seen["env"]["XPC_SERVICE_NAME"] == "t.env"
    assert seen["env"]["GATEWATCH_HOME"] == str(tmp_path)
    assert seen["env"]["PATH"] == "/usr/bin:/bin:/usr/sbin:/sbin"  # launchd's, not the caller's
    assert "GW_TEST_SECRET" not in seen["env"] and "LAUNCHCTL_SIM_STATE" not in seen["env"]
    assert seen["pgid"] == pid and seen["stdin_is_devnull"]
    assert [c["argv"][0] for c in sim.calls()][:1] == ["bootstrap"]


def test_bootout_still_stops_the_job_when_its_monitor_died(sim: LaunchctlSim, tmp_path: Path) -> None:
    lc = Launchctl()
    lc.bootstrap(make_job(tmp_path, "t.orphan", ["serve"]))
    pid = running_pid(lc, "t.orphan")
    monitor = present(sim.job("t.orphan"))["monitor_pid"]
    os.kill(monitor, signal.SIGKILL)
    assert poll(lambda: not pid_alive(monitor), 5)
    assert lc.bootout("t.orphan") is True
    assert poll(lambda: not pid_alive(pid), 5) and lc.print_job("t.orphan") is None
