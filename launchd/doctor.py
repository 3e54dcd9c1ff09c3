"""Doctor: find gateway LaunchAgents that will misbehave, and fix them by our rules.

It looks at ours and at other gateways' agents (the incident's `ai.hermes.gateway-*.plist`
carried `--replace`), per file: `--replace`, unconditional KeepAlive, RunAtLoad missing, a missing
program, missing log paths, a shell wrapper, secrets in the environment, two jobs for one profile,
a file that does not parse — and, when launchctl can tell, a job launchd keeps restarting.
`--fix` backs the file up, rewrites it, checks it reads back, and reloads a loaded job.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_core.config import Home

from .agents import AgentSettings, unload_timeout, wait_until_unloaded
from .launchctl import GATEWAY_EXIT_MEANINGS, LaunchctlError, find_job
from .plist import (
    ALLOWED_ENVIRONMENT,
    DEFAULT_THROTTLE_INTERVAL,
    PlistError,
    gateway_program_arguments,
    read_plist,
    write_plist,
)
from .service import Report

GATEWAY_PLIST_GLOB = "*gateway*.plist"
SHELLS = {"sh", "bash", "zsh", "dash", "fish"}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    problem: str
    fixable: bool


@dataclass
class AgentFile:
    """One plist and what is wrong with it."""

    path: Path
    data: dict[str, Any] | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def label(self) -> str:
        label = (self.data or {}).get("Label")
        return label if isinstance(label, str) else self.path.stem

    @property
    def ours(self) -> bool:
        args = program_arguments(self.data or {})
        return "gateway_core" in args or any(os.path.basename(a) == "gatewatch" for a in args[:1])

    @property
    def healthy(self) -> bool:
        return not self.findings


def program_arguments(data: dict[str, Any]) -> list[str]:
    args = data.get("ProgramArguments")
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return list(args)
    program = data.get("Program")
    return [program] if isinstance(program, str) else []


def profile_of(agent: AgentFile) -> tuple[str, str]:
    """(gateway family, profile) — what "two jobs for one profile" compares."""
    args = program_arguments(agent.data or {})
    profile = None
    for i, arg in enumerate(args):
        if arg in ("--profile", "-p") and i + 1 < len(args):
            profile = args[i + 1]
        elif arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
    label = agent.label
    if profile is None:
        profile = re.split(r"[.-]", label)[-1]
    if agent.ours:
        family = "gatewatch"
    elif label.endswith(profile):
        family = label[: -len(profile)].rstrip(".-")
    else:
        family = label
    return family, profile


def examine_rules(data: dict[str, Any], ours: bool) -> list[Finding]:
    """The rules one plist must follow, each broken rule one finding.

    For our own plists the program and the environment are ours to rewrite as well; for another
    gateway's they are not (we cannot know its program or where its secrets should go)."""
    findings: list[Finding] = []
    args = program_arguments(data)
    if "--replace" in args:
        findings.append(
            Finding(
                "ProgramArguments carries --replace: a manual restart kills launchd's process, launchd respawns "
                "its own, and two gateways fight over one Feishu app",
                True,
            )
        )
    if data.get("KeepAlive") is True:
        findings.append(
            Finding(
                "KeepAlive is unconditionally true: launchd restarts even a clean stop, forever; "
                "use KeepAlive {SuccessfulExit: false}",
                True,
            )
        )
    if data.get("RunAtLoad") is not True:
        findings.append(Finding("RunAtLoad is missing: the gateway does not start at login", True))
    if not args:
        findings.append(Finding("no ProgramArguments or Program: launchd has nothing to run", False))
    elif not os.path.isabs(args[0]) or not os.access(args[0], os.X_OK):
        findings.append(
            Finding(f"program {args[0]} does not exist or is not executable (launchd needs an absolute path)", ours)
        )
    if args and os.path.basename(args[0]) in SHELLS:
        findings.append(
            Finding(
                "runs a shell wrapper: launchd's PID is the shell's, not the gateway's; run the gateway itself", False
            )
        )
    for key in ("StandardOutPath", "StandardErrorPath"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            findings.append(Finding(f"{key} is missing: the gateway's output is lost", True))
        elif not Path(value).parent.is_dir():
            findings.append(
                Finding(f"{key} directory {Path(value).parent} does not exist: launchd cannot start the job", True)
            )
    environment = data.get("EnvironmentVariables") or {}
    if isinstance(environment, dict):
        for name in sorted(environment):
            if SECRET_NAME.search(str(name)):
                findings.append(
                    Finding(
                        f"EnvironmentVariables carries {name}: secrets never belong in a plist (it is world-readable); "
                        "use a *_file secret readable only by you",
                        ours,
                    )
                )
    return findings


def scan(agents_dir: Path, probe_launchd: bool = True) -> list[AgentFile]:
    """Every gateway plist in the directory, with its findings."""
    agents = []
    for path in sorted(agents_dir.glob(GATEWAY_PLIST_GLOB)) if agents_dir.is_dir() else []:
        try:
            data = read_plist(path)
        except PlistError as error:
            agents.append(AgentFile(path, None, [Finding(f"does not parse: {error}", False)]))
            continue
        agent = AgentFile(path, data)
        agent.findings = examine_rules(data, ours=agent.ours)
        agents.append(agent)
    by_profile: dict[tuple[str, str], list[AgentFile]] = {}
    for agent in agents:
        if agent.data is not None:
            by_profile.setdefault(profile_of(agent), []).append(agent)
    for (family, profile), group in by_profile.items():
        if len(group) > 1:
            for agent in group:
                others = ", ".join(o.path.name for o in group if o is not agent)
                agent.findings.append(
                    Finding(
                        f"two jobs for {family} profile '{profile}' (also {others}): they would fight over one Feishu app; "
                        "remove all but one",
                        False,
                    )
                )
    if probe_launchd:
        for agent in agents:
            if agent.data is not None:
                agent.findings.extend(loop_findings(agent))
    return agents


def loop_findings(agent: AgentFile) -> list[Finding]:
    """A loaded job that launchd keeps restarting (runs climbing, last exit non-zero)."""
    if shutil.which("launchctl") is None:
        return []
    try:
        _, job = find_job(agent.label)
    except LaunchctlError:
        return []
    if job is None or not job.looping:
        return []
    meaning = GATEWAY_EXIT_MEANINGS.get(job.last_exit_code or -1, "see its log")
    return [
        Finding(
            f"launchd keeps restarting it: {job.runs} runs, last {job.describe_last_exit()} — {meaning}; "
            "see 'gatewatch launchd status'",
            False,
        )
    ]


def apply_rules(agent: AgentFile, home: Home) -> dict[str, Any]:
    """The plist rewritten by our rules; only what a finding asks for changes."""
    data = dict(agent.data or {})
    label = agent.label
    args = [a for a in program_arguments(data) if a != "--replace"]
    if agent.ours:
        args = gateway_program_arguments(profile_of(agent)[1])
        env = data.get("EnvironmentVariables") or {}
        data["EnvironmentVariables"] = {k: v for k, v in env.items() if k in ALLOWED_ENVIRONMENT}
        data.setdefault("ThrottleInterval", DEFAULT_THROTTLE_INTERVAL)
    if "ProgramArguments" in data or agent.ours:
        data["ProgramArguments"] = args
    if data.get("KeepAlive") is True:
        data["KeepAlive"] = {"SuccessfulExit": False}
    data["RunAtLoad"] = True
    home_logs = home.root.expanduser().absolute() / "logs"
    for key, suffix in (("StandardOutPath", "out"), ("StandardErrorPath", "err")):
        value = data.get(key)
        # A missing path, or one in a directory that does not exist, moves to our logs directory:
        # creating whatever directory a plist names is not ours to do.
        if not isinstance(value, str) or not value or not Path(value).parent.is_dir():
            data[key] = str(home_logs / f"{label}.{suffix}.log")
    return data


def backup_path(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return candidate


def fix(agent: AgentFile, home: Home, report: Report) -> bool:
    """Rewrite one plist by our rules and reload its job; False when nothing needed changing."""
    if agent.data is None or not any(f.fixable for f in agent.findings):
        return False
    fixed = apply_rules(agent, home)
    if fixed == agent.data:
        return False
    backup = backup_path(agent.path)
    shutil.copy2(agent.path, backup)
    report(f"{agent.path.name}: backed up to {backup.name}")
    home.logs.mkdir(parents=True, exist_ok=True)
    write_plist(agent.path, fixed)  # reads it back before and after writing
    report(f"{agent.path.name}: rewritten")
    reload_job(agent.label, agent.path, report)
    return True


def reload_job(label: str, path: Path, report: Report) -> None:
    """bootout + bootstrap, so launchd runs what the file now says (only if it was loaded)."""
    if shutil.which("launchctl") is None:
        report(f"{label}: launchctl not available; load it yourself")
        return
    launchctl, job = find_job(label)
    if job is None:
        report(f"{label}: not loaded; left unloaded")
        return
    launchctl.bootout(label)
    if not wait_until_unloaded(launchctl, label, job.pid, unload_timeout(job)):
        raise LaunchctlError(
            0, f"{label}: booted out for the reload but PID {job.pid} has not exited; bootstrap it later"
        )
    launchctl.bootstrap(path)
    report(f"{label}: reloaded in {launchctl.domain}")


def run_doctor(home: Home, settings: AgentSettings, apply_fix: bool, report: Report) -> int:
    """Report per file; with fix, repair what can be repaired. Exit 1 while anything is wrong."""
    agents = scan(settings.agents_dir)
    if not agents:
        report(f"no gateway LaunchAgents in {settings.agents_dir}")
        return 0
    if apply_fix:
        changed = [agent.path for agent in agents if fix(agent, home, report)]
        if changed:
            agents = scan(settings.agents_dir)
        else:
            report("nothing to fix")
    for agent in agents:
        if agent.healthy:
            report(f"ok    {agent.path}")
            continue
        report(f"FAIL  {agent.path}")
        for finding in agent.findings:
            hint = "" if apply_fix or not finding.fixable else " [--fix repairs this]"
            report(f"      - {finding.problem}{hint}")
    return 0 if all(agent.healthy for agent in agents) else 1
