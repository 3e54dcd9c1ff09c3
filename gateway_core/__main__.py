"""`python -m gateway_core run --headless --profile P`: the gateway alone, as launchd's plists run it.

The gateway's own entry, so the process launchd keeps alive loads neither the console nor the
launchd tooling. Everything else (`status`, `profile`, `launchd`, the console) is the `gatewatch`
command, in `tui/cli.py`. Exit codes are headless.py's; a bad profile is 2, in one line.
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, Home, load_profile

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway_core",
        description="Run one profile's gateway without a console (the console and every other command: gatewatch).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the gateway for one profile")
    run.add_argument("--profile", default="default")
    run.add_argument("--headless", action="store_true", required=True, help="without the console (the only mode here)")
    args = parser.parse_args(argv)
    home = Home.from_env()
    try:
        profile = load_profile(home, args.profile)  # fail fast on bad config, before heavy imports
        from .headless import run_headless

        return run_headless(profile, home)
    except ConfigError as error:
        print(f"gatewatch: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
