"""Loading a profile: its TOML read against the declared settings (`schema.py`), every failure one line.

Loading either yields a complete, checked `Profile` or raises `ConfigError` whose text is one line
naming the file, the key and what is expected — the CLI prints that line and exits 2, never a
traceback. A key or section nothing declares is refused first, naming the nearest valid one, so a
typo is never ignored (nor reported as the key it was meant to be, missing).
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .home import ConfigError, Home
from .schema import (
    SECTIONS,
    SETTINGS,
    AccessConfig,
    ExecutorConfig,
    FeishuConfig,
    Kind,
    LlmConfig,
    LogConfig,
    Profile,
    Setting,
    accepted_keys,
)
from .secrets import SecretMissing, read_secret, secret_source


def load_profile(home: Home, name: str, *, require_secrets: bool = True) -> Profile:
    """Read and check one profile; secrets are resolved here so a bad one fails at start-up.

    With `require_secrets=False` (for showing a profile) a missing, empty or too-open secret is
    not an error: it is listed in `Profile.secret_problems` with the command that fixes it.
    """
    path = home.profile_file(name)
    if not path.is_file():
        raise ConfigError(f"{path}: profile '{name}' not found; create it with: gatewatch profile init {name}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _reject_unknown(path, data)

    secret_problems: list[str] = []
    secret_sources: list[str] = []
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for setting in SETTINGS:
        table = data.get(setting.section, {})
        if setting.kind is Kind.SECRET and (source := secret_source(table, setting.name)):
            secret_sources.append(f"{setting.section}.{source}")
        try:
            values[setting.section][setting.name] = _read(path, table, setting)
        except SecretMissing as missing:
            if require_secrets:
                raise
            secret_problems.append(missing.fix)
            values[setting.section][setting.name] = ""

    llm = values["llm"]
    if not set(llm["vision_models"]) <= set(llm["models"]):
        raise ConfigError.expected(
            path, "llm.vision_models", "names from llm.models (the failover order decides among them)"
        )
    return Profile(
        name=name,
        path=path,
        feishu=FeishuConfig(**values["feishu"]),
        llm=LlmConfig(**llm),
        executor=ExecutorConfig(**values["executor"]),
        logging=LogConfig(**values["logging"]),
        access=AccessConfig(**values["access"], declared="access" in data),
        secret_problems=tuple(secret_problems),
        secret_sources=tuple(secret_sources),
        **values["gateway"],
    )


def _reject_unknown(path: Path, data: Mapping[str, Any]) -> None:
    """A typo must not be ignored silently: name the first unknown key and the nearest valid one."""
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]{_nearest(section, SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError.expected(path, f"[{section}]", "a table", table)
        valid = accepted_keys(section)
        for key in table:
            if key not in valid:
                raise ConfigError(f"{path}: unknown key {section}.{key}{_nearest(key, valid)}")


def _nearest(word: str, valid: typing.Iterable[str]) -> str:
    names = sorted(valid)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.75)
    if close:
        return f": did you mean {close[0]}?"
    return f": valid are {', '.join(names)}"


def _read(path: Path, table: Mapping[str, object], setting: Setting) -> Any:
    """One setting's value from its section's table: its default when absent, else checked."""
    if setting.kind is Kind.SECRET:
        return read_secret(path, setting.section, table, setting.name)
    if setting.name not in table:
        if setting.required:
            raise ConfigError.expected(path, setting.key, f"{setting.expectation} (missing)")
        return setting.default
    value = table[setting.name]
    if isinstance(value, str) and setting.about.normalise is not None:
        value = setting.about.normalise(value)
    parsed = _parse(path, setting, value)
    problem = setting.about.check(parsed) if setting.about.check is not None else None
    if problem:
        raise ConfigError.expected(path, setting.key, problem)
    return parsed


def _parse(path: Path, setting: Setting, value: object) -> Any:
    def wrong(key: str = setting.key, got: object = value) -> ConfigError:
        return ConfigError.expected(path, key, setting.expectation, got)

    kind, minimum = setting.kind, setting.about.minimum
    if kind is Kind.TEXT:
        if not isinstance(value, str) or not value.strip():
            raise wrong()
        return value
    if kind is Kind.FLAG:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind is Kind.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise wrong()
        return value
    if kind is Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and value < minimum):
            raise wrong()
        return float(value)
    if kind is Kind.CHOICE:
        if value not in setting.choices:
            raise wrong()
        return setting.enum(value) if setting.enum is not None else value
    if kind is Kind.NAMES:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise wrong()
        return tuple(value)
    if kind is Kind.POLICY_TABLE:
        # Its keys are data (chat ids), not settings: only its values are checked.
        if not isinstance(value, dict):
            raise wrong()
        choices = "one of " + ", ".join(f'"{c}"' for c in setting.choices)
        for chat, policy in value.items():
            if policy not in setting.choices:
                raise ConfigError.expected(path, f"{setting.key}.{chat}", choices, policy)
        return tuple(sorted(value.items()))
    raise AssertionError(f"{setting.key}: {kind} is read elsewhere")
