"""`gatewatch profile check`: real HTTP to the simulators, one line per check, exit 1 on a failure."""

import subprocess
import sys

import pytest

from gateway_core.config import Home, load_profile
from gateway_core.profile_check import check_profile
from gateway_core.sim import Simulators

from .support import FEISHU_SECRET, LLM_KEY, gateway_env, unique_app_id, write_profile


def run_check(home: Home, name: str = "p") -> tuple[int, list[str]]:
    lines: list[str] = []
    code = check_profile(load_profile(home, name), lines.append, deadline=3)
    return code, lines


def test_a_good_profile_passes_every_check_with_one_line_each(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    code, lines = run_check(home)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "ok    Feishu tenant token",
        "ok    Feishu long-connection endpoint",
        "ok    LLM API",
        "ok    model alpha",
        "ok    model beta",
    ]


def test_a_model_the_provider_does_not_offer_fails_and_names_the_fix(home: Home, sims: Simulators) -> None:
    sims.llm.set_behaviour("beta", "unknown")
    write_profile(home, "p", sims, models=("alpha", "beta", "gpt-nonexistent"))
    code, lines = run_check(home)
    assert code == 1
    assert "ok    model alpha: offered" in lines
    failed = [line for line in lines if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in failed] == ["FAIL  model beta", "FAIL  model gpt-nonexistent"]
    assert all("fix llm.models" in line for line in failed)


def test_refused_credentials_and_unreachable_llm_fail_without_showing_secrets(home: Home) -> None:
    with Simulators(
        feishu={"app_id": unique_app_id(), "app_secret": "another-secret"}, llm={"api_key": "another-key"}
    ) as sims:
        write_profile(home, "p", sims)
        code, lines = run_check(home)
    assert code == 1
    text = "\n".join(lines)
    assert "FAIL  Feishu tenant token: refused (code 10014" in text
    assert "FAIL  Feishu long-connection endpoint: refused" in text
    assert "FAIL  LLM API: HTTP 401: the API key is refused" in text
    assert FEISHU_SECRET not in text and LLM_KEY not in text
    # The simulators are gone now: nothing answers, each check fails within its deadline.
    code, lines = run_check(home)
    assert code == 1 and len([line for line in lines if line.startswith("FAIL")]) == len(lines) == 5


@pytest.mark.process
def test_cli_profile_check_exit_codes(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    ok = subprocess.run(
        [sys.executable, "-m", "tui", "profile", "check", "p"],
        env=gateway_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and ok.stdout.count("\n") == 5, ok.stdout + ok.stderr
    write_profile(home, "q", sims, models=("alpha", "nope"))
    bad = subprocess.run(
        [sys.executable, "-m", "tui", "profile", "check", "q"],
        env=gateway_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "FAIL  model nope" in bad.stdout and "Traceback" not in bad.stderr
