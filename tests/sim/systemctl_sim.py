"""A `systemctl --user` (and `loginctl`) for tests: systemd's service semantics on real processes.

Run as `python -m tests.sim.systemctl_sim [--loginctl] ARGS...` through executable shims first on
PATH. Unit files are read from `$SYSTEMCTL_SIM_UNIT_DIR` (systemd reads ~/.config/systemd/user);
state lives in `$SYSTEMCTL_SIM_STATE/state.json` under the launchctl simulator's flock, and every
call is appended to `calls.log`. It parses unit files itself — not with launchd/unit.py — so a
quoting mistake there shows up as a wrong argv here.

`start` starts one detached monitor per active unit; the monitor spawns ExecStart (specifiers %%,
%n, %N, %h, %u expanded first, then words split with C escapes and quotes, then `$$`/`${VAR}`),
with the user manager's environment + Environment= + INVOCATION_ID, stdin /dev/null, a new
session, output to the "journal" (`journal/<unit>.log` in the state dir) or an `append:` file, in
WorkingDirectory. It applies Restart= (no / on-failure / on-abnormal / always; SIGHUP, SIGINT,
SIGTERM, SIGPIPE count as clean), RestartSec, RestartPreventExitStatus, StartLimitIntervalSec /
StartLimitBurst. `stop` sends KillSignal to the process group, SIGKILL after TimeoutStopSec, and
returns only when the unit is down. `show -p` prints the documented properties.

Exit codes are systemctl's: 5 unit not found / not loaded, 3 is-active of an inactive unit, 1 a
failed start (exec failed, start limit hit) or no bus (SYSTEMCTL_SIM_NO_BUS=1).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from .launchctl_sim import Failure, locked_state, log_call, process_alive, read_state

MANAGER_PATH = "/usr/local/bin:/usr/bin:/bin"
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}
CLD_EXITED, CLD_KILLED = 1, 2
EXIT_EXEC = 203  # systemd's exit status when the program could not be executed
MONITOR_STARTUP_TIMEOUT = 10.0
STOP_WAIT_MARGIN = 10.0


# ---------------------------------------------------------------- unit files


def state_dir() -> Path:
    value = os.environ.get("SYSTEMCTL_SIM_STATE")
    if not value:
        raise Failure(1, "systemctl simulator: SYSTEMCTL_SIM_STATE is not set")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def unit_dir() -> Path:
    return Path(os.environ["SYSTEMCTL_SIM_UNIT_DIR"])


UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "\\": "\\", '"': '"', "'": "'", ";": ";"}


def words(text: str) -> list[str]:
    """systemd's splitting: blanks separate words, '…' and "…" quote, C escapes anywhere."""
    out: list[str] = []
    cur, quote, started, i = "", "", False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += UNESCAPE.get(text[i + 1], text[i + 1])
            started, i = True, i + 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                cur += c
        elif c in "\"'":
            quote, started = c, True
        elif c.isspace():
            if started:
                out.append(cur)
            cur, started = "", False
        else:
            cur, started = cur + c, True
        i += 1
    if quote:
        raise Failure(1, "unbalanced quoting")
    if started:
        out.append(cur)
    return out


def expand_specifiers(text: str, name: str) -> str:
    table = {
        "%": "%",
        "n": name,
        "N": name.rsplit(".", 1)[0],
        "h": os.environ.get("HOME", "/"),
        "u": os.environ.get("USER", ""),
    }
    out, i = "", 0
    while i < len(text):
        if text[i] == "%":
            key = text[i + 1 : i + 2]
            if key not in table:
                raise Failure(1, f"unknown specifier %{key}")
            out, i = out + table[key], i + 2
        else:
            out, i = out + text[i], i + 1
    return out


