"""Profiles: bad input is one line naming file, key and expectation; secrets never shown."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from gateway_core.config import ConfigError, Home, describe_profile, load_profile, write_profile_template

GOOD = """
[feishu]
app_id = "cli_test"
app_secret_env = "GW_TEST_FEISHU_SECRET"
[llm]
base_url = "http://127.0.0.1:9/v1"
api_key_file = "llm.key"
models = ["alpha", "beta"]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("GW_TEST_FEISHU_SECRET", "feishu-secret-value")
    home = Home(tmp_path / "home")
    home.ensure_dirs()
    key = home.profiles / "llm.key"
    key.write_text("llm-secret-value\n")
    key.chmod(0o600)
    return home


def write(home: Home, text: str, name: str = "p") -> Path:
    path = home.profile_file(name)
    path.write_text(text)
    return path


def test_good_profile_loads_with_secrets_resolved(home: Home) -> None:
    write(home, GOOD)
    profile = load_profile(home, "p")
    assert profile.feishu.app_secret == "feishu-secret-value"
    assert profile.llm.api_key == "llm-secret-value"
    assert profile.secret_sources == ("feishu.app_secret_env", "llm.api_key_file")
    assert profile.llm.models == ("alpha", "beta")
    assert profile.executor.probe_interval == 2.0
    assert (profile.max_in_flight, profile.llm.idle_timeout) == (256, 30.0)
    assert (profile.feishu.chat_replies_per_second, profile.feishu.app_replies_per_second) == (5, 50)
    assert (profile.llm.vision_models, profile.llm.transcribe_model, profile.feishu.typing_indicator) == (
        (),
        None,
        True,
    )
    assert (profile.llm.max_image_bytes, profile.llm.max_file_bytes) == (10 * 1024 * 1024, 256 * 1024)
    shown = describe_profile(profile)
    assert shown["feishu.app_secret"] == "***" and shown["llm.api_key"] == "***"
    assert "secret-value" not in repr(profile) and "secret-value" not in str(shown)


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda t: t.replace('models = ["alpha", "beta"]', "models = []"), "llm.models: expected a non-empty list"),
        (lambda t: t.replace('app_id = "cli_test"\n', ""), "feishu.app_id: expected a non-empty string (missing)"),
        (lambda t: t + "[executor]\nmax_workers = 'many'\n", "executor.max_workers: expected an integer >= 2"),
        (lambda t: t.replace("app_secret_env", "app_secret"), "feishu.app_secret: expected no inline secret"),
        (lambda t: t.replace("GW_TEST_FEISHU_SECRET", "GW_TEST_UNSET_VAR"), "GW_TEST_UNSET_VAR is not set"),
        (lambda t: t + "[broken", "not valid TOML"),
        (lambda t: t.replace("http://127.0.0.1:9/v1", "ftp://x"), "llm.base_url: expected an http(s):// URL"),
        (lambda t: t + "[gateway]\nmax_in_flight = 0\n", "gateway.max_in_flight: expected an integer >= 1"),
        (lambda t: t.replace("[llm]\n", "[llm]\nidle_timeout = -1\n"), "llm.idle_timeout: expected a number >= 0.1"),
        (
            lambda t: t.replace("[feishu]\n", "[feishu]\napp_replies_per_second = 2.5\n"),
            "feishu.app_replies_per_second: expected an integer >= 1",
        ),
        (
            lambda t: t.replace("[llm]\n", '[llm]\nvision_models = ["omega"]\n'),
            "llm.vision_models: expected names from llm.models",
        ),
        (lambda t: t.replace("[llm]\n", "[llm]\nmax_file_bytes = 10\n"), "llm.max_file_bytes: expected an integer"),
        (lambda t: t.replace("[feishu]\n", "[feishu]\ntyping_indicator = 1\n"), "feishu.typing_indicator"),
    ],
)
def test_bad_profile_names_file_key_and_expectation(home: Home, mutation: Callable[[str], str], expected: str) -> None:
    path = write(home, mutation(GOOD))
    with pytest.raises(ConfigError) as info:
        load_profile(home, "p")
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_secret_file_readable_by_others_is_refused(home: Home) -> None:
    (home.profiles / "llm.key").chmod(0o644)
    write(home, GOOD)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\); run: chmod 600"):
        load_profile(home, "p")


