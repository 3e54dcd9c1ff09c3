"""`gatewatch launchd|systemd install|uninstall|status|handback|takeover|doctor`.

One set of verbs for both service managers (service.py); only the options that name where the
manager keeps its files differ. Every failure ends in one line on stderr and exit 1 (bad profile:
exit 2, via the main CLI); every step of a hand-over is printed as it happens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from gateway_core.config import Home, load_profile

from .agents import AgentError, AgentSettings, LaunchdManager
from .handover import HandoverError, hand_back, take_over
from .plist import DEFAULT_PREFIX, DEFAULT_THROTTLE_INTERVAL, PlistError, agents_dir_default
from .service import ServiceError, ServiceManager
from .unit import DEFAULT_RESTART_SEC, UnitError, unit_dir_default

EXIT_FAILED = 1
# What install and uninstall do, in each manager's words.
LOADS = {
    "launchd": ("write the profile's LaunchAgent and load it", "unload the profile's LaunchAgent and remove its plist"),
    "systemd": ("write the profile's unit, enable and start it", "stop and disable the profile's unit and remove it"),
}
WHERE = {"launchd": "LaunchAgent", "systemd": "systemd user unit"}


def add_arguments(parser: argparse.ArgumentParser, manager: str = "launchd") -> None:
    actions = parser.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    what = WHERE[manager]

    def action(name: str, help_text: str, all_help: str | None = None) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--profile", default="default")
        if all_help:
            sub.add_argument("--all", action="store_true", help=all_help)
        if manager == "launchd":
            sub.add_argument(
                "--agents-dir", type=Path, default=None, help="LaunchAgents directory (default ~/Library/LaunchAgents)"
            )
            sub.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"job label prefix (default {DEFAULT_PREFIX})")
        else:
            sub.add_argument(
                "--unit-dir", type=Path, default=None, help="user unit directory (default ~/.config/systemd/user)"
            )
        return sub

    inst = action("install", LOADS[manager][0], "every profile in GATEWATCH_HOME")
    if manager == "launchd":
        inst.add_argument(
            "--throttle-interval",
            type=int,
            default=DEFAULT_THROTTLE_INTERVAL,
            help="seconds launchd waits before restarting a failed gateway",
        )
    else:
        inst.add_argument(
            "--restart-sec",
            type=int,
            default=DEFAULT_RESTART_SEC,
            help="seconds systemd waits before restarting a failed gateway",
        )
    action("uninstall", LOADS[manager][1], "every installed profile")
    action("status", f"what {manager} and the profile lock say", "every installed profile")
    handback = action("handback", f"let {manager} run the profile again and wait until it serves")
    handback.add_argument("--timeout", type=float, default=None, help="seconds to wait for each step")
    takeover = action("takeover", f"stop {manager}'s gateway for the profile and run it here")
    takeover.add_argument("--headless", action="store_true", help="run the gateway here without the console")
    takeover.add_argument(
        "--timeout", type=float, default=None, help=f"seconds to wait for {manager}'s gateway to exit"
    )
    doctor = action("doctor", f"check gateway {what}s (ours and others') for known mistakes")
    doctor.add_argument("--fix", action="store_true", help="back up, rewrite and reload what can be fixed")


def manager_from(args: argparse.Namespace) -> ServiceManager:
    """The manager the command names, with the directories and timings its options give."""
    if args.command == "launchd":
        return LaunchdManager(
            AgentSettings(
                agents_dir=(args.agents_dir or agents_dir_default()).expanduser().absolute(),
                prefix=args.prefix,
                throttle_interval=getattr(args, "throttle_interval", DEFAULT_THROTTLE_INTERVAL),
            )
        )
    from .systemd import SystemdManager, UnitSettings

    return SystemdManager(
        UnitSettings(
            unit_dir=(args.unit_dir or unit_dir_default()).expanduser().absolute(),
            restart_sec=getattr(args, "restart_sec", DEFAULT_RESTART_SEC),
        )
    )


OpenConsole = Callable[[Home, str], int]


def run(args: argparse.Namespace, home: Home, open_console: OpenConsole | None = None) -> int:
    """Run one service-manager action. `open_console` is what `takeover` runs afterwards without
    --headless: the caller (the `gatewatch` command in `tui`) passes the console in; this layer never
    imports the UI."""
    try:
        manager = manager_from(args)
        if args.service_command == "takeover":
            return _takeover(args, home, manager, open_console)
        return ACTIONS[args.service_command](args, home, manager)
    except (AgentError, HandoverError, ServiceError, PlistError, UnitError) as error:
        print(f"gatewatch: {error}", file=sys.stderr)
        return EXIT_FAILED


def say(line: str) -> None:
    print(line, flush=True)


def profiles_for(args: argparse.Namespace, all_source: Callable[[], list[str]]) -> list[str]:
    """--profile P, or with --all every name `all_source` lists."""
    if not getattr(args, "all", False):
        return [args.profile]
    names = all_source()
    if not names:
        say("no profiles to act on")
    return names


def _install(args: argparse.Namespace, home: Home, manager: ServiceManager) -> int:
    for name in profiles_for(args, home.profile_names):
        manager.install(home, name, say)
    return 0


def _uninstall(args: argparse.Namespace, home: Home, manager: ServiceManager) -> int:
    for name in profiles_for(args, manager.installed_profiles):
        manager.uninstall(home, name, say)
    return 0


def _status(args: argparse.Namespace, home: Home, manager: ServiceManager) -> int:
    trouble = False
    for name in profiles_for(args, manager.installed_profiles):
        report = manager.status(home, name)
        for line in report.lines():
            say(line)
        trouble = trouble or report.trouble
    return EXIT_FAILED if trouble else 0


def _handback(args: argparse.Namespace, home: Home, manager: ServiceManager) -> int:
    hand_back(home, args.profile, say, timeout=args.timeout, manager=manager)
    return 0


def _takeover(args: argparse.Namespace, home: Home, manager: ServiceManager, open_console: OpenConsole | None) -> int:
    profile = load_profile(home, args.profile)  # a broken profile fails here, before the manager's job stops
    take_over(home, args.profile, say, timeout=args.timeout, manager=manager)
    if not args.headless:
        if open_console is not None:
            return open_console(home, args.profile)
        say("no console here; running the gateway without it")
    say(
        f"running profile '{args.profile}' here; stop with Ctrl-C, then: gatewatch {manager.name} handback --profile {args.profile}"
    )
    from gateway_core.headless import run_headless

    return run_headless(profile, home)


def _doctor(args: argparse.Namespace, home: Home, manager: ServiceManager) -> int:
    return manager.doctor(home, args.fix, say)


ACTIONS = {
    "install": _install,
    "uninstall": _uninstall,
    "status": _status,
    "handback": _handback,
    "doctor": _doctor,
}
