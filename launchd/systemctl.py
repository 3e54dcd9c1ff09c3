"""The one wrapper around `systemctl --user` and `loginctl`, found on PATH.

State comes from `systemctl --user show -p …` (documented `Key=value` lines, stable across
versions), never from the human `status` output. Every failure becomes one line that says what it
means and what to do.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass

from .launchctl import GATEWAY_EXIT_MEANINGS
from .service import ServiceError

CALL_TIMEOUT = 60.0  # `stop` waits for the unit's TimeoutStopSec itself
NOT_INSTALLED = 5  # systemctl's LSB "program is not installed": unit not found / not loaded
# wait(2) si_code values systemd reports as ExecMainCode.
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
SHOWN = (
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainCode",
    "ExecMainStatus",
    "NRestarts",
    "Result",
    "FragmentPath",
    "UnitFileState",
    "NeedDaemonReload",
    "TimeoutStopUSec",
)


class SystemctlError(ServiceError):
    """A systemctl/loginctl call failed; `str()` is one line saying what it means and what to do."""


@dataclass(frozen=True)
class UnitState:
    """What `systemctl --user show` says about one unit."""

    unit: str
    load_state: str  # loaded | not-found | bad-setting | error | masked
    active_state: str  # active | activating | deactivating | inactive | failed
    sub_state: str  # running | auto-restart | dead | failed | stop-sigterm | ...
    pid: int | None
    restarts: int
    exit_code: int | None  # ExecMainStatus when the last run exited
    last_signal: int | None  # ExecMainStatus when the last run was killed
    result: str  # success | exit-code | signal | core-dump | timeout | start-limit-hit | ...
    path: str | None
    unit_file_state: str
    need_daemon_reload: bool
    timeout_stop: float | None

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "deactivating") and self.pid is not None

    @property
    def last_exit_code(self) -> int | None:
        return self.exit_code

    @property
    def looping(self) -> bool:
        """systemd is restarting it (or gave up doing so): it failed again and again."""
        if self.result == "start-limit-hit":
            return True
        failed = self.result not in ("success", "")
        return self.restarts >= 1 and failed and not self.running

    def describe_last_exit(self) -> str:
        if self.last_signal is not None:
            return f"killed by signal {self.last_signal}"
        if self.exit_code is None:
            return "never exited"
        meaning = GATEWAY_EXIT_MEANINGS.get(self.exit_code) if self.exit_code != 78 else None
        return f"exit {self.exit_code}" + (f" ({meaning})" if meaning else "")

    def describe(self) -> str:
        head = f"{self.unit}: {self.active_state} ({self.sub_state})"
        if self.running:
            head += f", PID {self.pid}"
        tail = f", {self.restarts} restart{'s' if self.restarts != 1 else ''}, last {self.describe_last_exit()}"
        if self.result == "start-limit-hit":
            tail += " — systemd gave up restarting it (start limit hit)"
        elif self.looping:
            tail += " — systemd is restarting it repeatedly"
        return head + tail


def parse_show(text: str, unit: str) -> UnitState:
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    code = _int(fields.get("ExecMainCode"))
    status = _int(fields.get("ExecMainStatus"))
    pid = _int(fields.get("MainPID"))
    ran = code in (CLD_EXITED, CLD_KILLED, CLD_DUMPED)
    timeout = _int(fields.get("TimeoutStopUSec"))
    return UnitState(
        unit=unit,
        load_state=fields.get("LoadState", "unknown"),
        active_state=fields.get("ActiveState", "unknown"),
        sub_state=fields.get("SubState", "unknown"),
        pid=pid or None,  # systemd says MainPID=0 when there is none
        restarts=_int(fields.get("NRestarts")) or 0,
        exit_code=status if ran and code == CLD_EXITED else None,
        last_signal=status if ran and code in (CLD_KILLED, CLD_DUMPED) else None,
        result=fields.get("Result", ""),
        path=fields.get("FragmentPath") or None,
        unit_file_state=fields.get("UnitFileState", ""),
        need_daemon_reload=fields.get("NeedDaemonReload") == "yes",
        timeout_stop=timeout / 1e6 if timeout is not None else None,
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def explain(code: int, verb: str, unit: str, stderr: str) -> str:
    """One line per failure: what it means here and what to do next."""
    detail = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "no message")
    if "Failed to connect to bus" in stderr or "XDG_RUNTIME_DIR" in stderr:
        return (
            f"systemctl --user {verb}: cannot reach your systemd user manager ({detail[:120]}); over SSH log in "
            f"again or set XDG_RUNTIME_DIR=/run/user/{os.getuid()}, and keep it after logout with: loginctl enable-linger"
        )
    if code == NOT_INSTALLED:
        return f"{unit} is not installed (systemd does not know it); install it with: gatewatch systemd install"
    if "start-limit" in stderr or "repeated too quickly" in stderr:
        return (
            f"systemd refused to start {unit}: it failed too often in a row (start limit); read "
            f"'journalctl --user -u {unit}', fix, then: systemctl --user reset-failed {unit}"
        )
    return f"systemctl --user {verb} {unit} failed with exit code {code}: {detail[:200]}"


def _run(executable_name: str, *args: str, timeout: float = CALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(executable_name)
    if executable is None:
        raise SystemctlError(
            f"{executable_name} is not on PATH: the systemd integration needs Linux with systemd (or the test simulator)"
        )
    try:
        return subprocess.run(
            [executable, *args],
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise SystemctlError(f"{executable_name} {' '.join(args[:3])} did not answer within {timeout:.0f}s") from None


class Systemctl:
    """`systemctl --user` for the calling user; raises SystemctlError with one clear line on failure."""

    def _call(self, verb: str, unit: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = _run("systemctl", "--user", verb, *args)
        if result.returncode != 0:
            raise SystemctlError(explain(result.returncode, verb, unit, result.stderr))
        return result

    def show(self, unit: str) -> UnitState | None:
        """The unit's state, or None when systemd has never heard of it."""
        args = [f"-p{name}" for name in SHOWN]
        state = parse_show(self._call("show", unit, *args, unit).stdout, unit)
        if state.load_state == "not-found" and state.active_state in ("inactive", "unknown"):
            return None
        return state

    def start(self, unit: str) -> None:
        self._call("start", unit, unit)

    def stop(self, unit: str) -> None:
        """Blocks until the unit is down: SIGTERM, SIGKILL after TimeoutStopSec."""
        self._call("stop", unit, unit)

    def restart(self, unit: str) -> None:
        self._call("restart", unit, unit)

    def enable(self, unit: str) -> None:
        self._call("enable", unit, unit)

    def disable(self, unit: str) -> None:
        self._call("disable", unit, unit)

    def reset_failed(self, unit: str) -> None:
        """Forget an earlier failure (and the start-limit count) so a start is not refused.

        A unit systemd has not loaded has nothing to forget: that answer is not an error here."""
        result = _run("systemctl", "--user", "reset-failed", unit)
        if result.returncode != 0 and "not loaded" not in result.stderr:
            raise SystemctlError(explain(result.returncode, "reset-failed", unit, result.stderr))

    def daemon_reload(self) -> None:
        self._call("daemon-reload", "the user manager")


def linger_enabled(user: str | None = None) -> bool | None:
    """`loginctl show-user USER -p Linger`: whether the user manager outlives the last session.

    None when loginctl cannot tell (no loginctl, or the user has no session and no linger)."""
    user = user or getpass.getuser()
    try:
        result = _run("loginctl", "show-user", user, "-p", "Linger")
    except SystemctlError:
        return None
    if result.returncode != 0:
        return None
    for line in result.stdout.splitlines():
        if line.startswith("Linger="):
            return line.partition("=")[2].strip() == "yes"
    return None


def enable_linger(user: str | None = None) -> None:
    user = user or getpass.getuser()
    result = _run("loginctl", "enable-linger", user)
    if result.returncode != 0:
        detail = next((ln.strip() for ln in result.stderr.splitlines() if ln.strip()), "no message")
        raise SystemctlError(
            f"loginctl enable-linger {user} failed ({detail[:160]}); ask an administrator to run it for you"
        )
