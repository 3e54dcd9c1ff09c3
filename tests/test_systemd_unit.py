"""The systemd unit is rendered from data by our rules, quoted as systemd reads it, and holds no secret;
`systemctl show` is parsed field by field; the manager is chosen by platform unless told."""

import json
import sys
from pathlib import Path

import pytest

from gateway_core.config import Home
from launchd.agents import poll
from launchd.plist import exit_timeout_for
from launchd.service import ServiceError, default_manager_name
from launchd.systemctl import Systemctl, parse_show
from launchd.unit import (
    Unit,
    UnitError,
    format_exec,
    format_unit,
    parse_exec,
    parse_unit_text,
    read_unit,
    render_unit,
    unit_from_raw,
    values,
    write_unit,
)

from .sim.systemctl_harness import SystemctlSim
from .support import present


def test_rendered_unit_runs_the_gateway_itself_and_restarts_only_after_failure(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    unit = render_unit(home, "work", drain_timeout=12.5)
    service = unit["Service"]
    assert service["ExecStart"] == [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", "work"]
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == exit_timeout_for(12.5) >= 12.5 + 5
    assert service["RestartPreventExitStatus"] == "2 3"
    assert (service["StandardOutput"], service["StandardError"]) == ("journal", "journal")
    environment = service["Environment"]
    assert isinstance(environment, dict)
    assert set(environment) == {"PATH", "GATEWATCH_HOME", "PYTHONUNBUFFERED", "GATEWATCH_SYSTEMD_UNIT"}
    assert environment["GATEWATCH_SYSTEMD_UNIT"] == "gatewatch-work.service"
    assert unit["Install"] == {"WantedBy": "default.target"}
    text = format_unit(unit)
    assert "--replace" not in text and "secret" not in text.lower()
    path = tmp_path / "gatewatch-work.service"
    write_unit(path, unit)
    assert unit_from_raw(read_unit(path), unit) == unit
    assert path.stat().st_mode & 0o777 == 0o644


AWKWARD = ["/opt/my tools/python", "a b", 'say "hi"', "50%", "%h", "$HOME", "${X}", "back\\slash", ";", "", "tab\there"]


def test_exec_words_are_quoted_the_way_systemd_splits_them() -> None:
    line = format_exec(AWKWARD)
    assert parse_exec(line) == AWKWARD
    assert "%%h" in line and "$$HOME" in line and "\\;" in line


def test_the_simulated_systemd_runs_awkward_arguments_exactly(tmp_path: Path, systemctl_sim: SystemctlSim) -> None:
    """The simulator parses unit files on its own: what the process gets is systemd's reading."""
    script = tmp_path / "argv.py"
    out = tmp_path / "argv.json"
    script.write_text(f"import json, os, sys\njson.dump([sys.argv[1:], dict(os.environ)], open({str(out)!r}, 'w'))\n")
    unit: Unit = {
        "Service": {
            "Type": "exec",
            "ExecStart": [sys.executable, str(script), *AWKWARD[1:]],
            "Environment": {"SPACED": "a b", "PERCENT": "100%"},
        }
    }
    write_unit(systemctl_sim.unit_dir / "awkward.service", unit)
    Systemctl().start("awkward.service")
    assert poll(out.exists, 10)
    assert poll(lambda: present(Systemctl().show("awkward.service")).active_state == "inactive", 10)
    argv, env = json.loads(out.read_text())
    assert argv == AWKWARD[1:]
    assert (env["SPACED"], env["PERCENT"]) == ("a b", "100%") and env["INVOCATION_ID"]


def test_bad_unit_files_fail_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.service"
    with pytest.raises(UnitError, match="no such file") as error:
        read_unit(missing)
    assert "\n" not in str(error.value)
    broken = tmp_path / "broken.service"
    broken.write_text("ExecStart=/bin/true\n")  # no [Section]
    with pytest.raises(UnitError, match="does not parse") as error:
        read_unit(broken)
    assert "\n" not in str(error.value)
    with pytest.raises(UnitError, match="newline"):
        format_unit({"Unit": {"Description": "two\nlines"}})


def test_unit_text_keeps_repeats_resets_and_continuations() -> None:
    raw = parse_unit_text(
        "# comment\n[Service]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\nExecStart=/bin/echo \\\n  two words\n"
    )
    assert raw == [
        ("Service", "Environment", "A=1"),
        ("Service", "Environment", ""),
        ("Service", "Environment", "B=2"),
        ("Service", "ExecStart", "/bin/echo  two words"),
    ]
    assert values(raw, "Service", "Environment") == ["B=2"]  # an empty assignment resets the list


def test_show_is_parsed_field_by_field() -> None:
    running = parse_show(
        "MainPID=4242\nActiveState=active\nSubState=running\nLoadState=loaded\nExecMainCode=0\nExecMainStatus=0\n"
        "NRestarts=2\nResult=success\nFragmentPath=/u/gatewatch-p.service\nTimeoutStopUSec=25000000\n",
        "gatewatch-p.service",
    )
    assert running.running and running.pid == 4242 and running.restarts == 2 and running.timeout_stop == 25.0
    killed = parse_show(
        "MainPID=0\nActiveState=activating\nSubState=auto-restart\nExecMainCode=2\nExecMainStatus=9\n"
        "NRestarts=3\nResult=signal\n",
        "u.service",
    )
    assert not killed.running and killed.last_signal == 9 and killed.looping
    assert "killed by signal 9" in killed.describe()
    refused = parse_show(
        "MainPID=0\nActiveState=failed\nSubState=failed\nExecMainCode=1\nExecMainStatus=3\nResult=exit-code\n", "u"
    )
    assert refused.exit_code == 3 and "another owner holds the profile" in refused.describe_last_exit()
    limited = parse_show("ActiveState=failed\nResult=start-limit-hit\nNRestarts=0\n", "u")
    assert limited.looping and "gave up" in limited.describe()


def test_the_manager_is_launchd_on_a_mac_systemd_elsewhere_unless_told() -> None:
    assert default_manager_name({}, "darwin") == "launchd"
    assert default_manager_name({}, "linux") == "systemd"
    assert default_manager_name({"GATEWATCH_SERVICE_MANAGER": "launchd"}, "linux") == "launchd"
    with pytest.raises(ServiceError, match="use launchd or systemd"):
        default_manager_name({"GATEWATCH_SERVICE_MANAGER": "upstart"}, "linux")


def test_a_gateway_run_by_a_unit_is_named_as_such_and_the_way_to_take_it_over_says_systemd() -> None:
    from gateway_core.ownership import OwnerInfo, ProfileBusy

    holder = OwnerInfo(pid=42, owner="headless", started_at=0, profile="p", launchd_label="gatewatch-p.service")
    assert "systemd unit gatewatch-p.service" in holder.describe()
    assert "gatewatch systemd takeover --profile p" in str(ProfileBusy("p", holder))
    launchd_holder = OwnerInfo(
        pid=42, owner="headless", started_at=0, profile="p", launchd_label="ai.gatewatch.gateway.p"
    )
    assert "launchd job ai.gatewatch.gateway.p" in launchd_holder.describe()
    assert "gatewatch launchd takeover --profile p" in str(ProfileBusy("p", launchd_holder))
