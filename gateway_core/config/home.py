"""Where gatewatch keeps its files: the tree under $GATEWATCH_HOME, one set of files per profile.

A profile name becomes part of every path here, so it is checked before any path is made.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(Exception):
    """A profile cannot be used; the message is one line that says what to fix."""

    @classmethod
    def expected(cls, path: Path, key: str, expectation: str, got: object = None) -> "ConfigError":
        """The one form of a bad value: `<file>: <section.key>: expected <what>[, got <type>]`."""
        tail = "" if got is None else f", got {type(got).__name__}"
        return cls(f"{path}: {key}: expected {expectation}{tail}")


@dataclass(frozen=True)
class Home:
    """The directory tree under $GATEWATCH_HOME (default ~/.gatewatch)."""

    root: Path

    @classmethod
    def from_env(cls) -> "Home":
        return cls(Path(os.environ.get("GATEWATCH_HOME") or Path.home() / ".gatewatch").expanduser())

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def profile_file(self, name: str) -> Path:
        return self.profiles / f"{check_profile_name(name)}.toml"

    def log_file(self, name: str) -> Path:
        return self.logs / f"gateway-{check_profile_name(name)}.log"

    def lock_file(self, name: str) -> Path:
        return self.run / f"{check_profile_name(name)}.lock"

    def socket_file(self, name: str) -> Path:
        return self.run / f"{check_profile_name(name)}.sock"

    def state_file(self, name: str) -> Path:
        """The profile's inbox journal (SQLite): unanswered messages, dedup and chat history."""
        return self.state / f"{check_profile_name(name)}.db"

    def secret_file(self, name: str, section: str) -> Path:
        """Where `profile init` points a profile's secret for one section (feishu, llm)."""
        return self.secrets / f"{check_profile_name(name)}.{section}"

    def ensure_dirs(self) -> None:
        """Create the tree; run/ is private because it holds the control socket."""
        for path in (self.root, self.profiles, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run, 0o700)

    def profile_names(self) -> list[str]:
        if not self.profiles.is_dir():
            return []
        return sorted(p.stem for p in self.profiles.glob("*.toml"))


def check_profile_name(name: str) -> str:
    """A profile name becomes a file name: refuse anything that could walk out of the home."""
    if not PROFILE_NAME.match(name or ""):
        raise ConfigError(f"profile name {name!r} is not valid: use letters, digits, '.', '_' or '-' (at most 64)")
    return name
