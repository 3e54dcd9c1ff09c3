"""The `gatewatch` command. Bad input ends in one line and a documented exit code, never a traceback.

It lives in `tui`, the top layer, because it is the only place that knows every layer: the gateway
(`gateway_core`), the service managers (`launchd`: LaunchAgents and systemd units) and the console. Only `console`, `demo` and a take-over
that opens the console import Textual, and only when they run: `status`, `run --headless` and
`profile` stay as fast as the gateway itself. (`python -m gateway_core run --headless` is the
gateway's own entry, without this module, for launchd's plists.)
"""

from __future__ import annotations

import argparse
import sys

from gateway_core.config import (
    ConfigError,
    Home,
    access_warnings,
    describe_profile,
    load_profile,
    required_keys,
    write_profile_template,
)

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewatch",
        description="Feishu/Lark to LLM gateway with an operations console.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    console = commands.add_parser(
        "console", help="open the console: every profile at a glance (the default command), or one with --profile"
    )
    console.add_argument("--profile", default=None, help="open this profile's own view (Esc: the fleet)")

    run = commands.add_parser("run", help="run the gateway for one profile")
    run.add_argument("--profile", default="default")
    run.add_argument("--headless", action="store_true", help="without the console (how launchd runs it)")

    demo = commands.add_parser("demo", help="the gateway on a local Feishu simulator and local LLM")
    demo.add_argument("--headless", action="store_true", help="print the conversation instead of the console")
    demo.add_argument("--messages", type=int, default=0, help="with --headless: extra scripted messages")

    status = commands.add_parser("status", help="is each profile's gateway really alive? (exit 1 if not)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    access = commands.add_parser("access", help="who may talk to the bot: pairing codes, approvals")
    access_commands = access.add_subparsers(dest="access_command", metavar="ACTION", required=True)
    approve = access_commands.add_parser("approve", help="approve the person who was given this pairing code")
    approve.add_argument("code")
    approve.add_argument("--profile", default="default")
    listed = access_commands.add_parser("list", help="allowed open_ids and pending pairing codes")
    listed.add_argument("--profile", default="default")
    revoke = access_commands.add_parser("revoke", help="take an approval back")
    revoke.add_argument("open_id")
    revoke.add_argument("--profile", default="default")

    from launchd.cli import add_arguments as add_service_arguments  # no UI imports there

    launchd = commands.add_parser("launchd", help="LaunchAgent per profile (macOS): install, status, hand over, doctor")
    add_service_arguments(launchd, "launchd")
    systemd = commands.add_parser(
        "systemd", help="systemd --user unit per profile (Linux): install, status, hand over, doctor"
    )
    add_service_arguments(systemd, "systemd")

    profile = commands.add_parser("profile", help="create, list and show profiles")
    profile_commands = profile.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    init = profile_commands.add_parser("init", help="write a commented profile template")
    init.add_argument("name")
    profile_commands.add_parser("list", help="list profiles")
    show = profile_commands.add_parser("show", help="show a profile, secrets as ***; flags missing secrets")
    show.add_argument("name")
    check = profile_commands.add_parser(
        "check", help="can this profile reach Feishu and the LLM, and does each model exist? (exit 1 if not)"
    )
    check.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    home = Home.from_env()
    try:
        return _dispatch(args, home)
    except ConfigError as error:
        print(f"gatewatch: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, home: Home) -> int:
    command = args.command or "console"
    if command == "profile":
        return _profile(args, home)
    if command == "access":
        return _access(args, home)
    if command == "run":
        if not args.headless:
            return open_console(home, args.profile)
        profile = load_profile(home, args.profile)  # fail fast on bad config, before heavy imports
        from gateway_core.headless import run_headless

        return run_headless(profile, home)
    if command == "status":
        from gateway_core.status import collect_status, render_status, status_exit_code

        statuses = collect_status(home)
        print(render_status(statuses, args.json))
        return status_exit_code(statuses)
    if command in ("launchd", "systemd"):
        from launchd.cli import run as run_service

        return run_service(args, home, open_console=open_console)
    if command == "demo":
        if args.headless:
            from gateway_core.demo import run_headless_demo

            return run_headless_demo(extra_messages=args.messages)
        from .demo import run_console_demo

        return run_console_demo()
    profile_name: str | None = getattr(args, "profile", None)
    if profile_name is None:
        from .app import run_fleet  # lazy: Textual is loaded only when a console opens

        return run_fleet(home)
    return open_console(home, profile_name)


def open_console(home: Home, profile_name: str) -> int:
    """The console on one profile (also what `launchd|systemd takeover` opens: that layer never imports the UI)."""
    from .app import run_console  # lazy: Textual is loaded only when a console opens

    return run_console(home, profile_name)


def _profile(args: argparse.Namespace, home: Home) -> int:
    if args.profile_command == "init":
        path = write_profile_template(home, args.name)
        print(f"wrote {path}: set {', '.join(required_keys())} (the secrets by their source)")
        return 0
    if args.profile_command == "list":
        names = home.profile_names()
        if not names:
            print(f"no profiles in {home.profiles}; create one with: gatewatch profile init default")
        for name in names:
            print(name)
        return 0
    if args.profile_command == "check":
        from gateway_core.profile_check import check_profile

        return check_profile(load_profile(home, args.name), print)
    # Shown even when its secrets are not in place yet (a fresh template): that is when it is read.
    profile = load_profile(home, args.name, require_secrets=False)
    shown = describe_profile(profile)
    width = max(map(len, shown)) + 1
    for key, value in shown.items():
        print(f"{key:{width}} {value}")
    for problem in [*profile.secret_problems, *access_warnings(profile)]:
        print(f"warning: {problem}")
    return 0


def _access(args: argparse.Namespace, home: Home) -> int:
    """Unknown or expired code, an open_id not approved, an unreachable gateway: one line, exit 1."""
    import time

    from gateway_core.access import AccessOp, render_listing
    from gateway_core.access_admin import AccessError, ControlError, administer

    op = AccessOp(args.access_command)
    argument = args.code if op == AccessOp.APPROVE else getattr(args, "open_id", None)
    try:
        result = administer(home, args.profile, op, argument)
    except (AccessError, ControlError) as error:
        print(f"gatewatch: {error}", file=sys.stderr)
        return 1
    if op == AccessOp.LIST:
        print(render_listing(result, time.time()))
    elif op == AccessOp.APPROVE:
        print(f"approved {result['approved']}: the bot answers them from now on")
    else:
        print(f"revoked {result['revoked']}: the bot no longer answers them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
