"""A `launchctl` for Linux tests: launchd's job semantics on real child processes.

Run as `python -m tests.sim.launchctl_sim VERB ...` through an executable shim first on PATH.
State lives in `$LAUNCHCTL_SIM_STATE/state.json`, read and written under an flock; every call is
appended to `calls.log`. `bootstrap` starts one detached monitor process per job; the monitor
spawns ProgramArguments (new session, clean environment + EnvironmentVariables + XPC_SERVICE_NAME,
stdin /dev/null, output appended to the plist's log paths) and applies RunAtLoad, KeepAlive
(true, or {SuccessfulExit: false}) and ThrottleInterval. `bootout` asks the monitor to stop: it
SIGTERMs the job, SIGKILLs it after ExitTimeOut, then stays "tearing down" a moment (so a hasty
`bootstrap` gets launchd's 5) before the job is forgotten.

Exit codes are launchd's: 113 not found, 5 already loaded / tearing down, 3 bootout of a job not
loaded, 119 disabled, 125 gui/ without a GUI session (LAUNCHCTL_SIM_GUI=0), 112 print of gui/
without one, 37 kickstart while tearing down.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import plistlib
import re
import select
import signal
import subprocess
import sys
import time
import xml.parsers.expat
from pathlib import Path
from typing import Any, Iterator

import psutil

DEFAULT_THROTTLE = 10
DEFAULT_EXIT_TIMEOUT = 5  # launchd's stock value is small; the plist should raise it
DEFAULT_TEARDOWN_DELAY = 0.2
DEFAULT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
EX_CONFIG = 78
MONITOR_STARTUP_TIMEOUT = 10.0


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


# ---------------------------------------------------------------- state, under an flock


def state_dir() -> Path:
    value = os.environ.get("LAUNCHCTL_SIM_STATE")
    if not value:
        raise Failure(64, "launchctl simulator: LAUNCHCTL_SIM_STATE is not set")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked_state(root: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write of state.json, serialised across the CLI and every monitor."""
    with open(root / "state.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "state.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        state.setdefault("jobs", {})
        state.setdefault("disabled", {})
        state.setdefault("spawned", [])  # every PID the simulator started: [pid, role, key]
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)


def read_state(root: Path) -> dict[str, Any]:
    with locked_state(root) as state:
        copy: dict[str, Any] = json.loads(json.dumps(state))
        return copy


def gui_session() -> bool:
    return os.environ.get("LAUNCHCTL_SIM_GUI", "0") == "1"


def split_target(target: str) -> tuple[str, str]:
    match = re.fullmatch(r"((?:gui|user)/\d+|system)/(.+)", target)
    if not match:
        raise Failure(64, f'Unrecognized target specifier: "{target}"')
    return match.group(1), match.group(2)


def check_domain(domain: str) -> None:
    if not re.fullmatch(r"(gui|user)/\d+|system", domain):
        raise Failure(64, f'Unrecognized domain specifier: "{domain}"')
    if domain.startswith("gui/") and not gui_session():
        raise Failure(125, "Domain does not support specified action")


def not_found(label: str, domain: str) -> Failure:
    kind, _, uid = domain.partition("/")
    return Failure(
        113, f'Could not find service "{label}" in domain for {"user gui" if kind == "gui" else "uid"}: {uid}'
    )


# ---------------------------------------------------------------- the job definition