def parse_file(path: Path) -> dict[str, Any]:
    """The settings the simulator acts on, from the unit file, systemd's way."""
    name = path.name
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entry = settings.setdefault((section, key.strip()), [])
        if value.strip() == "":
            entry.clear()
        else:
            entry.append(value.strip())

    def get(key: str, default: str | None = None, section: str = "Service") -> str | None:
        found = settings.get((section, key))
        return found[-1] if found else default

    environment: dict[str, str] = {}
    for value in settings.get(("Service", "Environment"), []):
        for word in words(expand_specifiers(value, name)):
            key, _, rest = word.partition("=")
            environment[key] = rest
    exec_start = get("ExecStart")
    if not exec_start:
        raise Failure(1, f"{name}: Service has no ExecStart= setting. Refusing.")
    prevent = (get("RestartPreventExitStatus") or "").split()
    return {
        "path": str(path),
        "mtime": path.stat().st_mtime_ns,
        "exec_start": expand_specifiers(exec_start, name),
        "environment": environment,
        "working_directory": expand_specifiers(get("WorkingDirectory") or "~", name),
        "restart": get("Restart", "no"),
        "restart_sec": float(get("RestartSec", "0.1") or 0.1),
        "prevent_exit": [int(p) for p in prevent if p.isdigit()],
        "prevent_signals": [int(getattr(signal, p)) for p in prevent if p.startswith("SIG")],
        "kill_signal": int(getattr(signal, get("KillSignal", "SIGTERM") or "SIGTERM")),
        "timeout_stop": float(get("TimeoutStopSec", "90") or 90),
        "stdout": get("StandardOutput", "journal"),
        "stderr": get("StandardError", "inherit"),
        "start_limit_interval": float(get("StartLimitIntervalSec", "10", section="Unit") or 10),
        "start_limit_burst": int(get("StartLimitBurst", "5", section="Unit") or 5),
        "installable": bool(settings.get(("Install", "WantedBy"))),
    }


def exec_argv(definition: dict[str, Any], environment: dict[str, str]) -> list[str]:
    """Words, then `$$` -> `$` and `${VAR}`/`$VAR` from the unit's environment."""
    argv = []
    for word in words(definition["exec_start"]):
        if word.startswith("$") and not word.startswith("$$") and not word.startswith("${"):
            argv += environment.get(word[1:], "").split()
            continue
        out, i = "", 0
        while i < len(word):
            if word.startswith("$$", i):
                out, i = out + "$", i + 2
            elif word.startswith("${", i) and "}" in word[i:]:
                end = word.index("}", i)
                out, i = out + environment.get(word[i + 2 : end], ""), end + 1
            else:
                out, i = out + word[i], i + 1
        argv.append(out)
    argv[0] = argv[0].lstrip("-@:+!")
    return argv


# ---------------------------------------------------------------- state


def new_record(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "definition": None,
        "enabled": False,
        "active_state": "inactive",
        "sub_state": "dead",
        "main_pid": 0,
        "exec_main_code": 0,
        "exec_main_status": 0,
        "n_restarts": 0,
        "result": "success",
        "monitor_pid": None,
        "stop_requested": False,
        "start_times": [],
        "invocation": "",
    }


def units(state: dict[str, Any]) -> dict[str, Any]:
    known: dict[str, Any] = state.setdefault("units", {})
    return known


