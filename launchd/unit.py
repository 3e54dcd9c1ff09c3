"""The systemd user unit for one profile: rendered from data, validated by reading it back.

The same rules as the LaunchAgent (plist.py): the gateway itself is the main process (no shell,
no `--replace`), restarted only after a failure, stopped with SIGTERM and given the drain budget
before systemd escalates, and no secret in the file. A unit is data — sections of keys, each key
with one or more values — and the text is made from it here, with systemd's own quoting: every
`ExecStart` word C-escaped inside double quotes when it needs to be, `%` doubled (systemd expands
specifiers like `%h` on the whole line first) and `$` doubled (then it substitutes variables).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Union

from gateway_core.config import Home, check_profile_name

from .plist import exit_timeout_for, gateway_program_arguments, launchd_path_variable

UNIT_PREFIX = "gatewatch-"
DEFAULT_RESTART_SEC = 10
# Exit codes after which a restart cannot help (gateway_core/headless.py): 2 a bad profile, 3
# another owner holds the profile. systemd, unlike launchd, can be told not to loop on them.
RESTART_PREVENT_EXIT_STATUS = (2, 3)
# Set in the unit so the gateway can record which unit runs it: systemd passes no variable naming
# the unit (launchd's equivalent is XPC_SERVICE_NAME, which it sets itself).
UNIT_VARIABLE = "GATEWATCH_SYSTEMD_UNIT"
ALLOWED_ENVIRONMENT = ("GATEWATCH_HOME", "PATH", "PYTHONUNBUFFERED", UNIT_VARIABLE)

Value = Union[str, int, list[str], dict[str, str]]
Unit = dict[str, dict[str, Value]]


class UnitError(Exception):
    """A unit file cannot be read or written; one line naming the file."""


def unit_dir_default() -> Path:
    """Where systemd --user reads units written by the user; overridable for tests."""
    override = os.environ.get("GATEWATCH_SYSTEMD_UNIT_DIR")
    if override:
        return Path(override).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def unit_name(profile: str) -> str:
    return f"{UNIT_PREFIX}{check_profile_name(profile)}.service"


def unit_path(unit_dir: Path, profile: str) -> Path:
    return unit_dir / unit_name(profile)


def render_unit(home: Home, profile: str, *, drain_timeout: float, restart_sec: int = DEFAULT_RESTART_SEC) -> Unit:
    """The unit for one profile as data (our rules, in one place)."""
    root = home.root.expanduser().absolute()
    name = unit_name(profile)
    return {
        "Unit": {
            "Description": f"gatewatch gateway for profile {profile}",
            # A crash loop that outruns RestartSec stops here instead of spinning; status shows it.
            "StartLimitIntervalSec": 60,
            "StartLimitBurst": 5,
        },
        "Service": {
            # exec: `systemctl start` fails when the program cannot be run at all.
            "Type": "exec",
            "ExecStart": gateway_program_arguments(profile),
            "WorkingDirectory": str(root),
            "Environment": {
                "PATH": launchd_path_variable(),
                "GATEWATCH_HOME": str(root),
                "PYTHONUNBUFFERED": "1",
                UNIT_VARIABLE: name,
            },
            # Restart after a crash or a non-zero exit; a clean exit 0 (SIGTERM, drained) stays down.
            "Restart": "on-failure",
            "RestartSec": int(restart_sec),
            "RestartPreventExitStatus": " ".join(str(code) for code in RESTART_PREVENT_EXIT_STATUS),
            "KillSignal": "SIGTERM",
            "TimeoutStopSec": exit_timeout_for(drain_timeout),
            # The journal gets stdout/stderr (the headless runner's status lines); the gateway
            # writes its own log file as well.
            "StandardOutput": "journal",
            "StandardError": "journal",
            "SyslogIdentifier": name.removesuffix(".service"),
        },
        "Install": {"WantedBy": "default.target"},
    }


# ---------------------------------------------------------------- quoting


_BARE_WORD = re.compile(r"[A-Za-z0-9_@%$+=:,./-]+")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_specifiers(text: str) -> str:
    """systemd expands `%x` specifiers in most settings; a literal % is written %%."""
    return text.replace("%", "%%")


def quote_exec_word(word: str) -> str:
    """One ExecStart word: specifiers and variables escaped, then quoted only when it must be."""
    escaped = escape_specifiers(word).replace("$", "$$")
    if word == ";":
        return "\\;"  # a lone semicolon would separate commands
    if _BARE_WORD.fullmatch(escaped):
        return escaped
    return '"' + "".join(_C_ESCAPES.get(c, c) for c in escaped) + '"'


def format_exec(args: list[str]) -> str:
    return " ".join(quote_exec_word(a) for a in args)


def _quote_assignment(name: str, value: str) -> str:
    """One Environment= assignment: specifiers escaped, C-quoted when it holds blanks or quotes."""
    text = escape_specifiers(f"{name}={value}")
    if _BARE_WORD.fullmatch(text):
        return text
    return '"' + "".join(_C_ESCAPES.get(c, c) for c in text) + '"'


_UNESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def split_words(line: str) -> list[str]:
    """systemd's word splitting: blanks separate, '…' and "…" quote, C escapes everywhere."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            current.append(_UNESCAPES.get(nxt, nxt))
            in_word, i = True, i + 2
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                current.append(c)
        elif c in "\"'":
            quote, in_word = c, True
        elif c in " \t":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(c)
            in_word = True
        i += 1
    if quote:
        raise ValueError("unbalanced quotes")
    if in_word:
        words.append("".join(current))
    return words


