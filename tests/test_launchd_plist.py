"""The plist we render, the `print`/`list` parsing and the domain choice."""

import os
import plistlib
import stat
from pathlib import Path

import pytest

from gateway_core.config import Home
from launchd.launchctl import LaunchctlError, parse_list, parse_print, resolve_domain
from launchd.plist import PlistError, exit_timeout_for, read_plist, render_agent, write_plist


def test_rendered_agent_runs_the_gateway_itself_and_restarts_only_after_failure(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    data = render_agent(home, "work", drain_timeout=12.5, throttle_interval=1)
    assert data["Label"] == "ai.gatewatch.gateway.work"
    args = data["ProgramArguments"]
    assert os.path.isabs(args[0]) and os.access(args[0], os.X_OK)
    assert args[1:] == ["-m", "gateway_core", "run", "--headless", "--profile", "work"]
    assert "--replace" not in args
    assert data["RunAtLoad"] is True and data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["ThrottleInterval"] == 1 and data["ExitTimeOut"] == exit_timeout_for(12.5) >= 13
    assert set(data["EnvironmentVariables"]) == {"PATH", "GATEWATCH_HOME", "PYTHONUNBUFFERED"}
    assert data["EnvironmentVariables"]["GATEWATCH_HOME"] == str(home.root)
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        assert os.path.isabs(data[key]) and data[key].startswith(str(home.root))

    path = tmp_path / "agents" / "ai.gatewatch.gateway.work.plist"
    write_plist(path, data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_plist(path) == data
    assert render_agent(home, "work", drain_timeout=20, prefix="com.me.gw")["Label"] == "com.me.gw.work"


def test_bad_plists_fail_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "x.plist"
    broken.write_text("<plist><dict>")
    with pytest.raises(PlistError) as error:
        read_plist(broken)
    assert "does not parse" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(PlistError, match="cannot be rendered"):
        write_plist(tmp_path / "y.plist", {"Label": None})
    assert not (tmp_path / "y.plist").exists()


PRINT_SAMPLE = """gui/501/ai.gatewatch.gateway.work = {
\tactive count = 0
\tpath = /Users/u/Library/LaunchAgents/ai.gatewatch.gateway.work.plist
\ttype = LaunchAgent
\tstate = spawn scheduled

\tprogram = /opt/venv/bin/python
\targuments = {
\t\t/opt/venv/bin/python
\t\tstate = not a field
\t}

\tevent triggers = {
\t\tai.gatewatch.gateway.work.keepalive => {
\t\t\tkeepalive = 1
\t\t\tstate = active
\t\t\tpid = 999
\t\t}
\t}

\tdomain = gui/501 [100005]
\truns = 14
\tlast exit code = 78: EX_CONFIG
\tlast terminating signal = Killed: 9
\tproperties = keepalive | runatload
}
"""


def test_print_is_parsed_from_top_level_lines_only() -> None:
    job = parse_print(PRINT_SAMPLE, "ai.gatewatch.gateway.work", "gui/501")
    assert job.state == "spawn scheduled" and job.pid is None  # the nested pid/state do not leak out
    assert (job.runs, job.last_exit_code, job.last_signal) == (14, 78, 9)
    assert job.path is not None
    assert job.path.endswith("ai.gatewatch.gateway.work.plist")
    assert job.looping and "killed by signal 9" in job.describe()
    running = parse_print(
        "x = {\n\tstate = running\n\tpid = 42\n\truns = 1\n\tlast exit code = (never exited)\n}\n", "x", "user/5"
    )
    assert running.running and running.pid == 42 and running.last_exit_code is None and not running.looping
    assert parse_print("garbage", "x", "user/5").state == "unknown"


def test_list_rows_are_parsed() -> None:
    entries = parse_list("PID\tStatus\tLabel\n123\t0\ta.running\n-\t-9\ta.killed\n-\t3\ta.refused\nnoise\n")
    assert [(e.pid, e.status, e.label) for e in entries] == [
        (123, 0, "a.running"),
        (None, -9, "a.killed"),
        (None, 3, "a.refused"),
    ]


def test_domain_is_gui_at_the_screen_and_user_over_ssh_or_sudo() -> None:
    assert resolve_domain({}, uid=501, console_uid=501) == "gui/501"
    assert resolve_domain({"SSH_CONNECTION": "1 2 3 4"}, uid=501, console_uid=0) == "user/501"
    assert resolve_domain({"SSH_TTY": "/dev/ttys001"}, uid=501, console_uid=501) == "gui/501"
    assert resolve_domain({"SUDO_USER": "u"}, uid=501, console_uid=501) == "user/501"
    assert resolve_domain({}, uid=0, console_uid=0) == "system"
    assert resolve_domain({"GATEWATCH_LAUNCHD_DOMAIN": "user"}, uid=501) == "user/501"
    assert resolve_domain({"GATEWATCH_LAUNCHD_DOMAIN": "gui/502"}, uid=501) == "gui/502"
    with pytest.raises(LaunchctlError, match="not a launchd domain"):
        resolve_domain({"GATEWATCH_LAUNCHD_DOMAIN": "gui/../x"}, uid=501)


def test_plists_are_plain_xml_readable_by_plistlib(tmp_path: Path) -> None:
    data = render_agent(Home(tmp_path), "p", drain_timeout=1)
    path = tmp_path / "p.plist"
    write_plist(path, data)
    assert path.read_bytes().startswith(b"<?xml") and plistlib.loads(path.read_bytes()) == data
