"""`gatewatch run --headless`: the gateway as a plain process, the way launchd runs it.

Exit codes are chosen for launchd's `KeepAlive {SuccessfulExit: false}`: 0 only when stopped on
purpose (SIGTERM/SIGINT after draining), so launchd does not respawn it; non-zero for anything that
should be noticed (1 Feishu refused the credentials, 2 bad profile, 3 profile owned by another or
its Feishu app served by another profile, 4 the inbox journal is damaged or its directory
unwritable — the gateway never runs without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading

from .config import Home, Profile
from .gateway import Gateway
from .journal import JournalError
from .ownership import AppIdBusy, ProfileBusy
from .states import FeishuState

log = logging.getLogger("gatewatch.headless")

EXIT_OK, EXIT_FATAL, EXIT_BUSY, EXIT_JOURNAL = 0, 1, 3, 4  # 2, a bad profile, is the CLI's
FATAL_CHECK_INTERVAL = 0.5


def say(line: str) -> None:
    """One line for the operator (stderr; under launchd it lands in the job's log file)."""
    print(f"gatewatch: {line}", file=sys.stderr, flush=True)


def run_headless(profile: Profile, home: Home) -> int:
    code = asyncio.run(serve(profile, home))
    if _workers_still_busy():
        # A worker of the held pool may still sit in a blocking request whose answer was cancelled
        # at the drain deadline (its message is in the journal for the next owner). Python would
        # join it at exit — up to llm.request_timeout, past the drain budget and launchd's
        # ExitTimeOut. The journal is closed and the lock released: leave now.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    return code


def _workers_still_busy() -> bool:
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())


async def serve(profile: Profile, home: Home) -> int:
    gateway = Gateway(profile, home, owner="headless")
    try:
        await gateway.start()
    except (ProfileBusy, AppIdBusy) as busy:
        say(str(busy))
        return EXIT_BUSY
    except JournalError as exc:
        say(f"{exc} (exit {EXIT_JOURNAL})")
        return EXIT_JOURNAL
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.request_stop, signal.Signals(signum).name)
    say(f"serving profile '{profile.name}' (pid {os.getpid()}); logs: {home.log_file(profile.name)}")
    announced = False
    verdict = "unhealthy"  # until Feishu first connects, "not connected yet" lines say why
    fatal: str | None = None
    next_report = loop.time() + profile.not_connected_report
    while not gateway.stop_requested.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(gateway.stop_requested.wait(), FATAL_CHECK_INTERVAL)  # also a check period
        feishu = gateway.feishu.snapshot()
        if feishu.state == FeishuState.CONNECTED and not announced:
            say(f"Feishu connected (conn_id {feishu.conn_id})")
            announced = True
        elif not announced and loop.time() >= next_report:
            # Silence until the first connection would look like a healthy start: say why, repeatedly.
            say(f"not connected yet: {feishu.last_error or feishu.detail or feishu.state}")
            next_report = loop.time() + profile.not_connected_report
        if announced:
            # Whoever reads launchd's log sees each change of the verdict, with the reasons.
            health = gateway.snapshot().health
            assert health is not None  # a snapshot judges itself when it is made
            if health.verdict != verdict:
                say(f"health: {health.one_line()}")
                verdict = health.verdict
        if gateway.feishu.failed_for_good():
            fatal = feishu.last_error or "Feishu refused the connection"
            break
        if gateway.journal_failure:
            break  # never keep serving without durability: what is journaled waits for the next owner
    journal_failure = gateway.journal_failure
    unfinished = await gateway.stop()
    if fatal:
        say(f"Feishu refused the app credentials: {fatal}; fix feishu.app_id / the app secret in {profile.path}")
        return EXIT_FATAL
    if journal_failure:
        say(f"{journal_failure}; stopped (exit {EXIT_JOURNAL}): fix {home.state}, then start again")
        return EXIT_JOURNAL
    if unfinished:
        say(f"stopped; {unfinished} unfinished answers handed on to the next owner (kept in the journal)")
    else:
        say("stopped")
    return EXIT_OK
