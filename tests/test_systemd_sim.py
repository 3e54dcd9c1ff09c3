"""The systemctl simulator keeps systemd's promises on real processes, seen through our wrapper.

Small programs whose behaviour on SIGTERM and exit is known (the launchd simulator tests' PROGRAM)
run as units; the tests check real PIDs: alive or gone, restarted or not.
"""

import os
import signal
import sys
from pathlib import Path

import pytest

from launchd.agents import pid_alive, poll
from launchd.systemctl import Systemctl, SystemctlError, enable_linger, linger_enabled
from launchd.unit import Value, write_unit

from .sim.stand_in import PROGRAM
from .sim.systemctl_harness import SystemctlSim
from .support import present

pytestmark = pytest.mark.process  # the systemctl simulator runs real child processes


def make_unit(tmp_path: Path, unit_dir: Path, name: str, mode: list[str], **service: Value) -> str:
    script = tmp_path / "job.py"
    script.write_text(PROGRAM)
    settings: dict[str, Value] = {
        "Type": "exec",
        "ExecStart": [sys.executable, str(script), *mode],
        "Restart": "on-failure",
    }
    settings["RestartSec"] = 0
    settings.update(service)
    write_unit(unit_dir / name, {"Unit": {}, "Service": settings, "Install": {"WantedBy": "default.target"}})
    return name


def starts(tmp_path: Path) -> list[int]:
    log = tmp_path / "starts.log"
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


def test_restart_on_failure_after_a_crash_but_not_after_a_clean_exit(
    tmp_path: Path, systemctl_sim: SystemctlSim
) -> None:
    systemctl = Systemctl()
    unit = make_unit(tmp_path, systemctl_sim.unit_dir, "crashy.service", ["serve"])
    systemctl.start(unit)
    first = present(systemctl.show(unit)).pid
    assert pid_alive(first)
    os.kill(present(first), signal.SIGKILL)  # a crash: restarted
    assert poll(lambda: (present(s := systemctl.show(unit))).running and present(s).pid != first, 10)
    state = systemctl.show(unit)
    assert state is not None
    assert (state.restarts, state.last_signal, state.result) == (1, 9, "signal")
    assert state is not None
    os.kill(present(state.pid), signal.SIGTERM)  # the program exits 0 on SIGTERM: a clean exit, left down
    assert poll(lambda: present(systemctl.show(unit)).active_state == "inactive", 10)
    assert not poll(lambda: len(starts(tmp_path)) > 2, 1.0)
    assert state is not None
    assert starts(tmp_path) == systemctl_sim.spawned("job") == [first, state.pid]


def test_a_non_zero_exit_restarts_after_restart_sec_until_the_start_limit(
    tmp_path: Path, systemctl_sim: SystemctlSim
) -> None:
    systemctl = Systemctl()
    unit = make_unit(tmp_path, systemctl_sim.unit_dir, "failing.service", ["exit", "1"], RestartSec=0)
    try:
        systemctl.start(unit)  # Type=exec waits for the exec, not the exit: the failures may come after
    except SystemctlError:
        pass
    assert poll(lambda: present(systemctl.show(unit)).result == "start-limit-hit", 20)
    state = systemctl.show(unit)
    assert state is not None
    assert state.active_state == "failed" and state.looping and len(starts(tmp_path)) == 5  # StartLimitBurst
    with pytest.raises(SystemctlError, match="failed too often") as refused:
        systemctl.start(unit)
    assert "\n" not in str(refused.value)
    systemctl.reset_failed(unit)
    assert present(systemctl.show(unit)).active_state == "inactive"


def test_restart_prevent_exit_status_leaves_a_refused_gateway_failed(
    tmp_path: Path, systemctl_sim: SystemctlSim
) -> None:
    systemctl = Systemctl()
    unit = make_unit(tmp_path, systemctl_sim.unit_dir, "refused.service", ["exit", "3"], RestartPreventExitStatus="2 3")
    try:
        systemctl.start(unit)
    except SystemctlError:
        pass  # the exit may beat `start`'s return
    assert poll(lambda: present(systemctl.show(unit)).active_state == "failed", 10)
    assert not poll(lambda: len(starts(tmp_path)) > 1, 1.0)
    assert present(systemctl.show(unit)).exit_code == 3


def test_stop_terms_then_kills_after_timeout_stop_sec_and_returns_when_down(
    tmp_path: Path, systemctl_sim: SystemctlSim
) -> None:
    systemctl = Systemctl()
    unit = make_unit(tmp_path, systemctl_sim.unit_dir, "stubborn.service", ["stubborn"], TimeoutStopSec=1)
    systemctl.start(unit)
    pid = present(systemctl.show(unit)).pid
    systemctl.stop(unit)  # blocks: SIGTERM ignored, SIGKILL after 1 s
    assert not pid_alive(pid)
    state = systemctl.show(unit)
    assert state is not None
    assert (state.active_state, state.result, state.last_signal) == ("failed", "timeout", 9)
    assert not poll(lambda: len(starts(tmp_path)) > 1, 0.5)  # a stop is never followed by a restart


def test_unknown_units_and_a_missing_bus_read_as_one_line(
    tmp_path: Path, systemctl_sim: SystemctlSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemctl = Systemctl()
    assert systemctl.show("nothing.service") is None
    with pytest.raises(SystemctlError, match="not installed") as error:
        systemctl.start("nothing.service")
    assert "\n" not in str(error.value) and "gatewatch systemd install" in str(error.value)
    systemctl.reset_failed("nothing.service")  # nothing to forget is not an error
    monkeypatch.setenv("SYSTEMCTL_SIM_NO_BUS", "1")
    with pytest.raises(SystemctlError, match="cannot reach your systemd user manager") as error:
        systemctl.show("nothing.service")
    assert "\n" not in str(error.value)


def test_unit_gets_the_managers_environment_its_own_group_and_the_journal(
    tmp_path: Path, systemctl_sim: SystemctlSim
) -> None:
    import json

    systemctl = Systemctl()
    unit = make_unit(tmp_path, systemctl_sim.unit_dir, "env.service", ["serve"], Environment={"GATEWATCH_HOME": "/x y"})
    systemctl.start(unit)
    pid = present(systemctl.show(unit)).pid
    assert poll(lambda: (tmp_path / "env.log").exists(), 10)
    seen = json.loads((tmp_path / "env.log").read_text())
    assert seen["env"]["GATEWATCH_HOME"] == "/x y" and seen["env"]["INVOCATION_ID"]
    assert "GW_TEST_FEISHU_SECRET" not in seen["env"]  # no shell environment reaches a unit
    assert seen["pgid"] == pid and seen["stdin_is_devnull"]
    assert poll(lambda: f"started {pid}" in systemctl_sim.journal(unit), 10)
    systemctl.stop(unit)


def test_linger_is_read_and_enabled_through_loginctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .sim.systemctl_harness import simulated_systemctl

    with simulated_systemctl(tmp_path / "sim", monkeypatch.setenv, linger=False):
        assert linger_enabled() is False
        enable_linger()
        assert linger_enabled() is True
