"""Doctor: the incident's plist (`--replace`) is reported, fixed, reloaded; a second --fix changes nothing."""

import os
import plistlib
import sys
from pathlib import Path

import psutil
import pytest

from launchd.agents import pid_alive, poll
from launchd.launchctl import Launchctl
from launchd.plist import render_agent, write_plist
from tui.cli import main

from .sim.launchctl_harness import LaunchctlSim
from .support import present

pytestmark = pytest.mark.process  # the launchctl simulator runs real child processes

HERMES = "ai.hermes.gateway-default"


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "LaunchAgents"
    path.mkdir()
    monkeypatch.setenv("GATEWATCH_LAUNCH_AGENTS_DIR", str(path))
    monkeypatch.setenv("GATEWATCH_HOME", str(tmp_path / "home"))
    return path


def hermes_plist(agents: Path, tmp_path: Path) -> Path:
    """The article's plist: another gateway's agent, started with --replace, no log paths."""
    program = tmp_path / "hermes"
    program.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True:\n    signal.pause()\n"
    )
    program.chmod(0o755)
    path = agents / f"{HERMES}.plist"
    with open(path, "wb") as fp:
        plistlib.dump(
            {
                "Label": HERMES,
                "ProgramArguments": [str(program), "gateway", "start", "--replace"],
                "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False},
                "ThrottleInterval": 1,
            },
            fp,
        )
    return path


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["launchd", "doctor", *args])
    out = capsys.readouterr()
    assert out.err == ""
    return code, out.out


def test_replace_is_reported_fixed_reloaded_and_a_second_fix_changes_nothing(
    agents: Path, tmp_path: Path, launchctl_sim: LaunchctlSim, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hermes_plist(agents, tmp_path)
    lc = Launchctl()
    lc.bootstrap(path)
    assert poll(lambda: (lc.print_job(HERMES) or None) is not None and present(lc.print_job(HERMES)).running, 10)
    old_pid = present(lc.print_job(HERMES)).pid

    code, out = doctor(capsys)
    assert code == 1
    assert f"FAIL  {path}" in out and "--replace" in out and "StandardErrorPath is missing" in out
    assert "[--fix repairs this]" in out

    code, out = doctor(capsys, "--fix")
    assert code == 0, out
    assert f"ok    {path}" in out and "reloaded" in out
    backups = sorted(agents.glob(f"{HERMES}.plist.bak-*"))
    assert len(backups) == 1 and b"--replace" in backups[0].read_bytes()
    fixed = plistlib.loads(path.read_bytes())
    assert fixed["ProgramArguments"][1:] == ["gateway", "start"]
    assert fixed["KeepAlive"] == {"SuccessfulExit": False} and fixed["RunAtLoad"] is True
    assert os.path.isabs(fixed["StandardErrorPath"]) and os.path.isdir(os.path.dirname(fixed["StandardErrorPath"]))
    # Reloaded: launchd now runs what the file says, in a new process; the old one is gone.
    new_pid = (
        present(lc.print_job(HERMES)).pid
        if poll(lambda: bool(lc.print_job(HERMES) and present(lc.print_job(HERMES)).running), 10)
        else None
    )
    assert new_pid and new_pid != old_pid and not pid_alive(old_pid)
    assert not any("--replace" in arg for arg in psutil.Process(new_pid).cmdline())  # psutil: Linux and macOS alike

    before = path.read_bytes()
    code, out = doctor(capsys, "--fix")
    assert code == 0 and "nothing to fix" in out
    assert path.read_bytes() == before and len(list(agents.glob(f"{HERMES}.plist.bak-*"))) == 1
    assert present(lc.print_job(HERMES)).pid == new_pid  # no needless reload


def test_each_rule_is_reported_per_file(agents: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home_root = tmp_path / "home"
    (home_root / "logs").mkdir(parents=True)
    from gateway_core.config import Home

    ours = agents / "ai.gatewatch.gateway.work.plist"
    write_plist(ours, render_agent(Home(home_root), "work", drain_timeout=20))
    twin = agents / "com.example.gateway.work.plist"  # a second job for the same profile
    write_plist(twin, render_agent(Home(home_root), "work", drain_timeout=20, prefix="com.example.gateway"))
    forever = agents / "ai.other.gateway-x.plist"
    write_plist(
        forever,
        {
            "Label": "ai.other.gateway-x",
            "ProgramArguments": ["/nonexistent/bin/other", "serve"],
            "KeepAlive": True,
            "EnvironmentVariables": {"OTHER_API_KEY": "sk-should-not-be-here"},
            "StandardOutPath": "/nonexistent/dir/out.log",
            "StandardErrorPath": "/nonexistent/dir/err.log",
        },
    )
    broken = agents / "ai.broken.gateway-y.plist"
    broken.write_text("<plist><dict><key>Label</key>")
    (agents / "com.apple.unrelated.plist").write_text("not ours to judge")

    code, out = doctor(capsys)
    assert code == 1
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith(("ok", "FAIL")):
            current = line.split()[-1]
            sections[current] = []
        else:
            sections[current].append(line)
    assert set(sections) == {str(ours), str(twin), str(forever), str(broken)}
    assert any("two jobs for gatewatch profile 'work'" in ln for ln in sections[str(ours)])
    assert any("two jobs for gatewatch profile 'work'" in ln for ln in sections[str(twin)])
    other = "\n".join(sections[str(forever)])
    for fragment in (
        "KeepAlive is unconditionally true",
        "RunAtLoad is missing",
        "/nonexistent/bin/other does not exist",
        "directory /nonexistent/dir does not exist",
        "EnvironmentVariables carries OTHER_API_KEY",
    ):
        assert fragment in other
    assert "sk-should-not-be-here" not in out  # a secret found is named, never shown
    assert "does not parse" in "\n".join(sections[str(broken)])

    code, out = doctor(capsys, "--fix")
    assert code == 1  # unfixable problems remain: duplicates, missing program, a broken file
    assert broken.read_text() == "<plist><dict><key>Label</key>"  # never rewritten
    fixed = plistlib.loads(forever.read_bytes())
    assert fixed["KeepAlive"] == {"SuccessfulExit": False} and fixed["RunAtLoad"] is True
    assert fixed["StandardErrorPath"] == str(home_root / "logs" / "ai.other.gateway-x.err.log")
    assert not os.path.exists("/nonexistent")  # logs move to our directory; nothing is created elsewhere


def test_a_fresh_install_is_healthy_and_secrets_from_env_are_refused(
    agents: Path,
    tmp_path: Path,
    launchctl_sim: LaunchctlSim,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    monkeypatch.setenv("GW_DOCTOR_SECRET", "s3cret-value")
    (home / "profiles" / "p.toml").write_text(
        '[feishu]\napp_id = "cli_doctor"\napp_secret_env = "GW_DOCTOR_SECRET"\n'
        '[llm]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "GW_DOCTOR_SECRET"\nmodels = ["m"]\n'
    )
    assert main(["launchd", "install", "--profile", "p"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "launchd does not pass" in err and "feishu.app_secret_env" in err
    assert "s3cret-value" not in err and not list(agents.iterdir())
