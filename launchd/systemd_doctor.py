"""Doctor for systemd --user: find gateway units that will misbehave, and fix them by our rules.

The launchd doctor's rules (doctor.py), in systemd's words, per unit file in the user unit
directory (ours and other gateways', e.g. a `hermes-gateway.service` carrying `--replace`):
`--replace` in ExecStart, `Restart=always` (a start that kills the running gateway, restarted
forever, fights the supervisor), no restart after a crash, a missing program, a shell wrapper,
secrets in Environment=, two units for one profile, a file changed without `daemon-reload`, a unit
systemd keeps restarting or gave up on — and, once per machine, linger off (the user manager and
every gateway it runs die when the last SSH session logs out). `--fix` backs each file up, rewrites
it, runs `systemctl --user daemon-reload`, restarts what was running and enables linger; a second
`--fix` changes nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gateway_core.config import ConfigError, Home, load_profile

from .doctor import SECRET_NAME, SHELLS, Finding, backup_path
from .service import Report
from .systemctl import Systemctl, SystemctlError, enable_linger, linger_enabled
from .systemd import UnitSettings
from .unit import (
    DEFAULT_RESTART_SEC,
    UNIT_PREFIX,
    RawUnit,
    UnitError,
    format_exec,
    format_unit,
    last_value,
    parse_environment,
    parse_exec,
    read_unit,
    render_unit,
    values,
    write_unit_text,
)

GATEWAY_UNIT_GLOBS = ("*gateway*.service", f"{UNIT_PREFIX}*.service")
EXEC_PREFIXES = "-@:+!"  # ExecStart's special prefixes before the program path
DEFAULT_DRAIN = 20.0


@dataclass
class UnitFile:
    path: Path
    raw: RawUnit | None
    findings: list[Finding] = field(default_factory=list)
    reload_only: bool = False  # the file is fine but systemd runs an older copy

    @property
    def args(self) -> list[str]:
        value = last_value(self.raw or [], "Service", "ExecStart")
        try:
            return parse_exec(value) if value else []
        except ValueError:
            return []

    @property
    def program(self) -> str:
        return self.args[0].lstrip(EXEC_PREFIXES) if self.args else ""

    @property
    def ours(self) -> bool:
        args = self.args
        return "gateway_core" in args or os.path.basename(self.program) == "gatewatch"

    @property
    def profile(self) -> str:
        args = self.args
        for i, arg in enumerate(args):
            if arg in ("--profile", "-p") and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--profile="):
                return arg.split("=", 1)[1]
        stem = self.path.name.removesuffix(".service")
        return stem.removeprefix(UNIT_PREFIX) if self.ours else stem.rsplit("-", 1)[-1]

    @property
    def family(self) -> str:
        if self.ours:
            return "gatewatch"
        stem = self.path.name.removesuffix(".service")
        return stem.removesuffix(self.profile).rstrip(".-@") or stem

    @property
    def healthy(self) -> bool:
        return not self.findings


def examine_rules(unit: UnitFile) -> list[Finding]:
    raw, ours = unit.raw or [], unit.ours
    findings: list[Finding] = []
    args = unit.args
    restart = last_value(raw, "Service", "Restart")
    if not args:
        findings.append(Finding("no ExecStart: systemd has nothing to run", False))
    if "--replace" in args:
        findings.append(
            Finding(
                "ExecStart carries --replace: each start kills the running gateway, systemd counts that as a failure "
                "and starts another, and two gateways fight over one Feishu app",
                True,
            )
        )
    if restart == "always":
        findings.append(
            Finding(
                "Restart=always: systemd restarts even a clean stop, so a gateway that stops itself (or a --replace "
                "start that kills it) comes back forever; use Restart=on-failure",
                True,
            )
        )
    elif restart in (None, "no"):
        findings.append(Finding("no Restart=: a crashed gateway stays down; use Restart=on-failure", True))
    if args and (not os.path.isabs(unit.program) or not os.access(unit.program, os.X_OK)):
        findings.append(
            Finding(
                f"program {unit.program} does not exist or is not executable (systemd needs an absolute path)", ours
            )
        )
    if args and os.path.basename(unit.program) in SHELLS:
        findings.append(
            Finding(
                "runs a shell wrapper: systemd's MainPID is the shell's, not the gateway's; run the gateway itself",
                False,
            )
        )
    environment = parse_environment(values(raw, "Service", "Environment"))
    for name in sorted(environment):
        if SECRET_NAME.search(name):
            findings.append(
                Finding(
                    f"Environment= carries {name}: secrets never belong in a unit file (anyone can read it, and "
                    "`systemctl show` prints it); use a *_file secret readable only by you",
                    ours,
                )
            )
    return findings


def scan(unit_dir: Path, probe_systemd: bool = True) -> list[UnitFile]:
    paths: set[Path] = set()
    if unit_dir.is_dir():
        for pattern in GATEWAY_UNIT_GLOBS:
            paths.update(p for p in unit_dir.glob(pattern) if p.is_file())
    units = []
    for path in sorted(paths):
        try:
            raw = read_unit(path)
        except UnitError as error:
            units.append(UnitFile(path, None, [Finding(f"does not parse: {error}", False)]))
            continue
        unit = UnitFile(path, raw)
        unit.findings = examine_rules(unit)
        units.append(unit)
    by_profile: dict[tuple[str, str], list[UnitFile]] = {}
    for unit in units:
        if unit.raw is not None and unit.args:
            by_profile.setdefault((unit.family, unit.profile), []).append(unit)
    for (family, profile), group in by_profile.items():
        if len(group) > 1:
            for unit in group:
                others = ", ".join(o.path.name for o in group if o is not unit)
                unit.findings.append(
                    Finding(
                        f"two units for {family} profile '{profile}' (also {others}): they would fight over one "
                        "Feishu app; remove all but one",
                        False,
                    )
                )
    if probe_systemd and shutil.which("systemctl") is not None:
        for unit in units:
            if unit.raw is not None:
                unit.findings.extend(state_findings(unit))
    return units


def state_findings(unit: UnitFile) -> list[Finding]:
    """What systemd says about the loaded unit: an outdated copy, a restart loop, a failure."""
    try:
        state = Systemctl().show(unit.path.name)
    except SystemctlError:
        return []
    if state is None:
        return []
    found = []
    if state.need_daemon_reload:
        unit.reload_only = True
        found.append(Finding("changed on disk but systemd still runs the old copy (daemon-reload needed)", True))
    if state.looping or state.active_state == "failed":
        found.append(
            Finding(
                f"systemd reports it {state.active_state} after {state.restarts} restarts, last "
                f"{state.describe_last_exit()} (result {state.result}); see 'gatewatch systemd status'",
                False,
            )
        )
    return found


def apply_rules(unit: UnitFile, home: Home) -> str | None:
    """The file's new text by our rules, or None when there is nothing to rewrite."""
    raw = unit.raw or []
    if unit.ours:
        profile = unit.profile
        try:
            drain = load_profile(home, profile).drain_timeout
        except ConfigError:
            drain = DEFAULT_DRAIN  # the profile's own problem; `status` and `install` report it
        restart_sec = last_value(raw, "Service", "RestartSec") or ""
        data = render_unit(
            home,
            profile,
            drain_timeout=drain,
            restart_sec=int(restart_sec) if restart_sec.isdigit() else DEFAULT_RESTART_SEC,
        )
        return format_unit(data)
    fixed: RawUnit = []
    has_restart = False
    for section, key, value in raw:
        if section == "Service" and key == "ExecStart":
            value = format_exec([a for a in parse_exec(value) if a != "--replace"])
        elif section == "Service" and key == "Restart":
            has_restart = True
            value = "on-failure" if value in ("always", "no", "") else value
        fixed.append((section, key, value))
    if not has_restart:
        fixed.append(("Service", "Restart", "on-failure"))
    return format_raw(fixed)


