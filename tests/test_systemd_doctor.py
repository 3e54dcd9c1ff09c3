"""systemd doctor: a unit that would fight the supervisor (`--replace`, `Restart=always`), linger off,
a second unit for one profile, a missing program — reported; `--fix` backs up, rewrites, reloads,
restarts what ran, enables linger; a second `--fix` changes nothing."""

import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from gateway_core.config import Home
from gateway_core.sim import Simulators
from launchd.agents import pid_alive, poll
from launchd.systemctl import Systemctl, linger_enabled
from launchd.unit import render_unit, write_unit
from tui.cli import main

from .sim.systemctl_harness import SystemctlSim, simulated_systemctl
from .support import present

pytestmark = pytest.mark.process  # the systemctl simulator runs real child processes

HERMES = "hermes-gateway.service"


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SystemctlSim]:
    monkeypatch.setenv("GATEWATCH_HOME", str(tmp_path / "home"))
    with simulated_systemctl(tmp_path / "sim", monkeypatch.setenv, linger=False) as simulator:
        yield simulator


def hermes_unit(sim: SystemctlSim, tmp_path: Path) -> Path:
    """hermes-agent's kind of unit, gone wrong: a start that kills the running gateway, restarted always."""
    program = tmp_path / "hermes"
    program.write_text(
        f"#!{sys.executable}\nimport signal, sys\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True:\n    signal.pause()\n"
    )
    program.chmod(0o755)
    path = sim.unit_dir / HERMES
    path.write_text(
        "[Unit]\nDescription=Hermes gateway\n\n"
        f"[Service]\nExecStart={program} gateway start --replace\nRestart=always\nRestartSec=1\n\n"
        "[Install]\nWantedBy=default.target\n"
    )
    return path


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["systemd", "doctor", *args])
    out = capsys.readouterr()
    assert out.err == ""
    return code, out.out


def test_replace_restart_always_and_linger_are_reported_fixed_and_a_second_fix_changes_nothing(
    sim: SystemctlSim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hermes_unit(sim, tmp_path)
    systemctl = Systemctl()
    systemctl.daemon_reload()
    systemctl.start(HERMES)
    old_pid = present(systemctl.show(HERMES)).pid

    code, out = doctor(capsys)
    assert code == 1
    assert f"FAIL  {path}" in out and "--replace" in out and "Restart=always" in out
    assert "Linger=no" in out and "[--fix repairs this]" in out

    code, out = doctor(capsys, "--fix")
    assert code == 0, out
    assert f"ok    {path}" in out and "daemon-reload: done" in out and "restarted" in out and "linger enabled" in out
    backups = sorted(sim.unit_dir.glob(f"{HERMES}.bak-*"))
    assert len(backups) == 1 and "--replace" in backups[0].read_text()
    text = path.read_text()
    assert "--replace" not in text and "Restart=on-failure" in text and "RestartSec=1" in text
    assert linger_enabled() is True
    # Reloaded and restarted: systemd now runs what the file says, in a new process.
    assert poll(lambda: (present(s := systemctl.show(HERMES))).running and present(s).pid != old_pid, 10)
    new_pid = present(systemctl.show(HERMES)).pid
    assert not pid_alive(old_pid) and "--replace" not in psutil.Process(new_pid).cmdline()
    reloads = [c for c in sim.calls() if "daemon-reload" in c["argv"]]

    before = path.read_text()
    code, out = doctor(capsys, "--fix")
    assert code == 0 and "nothing to fix" in out
    assert path.read_text() == before and len(list(sim.unit_dir.glob(f"{HERMES}.bak-*"))) == 1
    assert present(systemctl.show(HERMES)).pid == new_pid  # no needless restart
    assert [c for c in sim.calls() if "daemon-reload" in c["argv"]] == reloads
    systemctl.stop(HERMES)


def test_two_units_for_one_profile_a_missing_program_and_secrets_are_reported(
    sim: SystemctlSim, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home(tmp_path / "home")
    ours = sim.unit_dir / "gatewatch-p.service"
    unit = render_unit(home, "p", drain_timeout=5)
    unit["Service"]["ExecStart"] = ["/nonexistent/python", "-m", "gateway_core", "run", "--headless", "--profile", "p"]
    environment = unit["Service"]["Environment"]
    assert isinstance(environment, dict)
    unit["Service"]["Environment"] = {**environment, "FEISHU_APP_SECRET": "x"}
    write_unit(ours, unit)
    second = sim.unit_dir / "my-gateway-p.service"
    write_unit(second, {"Service": {"ExecStart": unit["Service"]["ExecStart"], "Restart": "on-failure"}})
    (sim.unit_dir / "broken-gateway.service").write_text("ExecStart=/bin/true\n")

    code, out = doctor(capsys)
    assert code == 1
    assert "program /nonexistent/python does not exist" in out
    assert "Environment= carries FEISHU_APP_SECRET" in out
    assert "two units for gatewatch profile 'p'" in out and "does not parse" in out

    code, out = doctor(capsys, "--fix")
    fixed = ours.read_text()
    assert sys.executable in fixed and "FEISHU_APP_SECRET" not in fixed  # ours: re-rendered by our rules
    assert code == 1 and "two units for gatewatch profile 'p'" in out  # not ours to choose which goes


def test_a_fresh_install_is_healthy(
    sim: SystemctlSim, tmp_path: Path, capsys: pytest.CaptureFixture[str], sims: Simulators
) -> None:
    from gateway_core.sim.profile import write_sim_profile

    from .support import FEISHU_SECRET, LLM_KEY

    home = Home(tmp_path / "home")
    write_sim_profile(home, "p", sims, secret_files=(FEISHU_SECRET, LLM_KEY))
    Systemctl()  # the simulator is on PATH
    assert main(["systemd", "install", "--profile", "p", "--restart-sec", "1"]) == 0
    main(["systemd", "doctor", "--fix"])  # linger is off in this simulator: --fix turns it on
    capsys.readouterr()
    code, out = doctor(capsys)
    assert code == 0 and "ok    " in out, out
    assert main(["systemd", "uninstall", "--profile", "p"]) == 0