def test_profile_name_cannot_escape_home(home: Home) -> None:
    with pytest.raises(ConfigError, match="not valid"):
        load_profile(home, "../etc/passwd")


def test_template_is_a_loadable_starting_point(home: Home) -> None:
    path = write_profile_template(home, "fresh")
    # Its secrets live under this GATEWATCH_HOME, not a hard-coded ~/.gatewatch.
    with pytest.raises(ConfigError, match=r"secret file missing: .*secrets/fresh.feishu does not exist; create it"):
        load_profile(home, "fresh")
    assert str(home.secrets / "fresh.feishu") in path.read_text()
    for name in ("fresh.feishu", "fresh.llm"):
        (home.secrets / name).write_text("s3cret\n")
        (home.secrets / name).chmod(0o600)
    assert load_profile(home, "fresh").llm.models[0] == "gpt-4o-mini"
    with pytest.raises(ConfigError, match="already exists"):
        write_profile_template(home, "fresh")
    assert path.read_text().startswith("# gatewatch profile 'fresh'")


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda t: t + "[executor]\nmax_wrokers = 8\n", "unknown key executor.max_wrokers: did you mean max_workers?"),
        (lambda t: t + "[extra]\nx = 1\n", "unknown section [extra]: valid are"),
        (lambda t: t + "[loging]\nlevel = 'INFO'\n", "unknown section [loging]: did you mean logging?"),
        (lambda t: t.replace("[llm]\n", "[llm]\nmodel = 'x'\n"), "unknown key llm.model: did you mean models?"),
        # Both sources of one secret named: both are valid keys (the env one wins), not a typo.
    ],
)
def test_unknown_keys_and_sections_are_refused_with_the_nearest_valid_one(
    home: Home, mutation: Callable[[str], str], expected: str
) -> None:
    path = write(home, mutation(GOOD))
    with pytest.raises(ConfigError) as info:
        load_profile(home, "p")
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_every_key_the_template_mentions_is_known(home: Home) -> None:
    """The commented keys of the template, uncommented, load: the valid set is what the loader reads."""
    path = write_profile_template(home, "full")
    for name in ("full.feishu", "full.llm"):
        (home.secrets / name).write_text("s3cret\n")
        (home.secrets / name).chmod(0o600)
    text = path.read_text()
    lines = []
    for line in text.splitlines():
        stripped = line.removeprefix("# ")
        # Uncomment `# key = value` settings, but not the alternative secret sources (one is enough).
        if line.startswith("# ") and " = " in stripped and not stripped.split(" ")[0].endswith("_env"):
            line = stripped
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    assert load_profile(home, "full").executor.max_workers == 8


@pytest.mark.process
def test_cli_profile_show_works_before_the_secrets_exist(home: Home) -> None:
    write_profile_template(home, "fresh")
    (home.secrets / "fresh.llm").write_text("s3cret\n")
    (home.secrets / "fresh.llm").chmod(0o644)
    env = dict(os.environ, GATEWATCH_HOME=str(home.root))
    result = subprocess.run(
        [sys.executable, "-m", "tui", "profile", "show", "fresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "llm.models" in result.stdout and "gpt-4o-mini" in result.stdout
    feishu_file, llm_file = home.secrets / "fresh.feishu", home.secrets / "fresh.llm"
    assert f"secret file missing: {feishu_file} does not exist; create it, chmod 600 {feishu_file}" in result.stdout
    assert f"readable by others (mode 0644); run: chmod 600 {llm_file}" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.process
def test_cli_bad_config_exits_2_with_one_line(home: Home) -> None:
    write(home, GOOD.replace('models = ["alpha", "beta"]', "models = 3"))
    env = dict(os.environ, GATEWATCH_HOME=str(home.root))
    result = subprocess.run(
        [sys.executable, "-m", "gateway_core", "run", "--headless", "--profile", "p"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "llm.models" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.process
def test_cli_profile_show_masks_secrets(home: Home) -> None:
    write(home, GOOD)
    env = dict(os.environ, GATEWATCH_HOME=str(home.root))
    result = subprocess.run(
        [sys.executable, "-m", "tui", "profile", "show", "p"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "***" in result.stdout and "secret-value" not in result.stdout
