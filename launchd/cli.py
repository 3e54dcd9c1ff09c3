"""`gatewatch launchd install|uninstall|status|handback|takeover|doctor`.

Every failure ends in one line on stderr and exit 1 (bad profile: exit 2, via the main CLI);
every step of a hand-over is printed as it happens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from gateway_core.config import Home, load_profile

from .agents import AgentError, AgentSettings, install, installed_profiles, status, uninstall
from .doctor import run_doctor
from .handover import HandoverError, hand_back, take_over
from .launchctl import LaunchctlError
from .plist import DEFAULT_PREFIX, DEFAULT_THROTTLE_INTERVAL, PlistError, agents_dir_default

EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="launchd_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, all_help: str | None = None) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--profile", default="default")
        if all_help:
            sub.add_argument("--all", action="store_true", help=all_help)
        sub.add_argument(
            "--agents-dir", type=Path, default=None, help="LaunchAgents directory (default ~/Library/LaunchAgents)"
        )
        sub.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"job label prefix (default {DEFAULT_PREFIX})")
        return sub

    inst = action("install", "write the profile's LaunchAgent and load it", "every profile in GATEWATCH_HOME")
    inst.add_argument(
        "--throttle-interval",
        type=int,
        default=DEFAULT_THROTTLE_INTERVAL,
        help="seconds launchd waits before restarting a failed gateway",
    )
    action("uninstall", "unload the profile's LaunchAgent and remove its plist", "every installed profile")
    action("status", "what launchd and the profile lock say", "every installed profile")
    handback = action("handback", "let launchd run the profile again and wait until it serves")
    handback.add_argument("--timeout", type=float, default=None, help="seconds to wait for each step")
    takeover = action("takeover", "stop launchd's gateway for the profile and run it here")
    takeover.add_argument("--headless", action="store_true", help="run the gateway here without the console")
    takeover.add_argument("--timeout", type=float, default=None, help="seconds to wait for launchd's gateway to exit")
    doctor = action("doctor", "check gateway LaunchAgents (ours and others') for known mistakes")
    doctor.add_argument("--fix", action="store_true", help="back up, rewrite and reload what can be fixed")


OpenConsole = Callable[[Home, str], int]


def run(args: argparse.Namespace, home: Home, open_console: OpenConsole | None = None) -> int:
    """Run one launchd action. `open_console` is what `takeover` runs afterwards without --headless:
    the caller (the `gatewatch` command in `tui`) passes the console in; launchd never imports the UI."""
    settings = AgentSettings(
        agents_dir=(args.agents_dir or agents_dir_default()).expanduser().absolute(),
        prefix=args.prefix,
        throttle_interval=getattr(args, "throttle_interval", DEFAULT_THROTTLE_INTERVAL),
    )
    try:
        if args.launchd_command == "takeover":
            return _takeover(args, home, settings, open_console)
        return ACTIONS[args.launchd_command](args, home, settings)
    except (AgentError, HandoverError, LaunchctlError, PlistError) as error:
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


def _install(args, home: Home, settings: AgentSettings) -> int:
    for name in profiles_for(args, home.profile_names):
        install(home, name, settings, say)
    return 0


def _uninstall(args, home: Home, settings: AgentSettings) -> int:
    for name in profiles_for(args, lambda: installed_profiles(settings)):
        uninstall(home, name, settings, say)
    return 0


def _status(args, home: Home, settings: AgentSettings) -> int:
    trouble = False
    for name in profiles_for(args, lambda: installed_profiles(settings)):
        report = status(home, name, settings)
        for line in report.lines():
            say(line)
        trouble = trouble or report.trouble
    return EXIT_FAILED if trouble else 0


def _handback(args, home: Home, settings: AgentSettings) -> int:
    hand_back(home, args.profile, say, timeout=args.timeout, settings=settings)
    return 0


def _takeover(args, home: Home, settings: AgentSettings, open_console: OpenConsole | None) -> int:
    profile = load_profile(home, args.profile)  # a broken profile fails here, before launchd's job stops
    take_over(home, args.profile, say, timeout=args.timeout, settings=settings)
    if not args.headless:
        if open_console is not None:
            return open_console(home, args.profile)
        say("no console here; running the gateway without it")
    say(
        f"running profile '{args.profile}' here; stop with Ctrl-C, then: gatewatch launchd handback --profile {args.profile}"
    )
    from gateway_core.headless import run_headless

    return run_headless(profile, home)


def _doctor(args, home: Home, settings: AgentSettings) -> int:
    return run_doctor(home, settings, apply_fix=args.fix, report=say)


ACTIONS = {
    "install": _install,
    "uninstall": _uninstall,
    "status": _status,
    "handback": _handback,
    "doctor": _doctor,
}