def job_from_plist(path: Path, domain: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            data = plistlib.load(fp)
        label = data["Label"]
        args = data.get("ProgramArguments") or [data["Program"]]
    except (
        OSError,
        plistlib.InvalidFileException,
        xml.parsers.expat.ExpatError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
    ):
        raise Failure(5, "Bootstrap failed: 5: Input/output error") from None
    keep_alive = data.get("KeepAlive", False)
    return {
        "label": label,
        "domain": domain,
        "path": str(path),
        "program": data.get("Program") or args[0],
        "arguments": [str(a) for a in args],
        "environment": {str(k): str(v) for k, v in (data.get("EnvironmentVariables") or {}).items()},
        "working_directory": data.get("WorkingDirectory"),
        "stdout_path": data.get("StandardOutPath"),
        "stderr_path": data.get("StandardErrorPath"),
        "run_at_load": bool(data.get("RunAtLoad", False)),
        "keep_alive": keep_alive if isinstance(keep_alive, (bool, dict)) else False,
        "throttle_interval": float(data.get("ThrottleInterval", DEFAULT_THROTTLE)),
        "exit_timeout": float(data.get("ExitTimeOut", DEFAULT_EXIT_TIMEOUT)),
        "teardown_delay": float(os.environ.get("LAUNCHCTL_SIM_TEARDOWN_DELAY", DEFAULT_TEARDOWN_DELAY)),
        "state": "not running",
        "pid": None,
        "runs": 0,
        "last_exit_code": None,
        "last_signal": None,
        "monitor_pid": None,
        "tearing_down": False,
        "kickstart": None,  # {"id": n, "kill": bool} until the monitor has acted on it
        "kickstarts_done": 0,
    }


def should_respawn(keep_alive: bool | dict[str, Any], exit_code: int | None, signal_number: int | None) -> bool:
    """launchd's KeepAlive: true restarts always; {SuccessfulExit: false} after a failure or signal;
    {SuccessfulExit: true} after exit 0; {Crashed: true} after a signal."""
    if keep_alive is True:
        return True
    if not isinstance(keep_alive, dict):
        return False
    succeeded = signal_number is None and exit_code == 0
    if "SuccessfulExit" in keep_alive and bool(keep_alive["SuccessfulExit"]) == succeeded:
        return True
    if keep_alive.get("Crashed") and signal_number is not None:
        return True
    return False


def starts_at_load(job: dict[str, Any]) -> bool:
    return job["run_at_load"] or job["keep_alive"] is True or bool(job["keep_alive"])


# ---------------------------------------------------------------- the per-job monitor


class JobForgotten(Exception):
    """The job's entry vanished (the state was reset by hand): stop the child and go."""


class Monitor:
    """One detached process per loaded job: it owns the child and applies launchd's rules."""

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key = root, key
        self.child: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.next_spawn_at: float | None = None
        self.stop_requested = False
        self.stop_deadline: float | None = None
        self.killed = False
        self.restart_after_exit = False
        self.flags: set[int] = set()

    def _handle(self, signum: int, _frame: object) -> None:
        self.flags.add(signum)

    def job(self) -> dict[str, Any]:
        job: dict[str, Any] | None = read_state(self.root)["jobs"].get(self.key)
        if job is None:
            raise JobForgotten
        return job

    def update(self, **changes: object) -> dict[str, Any]:
        with locked_state(self.root) as state:
            job = state["jobs"].get(self.key)
            if job is None:
                raise JobForgotten
            job.update(changes)
            return dict(job)

    def run(self) -> None:
        try:
            self.supervise()
        except JobForgotten:
            if self.child is not None:
                self.child.terminate()
                try:
                    self.child.wait(DEFAULT_EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.child.kill()

    def supervise(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)
        job = self.update(monitor_pid=os.getpid())
        if starts_at_load(job):
            self.next_spawn_at = time.monotonic()
        while True:
            if {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} & self.flags:
                self.begin_stop()
            self.flags.clear()
            self.reap()
            job = self.job()
            if job.get("stop_requested"):
                self.begin_stop()
            if job.get("kickstart") and not self.stop_requested:
                self.handle_kickstart(job)
            now = time.monotonic()
            if self.stop_requested:
                if self.child is None:
                    self.finish_teardown(job)
                    return
                if not self.killed and now >= (self.stop_deadline or now):
                    self.child.kill()  # SIGKILL to the main PID after ExitTimeOut, as launchd does
                    self.killed = True
            elif self.child is None and self.next_spawn_at is not None and now >= self.next_spawn_at:
                self.spawn(job)
            select.select([wake_r], [], [], self.wait_time())
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass

    def wait_time(self) -> float:
        now = time.monotonic()
        deadlines = [1.0]
        if self.stop_requested and not self.killed and self.stop_deadline is not None:
            deadlines.append(self.stop_deadline - now)
        if not self.stop_requested and self.child is None and self.next_spawn_at is not None:
            deadlines.append(self.next_spawn_at - now)
        return max(0.0, min(deadlines))

    def begin_stop(self) -> None:
        if self.stop_requested:
            return
        self.stop_requested = True
        self.next_spawn_at = None
        job = self.update(tearing_down=True, stop_requested=True)
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGTERM)
            self.stop_deadline = time.monotonic() + job["exit_timeout"]

    def handle_kickstart(self, job: dict[str, Any]) -> None:
        request = job["kickstart"]
        if self.child is not None:
            if request.get("kill"):
                self.restart_after_exit = True
                with contextlib.suppress(ProcessLookupError):
                    self.child.send_signal(signal.SIGTERM)
                self.update(kickstart=None, kickstart_pending=request["id"])
            else:
                self.update(kickstart=None, kickstarts_done=request["id"])
            return
        self.update(kickstart=None)
        self.spawn(self.job(), kickstart_id=request["id"])

    def spawn(self, job: dict[str, Any], kickstart_id: int | None = None) -> None:
        self.next_spawn_at = None
        env = {
            "PATH": DEFAULT_PATH,
            "HOME": os.environ.get("HOME", "/"),
            "USER": os.environ.get("USER", ""),
            "LOGNAME": os.environ.get("LOGNAME", os.environ.get("USER", "")),
            "SHELL": os.environ.get("SHELL", "/bin/sh"),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        }
        env.update(job["environment"])
        env["XPC_SERVICE_NAME"] = job["label"]
        self.spawned_at = time.monotonic()
        stdout = stderr = None
        try:
            stdout = open(job["stdout_path"], "ab") if job["stdout_path"] else subprocess.DEVNULL
            stderr = open(job["stderr_path"], "ab") if job["stderr_path"] else subprocess.DEVNULL
            self.child = subprocess.Popen(
                job["arguments"],
                executable=job["program"],
                cwd=job["working_directory"] or "/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError:
            # launchd cannot start it (missing program or log directory): exit 78, EX_CONFIG.
            self.child = None
            self.record_exit(EX_CONFIG, None, runs_delta=1)
            return
        finally:
            for stream in (stdout, stderr):
                if stream is not None and not isinstance(stream, int):
                    stream.close()
        with locked_state(self.root) as state:
            entry = state["jobs"].get(self.key)
            if entry is None:
                raise JobForgotten
            entry.update(state="running", pid=self.child.pid, runs=entry["runs"] + 1)
            if kickstart_id is not None:
                entry["kickstarts_done"] = kickstart_id
            if entry.get("kickstart_pending"):
                entry["kickstarts_done"], entry["kickstart_pending"] = entry["kickstart_pending"], None
            state["spawned"].append([self.child.pid, "job", self.key])

    def reap(self) -> None:
        if self.child is None or self.child.poll() is None:
            return
        code = self.child.returncode
        pid = self.child.pid
        self.child = None
        # On job death launchd SIGTERMs what is left of the job's process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        exit_code, signal_number = (None, -code) if code < 0 else (code, None)
        self.record_exit(exit_code, signal_number)

    def record_exit(self, exit_code: int | None, signal_number: int | None, runs_delta: int = 0) -> None:
        job = self.job()
        respawn = not self.stop_requested and (
            self.restart_after_exit or should_respawn(job["keep_alive"], exit_code, signal_number)
        )
        if self.restart_after_exit:
            self.next_spawn_at = time.monotonic()  # kickstart -k restarts at once
        elif respawn:
            self.next_spawn_at = max(time.monotonic(), self.spawned_at + job["throttle_interval"])
        self.restart_after_exit = False
        with locked_state(self.root) as state:
            entry = state["jobs"].get(self.key)
            if entry is None:
                raise JobForgotten
            entry.update(
                state="spawn scheduled" if respawn else "not running",
                pid=None,
                runs=entry["runs"] + runs_delta,
                last_exit_code=exit_code if exit_code is not None else entry["last_exit_code"],
                last_signal=signal_number,
            )

    def finish_teardown(self, job: dict[str, Any]) -> None:
        # launchd finishes a bootout in the background: stay visible a moment, then vanish.
        time.sleep(job["teardown_delay"])
        with locked_state(self.root) as state:
            state["jobs"].pop(self.key, None)


# ---------------------------------------------------------------- verbs


def log_call(root: Path, argv: list[str], code: int) -> None:
    with open(root / "calls.log", "a") as fp:
        fp.write(json.dumps({"t": time.time(), "argv": argv, "code": code}) + "\n")


def cmd_bootstrap(root: Path, args: list[str]) -> int:
    if len(args) < 2:
        raise Failure(64, "Usage: launchctl bootstrap <domain-target> [service-path ...]")
    domain = args[0]
    check_domain(domain)
    for raw in args[1:]:
        job = job_from_plist(Path(raw), domain)
        key = f"{domain}/{job['label']}"
        with locked_state(root) as state:
            if key in state["jobs"]:
                raise Failure(5, "Bootstrap failed: 5: Input/output error")
            if state["disabled"].get(key):
                raise Failure(119, "Bootstrap failed: 119: Service is disabled")
            state["jobs"][key] = job
        monitor = subprocess.Popen(
            [sys.executable, "-m", "tests.sim.launchctl_sim", "__monitor", str(root), key],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "monitor.err", "ab"),
            start_new_session=True,
            close_fds=True,
        )
        with locked_state(root) as state:
            state["spawned"].append([monitor.pid, "monitor", key])
        # launchd has the job registered when bootstrap returns; wait for the monitor to be live.
        # The monitor records its own PID only once its signal handlers are installed: a kickstart's
        # SIGUSR1 that arrived any earlier would kill it (the default action) and nobody would act.
        deadline = time.monotonic() + MONITOR_STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            job_now = read_state(root)["jobs"].get(key, {})
            if job_now.get("monitor_pid") == monitor.pid and (
                not starts_at_load(job_now) or job_now.get("runs", 0) > 0 or job_now.get("state") != "not running"
            ):
                break
            time.sleep(0.01)
    return 0


def loaded_job(root: Path, target: str) -> tuple[str, dict[str, Any]]:
    domain, label = split_target(target)
    key = f"{domain}/{label}"
    job = read_state(root)["jobs"].get(key)
    if job is None:
        raise not_found(label, domain)
    return key, job


def signal_monitor(job: dict[str, Any]) -> None:
    with contextlib.suppress(ProcessLookupError, TypeError):
        os.kill(job["monitor_pid"], signal.SIGUSR1)


def cmd_bootout(root: Path, args: list[str]) -> int:
    if len(args) != 1:
        raise Failure(64, "Usage: launchctl bootout <service-target>")
    domain, label = split_target(args[0])
    check_domain(domain)
    key = f"{domain}/{label}"
    with locked_state(root) as state:
        job = state["jobs"].get(key)
        if job is None:
            raise Failure(3, "Boot-out failed: 3: No such process")
        job["stop_requested"] = True
        job["tearing_down"] = True
        if not process_alive(job["monitor_pid"]):
            # The monitor is gone (killed by hand): nobody else will stop the job, so do it here.
            if process_alive(job["pid"]):
                os.kill(job["pid"], signal.SIGTERM)
            del state["jobs"][key]
            return 0
    signal_monitor(job)
    return 0


def process_alive(pid: int | None) -> bool:
    """Running, and not a zombie (exited, not yet reaped by its parent): launchd counts it gone."""
    if not pid:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def cmd_kickstart(root: Path, args: list[str]) -> int:
    flags = {a for a in args if a.startswith("-")}
    targets = [a for a in args if not a.startswith("-")]
    if len(targets) != 1 or flags - {"-k", "-p", "-kp", "-pk"}:
        raise Failure(64, "Usage: launchctl kickstart [-k] [-p] <service-target>")
    kill = any("k" in f for f in flags)
    print_pid = any("p" in f for f in flags)
    domain, label = split_target(targets[0])
    check_domain(domain)
    key, job = loaded_job(root, targets[0])
    if job["tearing_down"]:
        raise Failure(37, "Operation already in progress")
    if job["pid"] and not kill:
        if print_pid:
            print(job["pid"])
        return 0
    with locked_state(root) as state:
        entry = state["jobs"][key]
        request_id = int(entry.get("kickstarts_done") or 0) + 1
        entry["kickstart"] = {"id": request_id, "kill": kill}
    signal_monitor(job)
    deadline = time.monotonic() + job["exit_timeout"] + MONITOR_STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        now = read_state(root)["jobs"].get(key)
        if now is None:
            raise Failure(37, "Operation already in progress")
        if int(now.get("kickstarts_done") or 0) >= request_id and (now["pid"] or now["state"] != "running"):
            if print_pid and now["pid"]:
                print(now["pid"])
            return 0
        time.sleep(0.01)
    raise Failure(1, "kickstart timed out")


SIGNAL_NAMES = {name[3:]: getattr(signal, name) for name in dir(signal) if name.startswith("SIG") and "_" not in name}


def cmd_kill(root: Path, args: list[str]) -> int:
    if len(args) != 2:
        raise Failure(64, "Usage: launchctl kill <signal-number|signal-name> <service-target>")
    raw = args[0].upper().removeprefix("SIG")
    signum = int(raw) if raw.isdigit() else SIGNAL_NAMES.get(raw)
    if signum is None:
        raise Failure(64, f"Unrecognized signal: {args[0]}")
    domain, _ = split_target(args[1])
    check_domain(domain)
    _, job = loaded_job(root, args[1])
    if not job["pid"]:
        raise Failure(3, "No process to signal")
    os.kill(job["pid"], signum)
    return 0


def cmd_enable(root: Path, args: list[str], disabled: bool) -> int:
    if len(args) != 1:
        raise Failure(64, f"Usage: launchctl {'disable' if disabled else 'enable'} <service-target>")
    domain, label = split_target(args[0])
    check_domain(domain)
    with locked_state(root) as state:
        state["disabled"][f"{domain}/{label}"] = disabled  # persisted; a running job keeps running
    return 0


def cmd_print(root: Path, args: list[str]) -> int:
    if len(args) != 1:
        raise Failure(64, "Usage: launchctl print <domain-target | service-target>")
    domain, label = split_target(args[0])
    if domain.startswith("gui/") and not gui_session():
        raise Failure(112, f"Could not find domain for user gui: {domain.split('/')[1]}")
    _, job = loaded_job(root, args[0])
    print(render_print(job), end="")
    return 0


def render_print(job: dict[str, Any]) -> str:
    """launchd's `print` layout: a tab per level; nested blocks repeat `state`."""
    lines = [f"{job['domain']}/{job['label']} = {{", "\tactive count = " + ("1" if job["pid"] else "0")]
    lines += [f"\tpath = {job['path']}", "\ttype = LaunchAgent", f"\tstate = {job['state']}", ""]
    lines += [f"\tprogram = {job['program']}", "\targuments = {"]
    lines += [f"\t\t{a}" for a in job["arguments"]] + ["\t}", ""]
    lines += [f"\tworking directory = {job['working_directory'] or '/'}", ""]
    if job["stdout_path"]:
        lines.append(f"\tstdout path = {job['stdout_path']}")
    if job["stderr_path"]:
        lines.append(f"\tstderr path = {job['stderr_path']}")
    lines += ["\tenvironment = {"] + [f"\t\t{k} => {v}" for k, v in sorted(job["environment"].items())]
    lines += [f"\t\tXPC_SERVICE_NAME => {job['label']}", "\t}", ""]
    lines += ["\tevent triggers = {", f"\t\t{job['label']}.keepalive => {{", "\t\t\tkeepalive = 1"]
    lines += ["\t\t\tstate = active" if job["pid"] is None else "\t\t\tstate = inactive", "\t\t}", "\t}", ""]
    lines += [f"\tdomain = {job['domain']}", f"\truns = {job['runs']}"]
    if job["pid"]:
        lines.append(f"\tpid = {job['pid']}")
    lines.append("\timmediate reason = speculative")
    code = job["last_exit_code"]
    lines.append(
        f"\tlast exit code = {'(never exited)' if code is None else (f'{code}: EX_CONFIG' if code == EX_CONFIG else code)}"
    )
    if job["last_signal"]:
        try:
            name = signal.Signals(job["last_signal"]).name
        except ValueError:
            name = "Signal"
        lines.append(f"\tlast terminating signal = {SIGNAL_DESCRIPTIONS.get(name, name)}: {job['last_signal']}")
    lines += [f"\texit timeout = {int(job['exit_timeout'])}", f"\tthrottle interval = {int(job['throttle_interval'])}"]
    props = ["keepalive" if job["keep_alive"] else None, "runatload" if job["run_at_load"] else None]
    lines += ["\tproperties = " + " | ".join(p for p in props if p), "}"]
    return "\n".join(lines) + "\n"


SIGNAL_DESCRIPTIONS = {
    "SIGKILL": "Killed",
    "SIGTERM": "Terminated",
    "SIGINT": "Interrupt",
    "SIGABRT": "Abort trap",
    "SIGSEGV": "Segmentation fault",
}


def wait_status(job: dict[str, Any]) -> int:
    """`list` reports the raw wait status: exit N is N << 8, a signal is its number."""
    if job["last_signal"]:
        return int(job["last_signal"])
    return int(job["last_exit_code"] or 0) << 8


def cmd_list(root: Path, args: list[str]) -> int:
    jobs = read_state(root)["jobs"]
    if not args:
        print("PID\tStatus\tLabel")
        for job in jobs.values():
            status = -job["last_signal"] if job["last_signal"] else (job["last_exit_code"] or 0)
            print(f"{job['pid'] or '-'}\t{status}\t{job['label']}")
        return 0
    label = args[0]
    job = next((j for j in jobs.values() if j["label"] == label), None)
    if job is None:
        raise Failure(113, f'Could not find service "{label}" in domain for port')
    out = ["{", f'\t"Label" = "{label}";', '\t"OnDemand" = false;', f'\t"LastExitStatus" = {wait_status(job)};']
    if job["pid"]:
        out.append(f'\t"PID" = {job["pid"]};')
    out += [f'\t"Program" = "{job["program"]}";', '\t"ProgramArguments" = (']
    out += [f'\t\t"{a}";' for a in job["arguments"]] + ["\t);", "};"]
    print("\n".join(out))
    return 0


VERBS = {
    "bootstrap": cmd_bootstrap,
    "bootout": cmd_bootout,
    "kickstart": cmd_kickstart,
    "kill": cmd_kill,
    "enable": lambda root, args: cmd_enable(root, args, disabled=False),
    "disable": lambda root, args: cmd_enable(root, args, disabled=True),
    "print": cmd_print,
    "list": cmd_list,
}


def main(argv: list[str]) -> int:
    if argv[:1] == ["__monitor"]:
        Monitor(Path(argv[1]), argv[2]).run()
        return 0
    code = 0
    root: Path | None = None
    try:
        root = state_dir()
        if not argv or argv[0] not in VERBS:
            raise Failure(64, f"Unrecognized subcommand: {argv[0] if argv else ''}")
        code = VERBS[argv[0]](root, argv[1:])
    except Failure as failure:
        print(failure.message, file=sys.stderr)
        code = failure.code
    if root is not None:
        log_call(root, argv, code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