def format_raw(raw: RawUnit) -> str:
    sections: dict[str, list[str]] = {}
    for section, key, value in raw:
        sections.setdefault(section, []).append(f"{key}={value}")
    return "\n\n".join(f"[{s}]\n" + "\n".join(lines) for s, lines in sections.items()) + "\n"


def fix(unit: UnitFile, home: Home, report: Report) -> bool:
    """Rewrite one unit file by our rules; False when nothing needed changing."""
    if unit.raw is None or not any(f.fixable for f in unit.findings):
        return False
    text = apply_rules(unit, home)
    current = unit.path.read_text(encoding="utf-8")
    if text is None or text == current:
        return unit.reload_only  # only systemd's copy is old: the reload that follows is the fix
    backup = backup_path(unit.path)
    shutil.copy2(unit.path, backup)
    report(f"{unit.path.name}: backed up to {backup.name}")
    if unit.ours:
        home.logs.mkdir(parents=True, exist_ok=True)
    write_unit_text(unit.path, text)
    report(f"{unit.path.name}: rewritten")
    return True


def reload_units(changed: list[UnitFile], report: Report) -> None:
    """daemon-reload, then restart what was running so systemd runs what the files now say."""
    if shutil.which("systemctl") is None:
        report("systemctl not available; run 'systemctl --user daemon-reload' yourself")
        return
    systemctl = Systemctl()
    systemctl.daemon_reload()
    report("systemctl --user daemon-reload: done")
    for unit in changed:
        state = systemctl.show(unit.path.name)
        if state is not None and state.running:
            systemctl.restart(unit.path.name)
            report(f"{unit.path.name}: restarted")


def run_doctor(home: Home, settings: UnitSettings, apply_fix: bool, report: Report) -> int:
    """Report per file and the machine's linger; with fix, repair what can be. Exit 1 while anything is wrong."""
    units = scan(settings.unit_dir)
    linger = linger_enabled() if units else True
    if not units:
        report(f"no gateway units in {settings.unit_dir}")
        return 0
    if apply_fix:
        changed = [unit for unit in units if fix(unit, home, report)]
        if changed:
            reload_units(changed, report)
        if linger is False:
            enable_linger()
            report("linger enabled: the user manager now outlives your sessions")
        if changed or linger is False:
            units, linger = scan(settings.unit_dir), linger_enabled()
        else:
            report("nothing to fix")
    for unit in units:
        if unit.healthy:
            report(f"ok    {unit.path}")
            continue
        report(f"FAIL  {unit.path}")
        for finding in unit.findings:
            hint = "" if apply_fix or not finding.fixable else " [--fix repairs this]"
            report(f"      - {finding.problem}{hint}")
    if linger is False:
        report(
            "FAIL  linger is off (loginctl show-user says Linger=no): every gateway stops when your last session "
            "ends, e.g. at SSH logout" + ("" if apply_fix else " [--fix repairs this]")
        )
    return 0 if all(unit.healthy for unit in units) and linger is not False else 1
