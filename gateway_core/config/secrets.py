"""How a profile's secrets are read, and how they are shown: never.

A secret setting (feishu.app_secret, llm.api_key) is never written in the profile itself —
profiles get copied, pasted and shown. The profile names its source instead: `<key>_env`, an
environment variable, or `<key>_file`, a file only its owner can read (mode 0600; launchd passes
no shell environment, so a launchd profile needs this form). Anything that goes wrong with a
source is one line with the command that fixes it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .home import ConfigError

MASK = "***"
UNAVAILABLE = "(not available, see below)"  # `profile show` lists why after the settings


class SecretMissing(ConfigError):
    """A secret's source is named correctly but gives nothing usable; `fix` says what to run."""

    def __init__(self, path: Path, key: str, problem: str, fix: str):
        super().__init__(f"{path}: {key}: {problem}; {fix}")
        self.fix = f"{key}: {problem}; {fix}"


def source_keys(name: str) -> tuple[str, str]:
    """The two keys that may name a secret's source: an environment variable, or a 0600 file."""
    return f"{name}_env", f"{name}_file"


def secret_source(table: Mapping[str, object], name: str) -> str | None:
    """The key a secret is read from: `<name>_env` if named (it wins), else `<name>_file`, else None."""
    return next((key for key in source_keys(name) if key in table), None)


def masked(value: str) -> str:
    """A secret as a person may see it: that it is there, never what it is."""
    return MASK if value else UNAVAILABLE


def read_secret(path: Path, section: str, table: Mapping[str, object], name: str) -> str:
    """The secret `section.name` of the profile at `path`, from `<name>_env` or `<name>_file`.

    Both sources may be named (the environment variable wins); an inline `<name>` is refused.
    """
    env_key, file_key = source_keys(name)
    if name in table:
        raise ConfigError.expected(
            path, f"{section}.{name}", f'no inline secret: use {env_key} = "VAR" or {file_key} = "path"'
        )
    source = secret_source(table, name)
    if source == env_key:
        var = _source(path, section, table, env_key)
        value = os.environ.get(var, "")
        if not value:
            raise SecretMissing(
                path,
                f"{section}.{env_key}",
                f"environment variable {var} is not set or empty",
                f"export {var}=… (or use {file_key})",
            )
        return value
    if source == file_key:
        return _read_private_file(path, f"{section}.{file_key}", _source(path, section, table, file_key))
    raise ConfigError.expected(
        path, f"{section}.{env_key}", f"{env_key} (environment variable name) or {file_key} (path to a 0600 file)"
    )


def _source(path: Path, section: str, table: Mapping[str, object], key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError.expected(path, f"{section}.{key}", "a non-empty string", value)
    return value


def _read_private_file(path: Path, key: str, name: str) -> str:
    """A relative path is relative to the profile's directory; a file others can read is refused."""
    secret_path = Path(name).expanduser()
    if not secret_path.is_absolute():
        secret_path = path.parent / secret_path
    try:
        info = secret_path.stat()
    except OSError:
        raise SecretMissing(
            path, key, f"secret file missing: {secret_path} does not exist", f"create it, chmod 600 {secret_path}"
        ) from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretMissing(
            path, key, f"{secret_path} is readable by others (mode {mode:04o})", f"run: chmod 600 {secret_path}"
        )
    try:
        value = secret_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretMissing(
            path,
            key,
            f"{secret_path} cannot be read ({type(exc).__name__})",
            f"check it is a text file you own, chmod 600 {secret_path}",
        ) from None
    if not value:
        raise SecretMissing(path, key, f"{secret_path} is empty", "write the secret into it, chmod 600")
    return value