def parse_exec(value: str) -> list[str]:
    """ExecStart words as the process will see them (specifier %% and $$ undone; others kept)."""
    words = split_words(value.replace("%%", "\0"))
    return [w.replace("\0", "%").replace("$$", "$") for w in words]


def parse_environment(values: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values:
        for word in split_words(value.replace("%%", "\0")):
            name, sep, rest = word.partition("=")
            if sep:
                env[name.replace("\0", "%")] = rest.replace("\0", "%")
    return env


# ---------------------------------------------------------------- text


def format_unit(unit: Unit) -> str:
    lines: list[str] = ["# Written by gatewatch; `gatewatch systemd install` rewrites it."]
    for section, keys in unit.items():
        lines += ["", f"[{section}]"]
        for key, value in keys.items():
            if isinstance(value, dict):
                lines += [f"Environment={_quote_assignment(k, v)}" for k, v in value.items()]
            elif isinstance(value, list):
                lines.append(f"{key}={format_exec(value)}")
            else:
                text = str(value)
                if "\n" in text:
                    raise UnitError(f"{key} cannot hold a newline")
                lines.append(f"{key}={escape_specifiers(text)}")
    return "\n".join(lines) + "\n"


RawUnit = list[tuple[str, str, str]]  # (section, key, raw value) in file order


def parse_unit_text(text: str) -> RawUnit:
    """Sections and `Key=value` lines, comments and continuations handled; values kept raw."""
    entries: RawUnit = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or not section:
            raise ValueError(f"line {raw.strip()[:40]!r} is not Key=value inside a [Section]")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(raw: RawUnit, section: str, key: str) -> list[str]:
    """Every value given to a key; an empty assignment resets the list, as systemd does."""
    found: list[str] = []
    for s, k, v in raw:
        if s == section and k == key:
            found = [] if v == "" else [*found, v]
    return found


def last_value(raw: RawUnit, section: str, key: str) -> str | None:
    found = values(raw, section, key)
    return found[-1] if found else None


def unit_from_raw(raw: RawUnit, like: Unit) -> Unit:
    """Read back the keys `like` has, decoded into the same shapes (to compare with what we wrote)."""
    unit: Unit = {}
    for section, keys in like.items():
        unit[section] = {}
        for key, value in keys.items():
            if isinstance(value, dict):
                unit[section][key] = parse_environment(values(raw, section, "Environment"))
                continue
            text = last_value(raw, section, key)
            if text is None:
                continue
            if isinstance(value, list):
                unit[section][key] = parse_exec(text)
            elif isinstance(value, int):
                unit[section][key] = int(text) if text.isdigit() else text
            else:
                unit[section][key] = text.replace("%%", "%")
    return unit


def read_unit(path: Path) -> RawUnit:
    try:
        return parse_unit_text(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnitError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnitError(f"{path}: does not parse as a unit file ({exc})") from None


def write_unit_text(path: Path, text: str) -> None:
    """Atomically, mode 0644 (systemd reads it; it holds no secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_unit(path: Path, unit: Unit) -> None:
    """Write only what reads back as the same data."""
    text = format_unit(unit)
    if unit_from_raw(parse_unit_text(text), unit) != unit:
        raise UnitError(f"{path}: rendered unit does not read back identically; nothing written")
    write_unit_text(path, text)
    if unit_from_raw(read_unit(path), unit) != unit:
        raise UnitError(f"{path}: written unit does not read back identically")
