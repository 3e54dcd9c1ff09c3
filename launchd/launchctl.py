"""The one wrapper around the `launchctl` executable found on PATH.

Modern verbs only (bootstrap, bootout, kickstart, enable, disable, kill, print, list): the legacy
`load`/`unload` report success on almost every failure. The domain is always named explicitly,
and every known exit code becomes one line that says what happened and what to do. Apple calls
`print` output "NOT API", so it is parsed defensively: top-level `key = value` lines only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .service import ServiceError

# Exit codes observed from launchctl (see the launchd notes); launchd documents none of them.
NOT_LOADED_BOOTOUT = 3  # bootout of a job that is not loaded ("No such process")
IO_ERROR = 5  # already loaded, still tearing down, or a bad plist
IN_PROGRESS = (36, 37)  # teardown race
NO_GUI_DOMAIN = 112
NOT_FOUND = 113
DISABLED = 119
DOMAIN_UNSUPPORTED = 125
CALL_TIMEOUT = 30.0


class LaunchctlError(ServiceError):
    """A launchctl call failed; `str()` is one line saying what it means and what to do."""

    def __init__(self, code: int, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class JobState:
    """What `launchctl print` says about one job."""

    label: str
    domain: str
    state: str  # running | not running | spawn scheduled | xpcproxy | ...
    pid: int | None
    runs: int
    last_exit_code: int | None  # None: never exited
    last_signal: int | None  # set when the last run died by a signal
    path: str | None

    @property
    def running(self) -> bool:
        return self.state == "running" and self.pid is not None

    @property
    def looping(self) -> bool:
        """launchd keeps restarting it: several runs, the last one failed, and it is down now."""
        failed = self.last_signal is not None or (self.last_exit_code not in (None, 0))
        return self.runs >= 2 and failed and not self.running

    def describe_last_exit(self) -> str:
        if self.last_signal is not None:
            return f"killed by signal {self.last_signal}"
        if self.last_exit_code is None:
            return "never exited"
        return f"exit {self.last_exit_code}" + (
            f" ({GATEWAY_EXIT_MEANINGS[self.last_exit_code]})" if self.last_exit_code in GATEWAY_EXIT_MEANINGS else ""
        )

    def describe(self) -> str:
        where = f"{self.domain}/{self.label}"
        if self.running:
            head = f"{where}: running, PID {self.pid}"
        else:
            head = f"{where}: {self.state}"
        tail = f", {self.runs} run{'s' if self.runs != 1 else ''}, last {self.describe_last_exit()}"
        if self.looping:
            tail += " — launchd is restarting it repeatedly"
        return head + tail


# What the headless gateway's exit codes mean (gateway_core/headless.py), plus launchd's own 78.
GATEWAY_EXIT_MEANINGS = {
    0: "stopped cleanly",
    1: "Feishu refused the credentials",
    2: "bad profile configuration",
    3: "another owner holds the profile",
    78: "launchd could not start it: program or log path",
}


@dataclass(frozen=True)
class ListEntry:
    pid: int | None
    status: int  # last exit status; negative: killed by that signal
    label: str


def resolve_domain(
    environ: Mapping[str, str] | None = None, uid: int | None = None, console_uid: int | None = None
) -> str:
    """`gui/<uid>` with a GUI login session, `user/<uid>` otherwise (Homebrew's rule).

    `gui/` exists only while the user is logged in at the screen; over SSH with nobody at the
    screen it does not, but `user/<uid>` does. GATEWATCH_LAUNCHD_DOMAIN overrides the choice
    ("gui", "user", "system" or a full "gui/501"). The parameters default to this process's view.
    """
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    override = (env.get("GATEWATCH_LAUNCHD_DOMAIN") or "").strip()
    if override:
        if override == "system" or re.fullmatch(r"(gui|user)/\d+", override):
            return override
        if override in ("gui", "user"):
            return f"{override}/{uid}"
        raise LaunchctlError(
            0,
            f"GATEWATCH_LAUNCHD_DOMAIN={override!r} is not a launchd domain; use gui, user, gui/<uid> or user/<uid>",
        )
    if uid == 0:
        return "system"
    if env.get("SUDO_USER"):
        return f"user/{uid}"
    over_ssh = bool(env.get("SSH_CONNECTION") or env.get("SSH_TTY"))
    console_uid = _console_uid() if console_uid is None else console_uid
    if over_ssh and console_uid != uid:
        return f"user/{uid}"
    return f"gui/{uid}"


def _console_uid() -> int | None:
    """Who is logged in at the screen: the owner of /dev/console (root when nobody is)."""
    try:
        return os.stat("/dev/console").st_uid
    except OSError:
        return None


def other_domain(domain: str) -> str | None:
    kind, _, uid = domain.partition("/")
    return {"gui": f"user/{uid}", "user": f"gui/{uid}"}.get(kind)


def parse_print(text: str, label: str, domain: str) -> JobState:
    """Read the top-level fields of `launchctl print`; nested blocks repeat keys like `state`."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("\t") or line.startswith("\t\t"):
            continue
        key, sep, value = line[1:].partition(" = ")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return JobState(
        label=label,
        domain=domain,
        state=fields.get("state", "unknown"),
        pid=_leading_int(fields.get("pid")),
        runs=_leading_int(fields.get("runs")) or 0,
        last_exit_code=_leading_int(fields.get("last exit code")),
        last_signal=_trailing_int(fields.get("last terminating signal")),
        path=fields.get("path"),
    )


def _leading_int(value: str | None) -> int | None:
    match = re.match(r"-?\d+", value or "")
    return int(match.group()) if match else None


def _trailing_int(value: str | None) -> int | None:
    match = re.search(r"(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


def parse_list(text: str) -> list[ListEntry]:
    """`launchctl list`: a `PID\\tStatus\\tLabel` header, then rows (PID `-` when not running)."""
    entries = []
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        pid, status, label = parts
        entries.append(
            ListEntry(pid=int(pid) if pid.isdigit() else None, status=_leading_int(status) or 0, label=label)
        )
    return entries


def explain(code: int, verb: str, target: str, stderr: str) -> str:
    """One line per known exit code: what it means here and what to do next."""
    if code == NOT_LOADED_BOOTOUT:
        return f"{target} is not loaded (nothing to boot out)"
    if code == IO_ERROR:
        return (
            f"launchctl {verb} {target}: Input/output error (5): the job is already loaded, or still being "
            "torn down after a bootout (wait a few seconds and retry), or its plist is invalid "
            "(check it with: gatewatch launchd doctor)"
        )
    if code in IN_PROGRESS:
        return f"launchctl {verb} {target}: an earlier operation on the job is still in progress ({code}); retry in a moment"
    if code == NO_GUI_DOMAIN:
        return (
            f"launchctl {verb} {target}: there is no GUI session for this user (112); "
            "over SSH use the user domain: GATEWATCH_LAUNCHD_DOMAIN=user"
        )
    if code == NOT_FOUND:
        return f"{target} is not loaded; load it with: gatewatch launchd install"
    if code == DISABLED:
        return f"{target} is disabled (119); re-enable it with: launchctl enable {target}"
    if code == DOMAIN_UNSUPPORTED:
        return (
            f"launchctl {verb} {target}: the domain does not support this (125) — typically gui/ over SSH "
            "with nobody logged in at the screen; use the user domain: GATEWATCH_LAUNCHD_DOMAIN=user"
        )
    detail = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "no message")
    return f"launchctl {verb} {target} failed with exit code {code}: {detail[:200]}"


class Launchctl:
    """Calls launchctl for one domain; raises LaunchctlError with one clear line on failure."""

    def __init__(self, domain: str | None = None):
        self.domain = domain or resolve_domain()

    def target(self, label: str) -> str:
        return f"{self.domain}/{label}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        executable = shutil.which("launchctl")
        if executable is None:
            raise LaunchctlError(
                127, "launchctl is not on PATH: the launchd integration needs macOS (or the test simulator)"
            )
        try:
            return subprocess.run(
                [executable, *args],
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=CALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise LaunchctlError(
                124, f"launchctl {' '.join(args[:2])} did not answer within {CALL_TIMEOUT:.0f}s"
            ) from None

    def _check(
        self, result: subprocess.CompletedProcess[str], verb: str, target: str, ok: tuple[int, ...] = (0,)
    ) -> int:
        if result.returncode not in ok:
            raise LaunchctlError(result.returncode, explain(result.returncode, verb, target, result.stderr))
        return result.returncode

    def bootstrap(self, plist: Path) -> None:
        self._check(self._run("bootstrap", self.domain, str(plist)), "bootstrap", f"{self.domain} {plist}")

    def bootout(self, label: str) -> bool:
        """Unload (launchd SIGTERMs, then SIGKILLs after ExitTimeOut). False: it was not loaded.

        It returns before the job is gone: poll `print_job` until it reports None.
        """
        target = self.target(label)
        code = self._check(self._run("bootout", target), "bootout", target, ok=(0, NOT_LOADED_BOOTOUT, NOT_FOUND))
        return code == 0

    def kickstart(self, label: str, kill: bool = False) -> int | None:
        """Start the job now (`-k`: kill the running instance first); returns the PID if known."""
        target = self.target(label)
        args = ["kickstart", "-p"] + (["-k"] if kill else []) + [target]
        result = self._run(*args)
        self._check(result, "kickstart", target)
        return _leading_int(result.stdout.strip())

    def enable(self, label: str) -> None:
        target = self.target(label)
        self._check(self._run("enable", target), "enable", target)

    def disable(self, label: str) -> None:
        target = self.target(label)
        self._check(self._run("disable", target), "disable", target)

    def kill(self, signal_name: str, label: str) -> None:
        target = self.target(label)
        self._check(self._run("kill", signal_name, target), "kill", target)

    def print_job(self, label: str) -> JobState | None:
        """The job's state, or None when it is not loaded in this domain."""
        target = self.target(label)
        result = self._run("print", target)
        if result.returncode in (NOT_FOUND, NO_GUI_DOMAIN, DOMAIN_UNSUPPORTED):
            return None
        self._check(result, "print", target)
        return parse_print(result.stdout, label, self.domain)

    def list_jobs(self) -> list[ListEntry]:
        result = self._run("list")
        self._check(result, "list", self.domain)
        return parse_list(result.stdout)


def find_job(label: str) -> tuple[Launchctl, JobState | None]:
    """Probe the chosen domain, then the other one (a job loaded from a GUI session is seen over
    SSH only in gui/, and vice versa); returns the wrapper for the domain where it was found."""
    primary = Launchctl()
    state = primary.print_job(label)
    if state is not None or "GATEWATCH_LAUNCHD_DOMAIN" in os.environ:
        return primary, state
    alternative = other_domain(primary.domain)
    if alternative:
        secondary = Launchctl(alternative)
        found = secondary.print_job(label)
        if found is not None:
            return secondary, found
    return primary, None