def load(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The unit's record, loading its file on first use as systemd does; None when there is none."""
    record: dict[str, Any] | None = units(state).get(name)
    if record is not None and record["definition"] is not None:
        return record
    path = unit_dir() / name
    if not path.is_file():
        return None
    record = record or new_record(name)
    record["definition"] = parse_file(path)
    units(state)[name] = record
    return record


def start_limited(record: dict[str, Any]) -> bool:
    """StartLimitBurst starts within StartLimitIntervalSec: the next one is refused."""
    definition = record["definition"]
    now = time.time()
    record["start_times"] = [t for t in record["start_times"] if now - t < definition["start_limit_interval"]]
    return bool(len(record["start_times"]) >= definition["start_limit_burst"])


# ---------------------------------------------------------------- the per-unit monitor


class UnitGone(Exception):
    pass


class Monitor:
    """One detached process per active unit: it owns the main process and applies Restart=."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.child: subprocess.Popen[bytes] | None = None
        self.next_spawn_at: float | None = time.monotonic()
        self.stop_deadline: float | None = None
        self.stopping = self.killed = False
        self.flags: set[int] = set()

    def update(self, **changes: object) -> dict[str, Any]:
        with locked_state(self.root) as state:
            record = units(state).get(self.name)
            if record is None:
                raise UnitGone
            record.update(changes)
            return dict(record)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda n, _f: self.flags.add(n))
        try:
            self.update(monitor_pid=os.getpid())
            while self.step():
                select.select([wake_r], [], [], self.wait_time())
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
        except UnitGone:
            if self.child is not None:
                self.child.kill()
        finally:
            with contextlib.suppress(UnitGone):
                self.update(monitor_pid=None)

    def step(self) -> bool:
        """One turn; False when the unit is down for good and the monitor can go."""
        if {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} & self.flags:
            self.begin_stop()
        self.flags.clear()
        record = self.update()
        if record["stop_requested"]:
            self.begin_stop()
        if self.child is not None and self.child.poll() is not None:
            if not self.child_exited(record):
                return False
        now = time.monotonic()
        if self.stopping:
            if self.child is None:
                return False
            if not self.killed and self.stop_deadline is not None and now >= self.stop_deadline:
                self.signal_group(signal.SIGKILL)  # after TimeoutStopSec, as systemd does
                self.killed = True
        elif self.child is None and self.next_spawn_at is not None and now >= self.next_spawn_at:
            return self.spawn(record)
        return True

    def wait_time(self) -> float:
        now = time.monotonic()
        deadlines = [0.5]
        if self.stopping and not self.killed and self.stop_deadline is not None:
            deadlines.append(self.stop_deadline - now)
        if not self.stopping and self.child is None and self.next_spawn_at is not None:
            deadlines.append(self.next_spawn_at - now)
        return max(0.0, min(deadlines))

    def signal_group(self, signum: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signum)

    def begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.next_spawn_at = None
        record = self.update(stop_requested=True, active_state="deactivating", sub_state="stop-sigterm")
        if self.child is None:
            self.update(active_state="inactive", sub_state="dead", main_pid=0)
        else:
            definition = record["definition"]
            self.signal_group(definition["kill_signal"])
            self.stop_deadline = time.monotonic() + definition["timeout_stop"]

    def spawn(self, record: dict[str, Any]) -> bool:
        definition = record["definition"]
        self.next_spawn_at = None
        with locked_state(self.root) as state:
            current = units(state)[self.name]
            restarting = current["sub_state"] == "auto-restart"
            if restarting and start_limited(current):
                current.update(active_state="failed", sub_state="failed", result="start-limit-hit", main_pid=0)
                return False
            current["start_times"].append(time.time())
            if restarting:
                current["n_restarts"] += 1
        invocation = uuid.uuid4().hex
        env = {
            "PATH": MANAGER_PATH,
            "HOME": os.environ.get("HOME", "/"),
            "USER": os.environ.get("USER", ""),
            "LOGNAME": os.environ.get("LOGNAME", os.environ.get("USER", "")),
            "SHELL": os.environ.get("SHELL", "/bin/sh"),
            "INVOCATION_ID": invocation,
            "MANAGERPID": str(os.getpid()),
        }
        if os.environ.get("XDG_RUNTIME_DIR"):
            env["XDG_RUNTIME_DIR"] = os.environ["XDG_RUNTIME_DIR"]
        env.update(definition["environment"])
        cwd = definition["working_directory"]
        cwd = os.environ.get("HOME", "/") if cwd == "~" else cwd
        journal = self.root / "journal"
        journal.mkdir(exist_ok=True)
        streams = []
        try:
            stdout = self.stream(definition["stdout"], journal)
            stderr = stdout if definition["stderr"] == "inherit" else self.stream(definition["stderr"], journal)
            streams = [stdout, stderr]
            self.child = subprocess.Popen(
                exec_argv(definition, env),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError:
            self.child = None
            self.update(invocation=invocation)
            return self.finished(record, CLD_EXITED, EXIT_EXEC)
        finally:
            for stream in streams:
                if hasattr(stream, "close"):
                    stream.close()
        with locked_state(self.root) as state:
            current = units(state)[self.name]
            current.update(active_state="active", sub_state="running", main_pid=self.child.pid, invocation=invocation)
            state["spawned"].append([self.child.pid, "job", self.name])
        return True

    def stream(self, setting: str, journal: Path) -> IO[bytes] | int:
        if setting in ("journal", "journal+console", "kmsg", "syslog"):
            return open(journal / f"{self.name}.log", "ab")
        if setting.startswith(("append:", "file:")):
            return open(setting.split(":", 1)[1], "ab")
        return subprocess.DEVNULL

    def child_exited(self, record: dict[str, Any]) -> bool:
        assert self.child is not None
        returncode, pid = self.child.returncode, self.child.pid
        self.child = None
        # KillMode=control-group: what is left of the unit goes with its main process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if returncode < 0:
            return self.finished(record, CLD_KILLED, -returncode)
        return self.finished(record, CLD_EXITED, returncode)

    def finished(self, record: dict[str, Any], code: int, status: int) -> bool:
        """Record the exit and decide, by Restart=, whether the unit comes back. False: it stays down."""
        definition = record["definition"]
        clean = (code == CLD_EXITED and status == 0) or (code == CLD_KILLED and status in CLEAN_SIGNALS)
        if self.stopping:
            timed_out = self.killed
            result = (
                "timeout" if timed_out else ("success" if clean or status == definition["kill_signal"] else "exit-code")
            )
            active = "inactive" if result == "success" else "failed"
            self.update(
                active_state=active,
                sub_state="dead" if active == "inactive" else "failed",
                main_pid=0,
                exec_main_code=code,
                exec_main_status=status,
                result=result,
            )
            return False
        result = "success" if clean else ("exit-code" if code == CLD_EXITED else "signal")
        restart = {
            "always": True,
            "on-failure": not clean,
            "on-abnormal": code == CLD_KILLED and not clean,
        }.get(definition["restart"], False)
        prevented = status in (definition["prevent_exit"] if code == CLD_EXITED else definition["prevent_signals"])
        if restart and not prevented:
            self.next_spawn_at = time.monotonic() + definition["restart_sec"]
            self.update(
                active_state="activating",
                sub_state="auto-restart",
                main_pid=0,
                exec_main_code=code,
                exec_main_status=status,
                result=result,
            )
            return True
        self.update(
            active_state="inactive" if clean else "failed",
            sub_state="dead" if clean else "failed",
            main_pid=0,
            exec_main_code=code,
            exec_main_status=status,
            result=result,
        )
        return False


# ---------------------------------------------------------------- verbs


def one_unit(args: list[str], verb: str) -> str:
    names = [a for a in args if not a.startswith("-")]
    if len(names) != 1:
        raise Failure(1, f"Usage: systemctl --user {verb} UNIT")
    name = names[0]
    return name if "." in name else f"{name}.service"


def cmd_daemon_reload(root: Path, args: list[str]) -> int:
    with locked_state(root) as state:
        for name, record in list(units(state).items()):
            path = unit_dir() / name
            if path.is_file():
                with contextlib.suppress(Failure):
                    record["definition"] = parse_file(path)
            elif record["monitor_pid"] is None:
                del units(state)[name]
            else:
                record["definition"]["path"] = ""  # running from a file that is gone
        for path in unit_dir().glob("*.service") if unit_dir().is_dir() else []:
            # A bad file does not fail the reload: systemd marks that unit bad and goes on.
            with contextlib.suppress(Failure):
                load(state, path.name)
    return 0


def cmd_start(root: Path, args: list[str]) -> int:
    name = one_unit(args, "start")
    with locked_state(root) as state:
        record = load(state, name)
        if record is None:
            raise Failure(5, f"Failed to start {name}: Unit {name} not found.")
        if record["monitor_pid"] not in (None, -1) and process_alive(record["monitor_pid"]):
            return 0  # active, or a restart is already scheduled: systemd merges the job
        if start_limited(record):
            record.update(active_state="failed", sub_state="failed", result="start-limit-hit")
            raise Failure(
                1, f'Job for {name} failed.\nSee "systemctl --user status {name}" (start request repeated too quickly).'
            )
        record.update(
            active_state="activating", sub_state="start", stop_requested=False, n_restarts=0, main_pid=0, monitor_pid=-1
        )
    monitor = subprocess.Popen(
        [sys.executable, "-m", "tests.sim.systemctl_sim", "__monitor", str(root), name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "monitor.err", "ab"),
        start_new_session=True,
        close_fds=True,
    )
    with locked_state(root) as state:
        state["spawned"].append([monitor.pid, "monitor", name])
    # Type=exec: `start` returns once the program runs, or fails when it could not be executed.
    deadline = time.monotonic() + MONITOR_STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        record = read_state(root)["units"][name]
        if (
            record["main_pid"]
            or record["active_state"] in ("failed", "inactive")
            or record["sub_state"] == "auto-restart"
        ):
            break
        time.sleep(0.01)
    if record["active_state"] == "failed" or record["sub_state"] == "auto-restart":
        raise Failure(
            1,
            f'Job for {name} failed because the control process exited with error code.\nSee "systemctl --user status {name}" '
            f'and "journalctl --user -xeu {name}" for details.',
        )
    return 0


def cmd_stop(root: Path, args: list[str]) -> int:
    name = one_unit(args, "stop")
    with locked_state(root) as state:
        record = units(state).get(name) or load(state, name)
        if record is None:
            raise Failure(5, f"Failed to stop {name}: Unit {name} not loaded.")
        monitor = record["monitor_pid"]
        if monitor is None or monitor == -1 or not process_alive(monitor):
            if record["active_state"] != "failed":
                record.update(active_state="inactive", sub_state="dead", main_pid=0)
            return 0
        record["stop_requested"] = True
        timeout = record["definition"]["timeout_stop"] + STOP_WAIT_MARGIN
    with contextlib.suppress(ProcessLookupError):
        os.kill(monitor, signal.SIGUSR1)
    # systemctl stop waits for the job: the unit is down when it returns.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(monitor):
        time.sleep(0.01)
    with locked_state(root) as state:
        units(state)[name]["stop_requested"] = False
    return 0


def cmd_restart(root: Path, args: list[str]) -> int:
    cmd_stop(root, args)
    return cmd_start(root, args)


def cmd_kill(root: Path, args: list[str]) -> int:
    name = one_unit(args, "kill")
    signum: int = signal.SIGTERM
    for arg in args:
        if arg.startswith(("--signal=", "-s")):
            raw = arg.split("=", 1)[-1].removeprefix("-s").upper()
            signum = int(raw) if raw.isdigit() else getattr(signal, raw if raw.startswith("SIG") else "SIG" + raw)
    record = read_state(root).get("units", {}).get(name)
    if not record or not record["main_pid"]:
        raise Failure(1, f"Failed to kill unit {name}: No main process to kill")
    os.killpg(record["main_pid"], signum)
    return 0


def cmd_enable(root: Path, args: list[str], enabled: bool) -> int:
    name = one_unit(args, "enable" if enabled else "disable")
    with locked_state(root) as state:
        record = load(state, name)
        if record is None:
            raise Failure(1, f"Failed to {'enable' if enabled else 'disable'} unit: Unit file {name} does not exist.")
        if enabled and not record["definition"]["installable"]:
            print("The unit files have no installation config (WantedBy=, RequiredBy=, ...).", file=sys.stderr)
            return 0
        if record["enabled"] != enabled:
            link = f"~/.config/systemd/user/default.target.wants/{name}"
            print(
                f"Created symlink {link} → {record['definition']['path']}." if enabled else f"Removed {link}.",
                file=sys.stderr,
            )
        record["enabled"] = enabled
    return 0


def cmd_reset_failed(root: Path, args: list[str]) -> int:
    name = one_unit(args, "reset-failed")
    with locked_state(root) as state:
        record = units(state).get(name)
        if record is None:
            raise Failure(1, f"Failed to reset failed state of unit {name}: Unit {name} not loaded.")
        record["start_times"] = []
        if record["active_state"] == "failed":
            record.update(active_state="inactive", sub_state="dead", result="success")
    return 0


def properties(root: Path, name: str) -> dict[str, str]:
    state = read_state(root)
    record = state.get("units", {}).get(name)
    path = unit_dir() / name
    if record is None and path.is_file():
        with locked_state(root) as writable:
            record = load(writable, name)
    if record is None:
        return {
            "Id": name,
            "LoadState": "not-found",
            "ActiveState": "inactive",
            "SubState": "dead",
            "MainPID": "0",
            "ExecMainCode": "0",
            "ExecMainStatus": "0",
            "NRestarts": "0",
            "Result": "success",
            "FragmentPath": "",
            "UnitFileState": "",
            "NeedDaemonReload": "no",
        }
    definition = record["definition"]
    stale = path.is_file() and path.stat().st_mtime_ns != definition["mtime"]
    return {
        "Id": name,
        "LoadState": "loaded",
        "ActiveState": record["active_state"],
        "SubState": record["sub_state"],
        "MainPID": str(record["main_pid"] or 0),
        "ExecMainCode": str(record["exec_main_code"]),
        "ExecMainStatus": str(record["exec_main_status"]),
        "NRestarts": str(record["n_restarts"]),
        "Result": record["result"],
        "FragmentPath": definition["path"],
        "UnitFileState": "enabled" if record["enabled"] else "disabled",
        "NeedDaemonReload": "yes" if stale else "no",
        "TimeoutStopUSec": str(int(definition["timeout_stop"] * 1_000_000)),
        "Restart": definition["restart"],
        "InvocationID": record["invocation"],
    }


def cmd_show(root: Path, args: list[str]) -> int:
    wanted: list[str] = []
    value_only = "--value" in args
    rest = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-p", "--property"):
            wanted += args[i + 1].split(",")
            i += 2
            continue
        if arg.startswith("--property="):
            wanted += arg.split("=", 1)[1].split(",")
        elif arg.startswith("-p"):
            wanted += arg[2:].split(",")
        elif not arg.startswith("-"):
            rest.append(arg)
        i += 1
    props = properties(root, one_unit(rest, "show"))
    for key, value in props.items():
        if not wanted or key in wanted:
            print(value if value_only else f"{key}={value}")
    return 0


def cmd_is_active(root: Path, args: list[str]) -> int:
    props = properties(root, one_unit(args, "is-active"))
    print(props["ActiveState"])
    return 0 if props["ActiveState"] == "active" else 3


VERBS = {
    "daemon-reload": cmd_daemon_reload,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "enable": lambda root, args: cmd_enable(root, args, True),
    "disable": lambda root, args: cmd_enable(root, args, False),
    "reset-failed": cmd_reset_failed,
    "show": cmd_show,
    "is-active": cmd_is_active,
}


def loginctl(root: Path, args: list[str]) -> int:
    """`show-user USER -p Linger` and `enable-linger` / `disable-linger [USER]`."""
    with locked_state(root) as state:
        state.setdefault("linger", os.environ.get("SYSTEMCTL_SIM_LINGER", "no"))
        if args[:1] == ["show-user"]:
            print(f"Linger={state['linger']}")
            return 0
        if args[:1] in (["enable-linger"], ["disable-linger"]):
            state["linger"] = "yes" if args[0] == "enable-linger" else "no"
            return 0
    raise Failure(1, f"Unknown command verb {args[0] if args else ''}.")


def main(argv: list[str]) -> int:
    if argv[:1] == ["__monitor"]:
        Monitor(Path(argv[1]), argv[2]).run()
        return 0
    code = 0
    root: Path | None = None
    try:
        root = state_dir()
        if argv[:1] == ["--loginctl"]:
            code = loginctl(root, argv[1:])
        else:
            if os.environ.get("SYSTEMCTL_SIM_NO_BUS") == "1":
                raise Failure(1, "Failed to connect to bus: No medium found")
            if "--user" not in argv:
                raise Failure(1, "systemctl simulator: only the user manager (--user) is simulated")
            rest = [a for a in argv if a not in ("--user", "--no-pager", "--quiet")]
            if not rest or rest[0] not in VERBS:
                raise Failure(1, f"Unknown command verb {rest[0] if rest else ''}.")
            code = VERBS[rest[0]](root, rest[1:])
    except Failure as failure:
        print(failure.message, file=sys.stderr)
        code = failure.code
    if root is not None:
        log_call(root, argv, code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
