"""The LaunchAgent for one profile: rendered with plistlib, validated by reading it back.

The incident's plist ran `hermes gateway start --replace` under KeepAlive: every manual restart
killed launchd's process and launchd answered with a new one. Ours runs the gateway itself (so
launchd's PID is the gateway's), never with `--replace`, restarts it only after a failure, and
carries no secret: a plist is world-readable and gets copied around.
"""

from __future__ import annotations

import math
import os
import plistlib
import sys
import tempfile
import xml.parsers.expat
from pathlib import Path
from typing import Any

from gateway_core.config import Home, check_profile_name

DEFAULT_PREFIX = "ai.gatewatch.gateway"
DEFAULT_THROTTLE_INTERVAL = 10
# Time on top of the drain budget for closing the Feishu socket and flushing logs before launchd
# escalates its SIGTERM to SIGKILL.
EXIT_TIMEOUT_MARGIN = 5
# launchd's own PATH is only /usr/bin:/bin:/usr/sbin:/sbin; Homebrew tools live elsewhere.
SYSTEM_PATH = ("/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")
ALLOWED_ENVIRONMENT = ("GATEWATCH_HOME", "PATH", "PYTHONUNBUFFERED")


class PlistError(Exception):
    """A plist cannot be read or written; the text is one line naming the file."""


def agents_dir_default() -> Path:
    """Where per-user LaunchAgents live; overridable for tests and unusual setups."""
    override = os.environ.get("GATEWATCH_LAUNCH_AGENTS_DIR")
    return Path(override).expanduser() if override else Path.home() / "Library" / "LaunchAgents"


def job_label(profile: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}.{check_profile_name(profile)}"


def plist_path(agents_dir: Path, profile: str, prefix: str = DEFAULT_PREFIX) -> Path:
    """launchd expects the file to be named after the Label."""
    return agents_dir / f"{job_label(profile, prefix)}.plist"


def stdout_path(home: Home, profile: str) -> Path:
    return home.logs / f"launchd-{check_profile_name(profile)}.out.log"


def stderr_path(home: Home, profile: str) -> Path:
    """The headless runner's one-line status messages land here (start, connect, stop, refusal)."""
    return home.logs / f"launchd-{check_profile_name(profile)}.err.log"


def gateway_program_arguments(profile: str) -> list[str]:
    """This interpreter running the gateway itself: no shell in between, no `--replace`."""
    return [os.path.abspath(sys.executable), "-m", "gateway_core", "run", "--headless", "--profile", profile]


def exit_timeout_for(drain_timeout: float) -> int:
    """launchd must wait for the drain to finish before it SIGKILLs the gateway."""
    return int(math.ceil(drain_timeout)) + EXIT_TIMEOUT_MARGIN


def launchd_path_variable() -> str:
    entries = [os.path.dirname(os.path.abspath(sys.executable)), *SYSTEM_PATH]
    return ":".join(dict.fromkeys(entries))


def render_agent(
    home: Home,
    profile: str,
    *,
    drain_timeout: float,
    prefix: str = DEFAULT_PREFIX,
    throttle_interval: int = DEFAULT_THROTTLE_INTERVAL,
) -> dict[str, Any]:
    """The LaunchAgent dictionary for one profile (our rules, in one place)."""
    root = home.root.expanduser().absolute()
    absolute_home = Home(root)
    return {
        "Label": job_label(profile, prefix),
        "ProgramArguments": gateway_program_arguments(profile),
        "RunAtLoad": True,
        # Restart after a crash or a non-zero exit; a clean exit 0 (SIGTERM, drained) stays down.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": int(throttle_interval),
        "ExitTimeOut": exit_timeout_for(drain_timeout),
        "WorkingDirectory": str(root),
        "StandardOutPath": str(stdout_path(absolute_home, profile)),
        "StandardErrorPath": str(stderr_path(absolute_home, profile)),
        "EnvironmentVariables": {
            "PATH": launchd_path_variable(),
            "GATEWATCH_HOME": str(root),
            "PYTHONUNBUFFERED": "1",
        },
        "ProcessType": "Background",
    }


def read_plist(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            data = plistlib.load(fp)
    except FileNotFoundError:
        raise PlistError(f"{path}: no such file") from None
    except (
        plistlib.InvalidFileException,
        xml.parsers.expat.ExpatError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        OSError,
    ) as exc:  # a hand-edited file can fail anywhere
        raise PlistError(f"{path}: does not parse as a property list ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise PlistError(f"{path}: top level is not a dictionary")
    return data


def write_plist(path: Path, data: dict[str, Any]) -> None:
    """Write atomically with mode 0644, and only after the bytes read back as the same data."""
    try:
        payload = plistlib.dumps(data, fmt=plistlib.FMT_XML, sort_keys=True)
    except (TypeError, OverflowError) as exc:
        raise PlistError(f"{path}: cannot be rendered: {exc}") from None
    if plistlib.loads(payload) != data:
        raise PlistError(f"{path}: rendered plist does not read back identically; nothing written")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if read_plist(path) != data:
        raise PlistError(f"{path}: written plist does not read back identically")
