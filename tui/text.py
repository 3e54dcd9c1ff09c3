"""Small, pure formatting helpers shared by the panels: durations, ages, states in words.

Every state is rendered as a word first and a colour second, so the console reads the same
with NO_COLOR set or over a monochrome SSH session.
"""

from __future__ import annotations

import time

from rich.text import Text

from gateway_core.states import Outcome

# The style of each state word; anything unknown is shown dim rather than guessed at.
STATE_STYLES: dict[str, str] = {
    # gateway
    "running": "bold green",
    "starting": "bold yellow",
    "draining": "bold yellow",
    "stopped": "bold red",
    "unreachable": "bold red",  # attached, and the gateway's control socket no longer answers
    "exited": "bold red",  # attached, and the owner is gone
    # the health model's verdict (shown instead of "running")
    "unhealthy": "bold red",
    # executor
    "healthy": "bold green",
    "busy": "bold yellow",
    "degraded": "bold yellow",
    "replaced": "bold yellow",
    "dead": "bold red",
    # Feishu
    "connected": "bold green",
    "connecting": "bold yellow",
    "reconnecting": "bold yellow",
    "idle": "dim",
    "failed": "bold red",
    # model breaker and message outcomes
    "closed": "green",
    "open": "bold red",
    Outcome.ANSWERED: "green",
    Outcome.APOLOGISED: "yellow",
    Outcome.UNSUPPORTED: "dim",
    Outcome.COMMAND: "cyan",
    Outcome.IGNORED: "dim",
    Outcome.REFUSED: "magenta",  # stopped at the access gate (issue 19)
    Outcome.REPLY_FAILED: "bold red",
}


def state_word(state: str) -> Text:
    """`● HEALTHY` in the state's colour; the word alone carries the meaning."""
    return Text(f"● {state.upper()}", style=STATE_STYLES.get(state, "dim"))


def duration(seconds: float | None) -> str:
    """A compact human duration: 45s, 3m05s, 2h04m, 3d02h."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def age(at: float | None, now: float) -> str:
    """How long ago a wall-clock instant was: '4s ago', or '—' when it never happened."""
    if at is None:
        return "—"
    return f"{duration(now - at)} ago"


def millis(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def clock_time(at: float) -> str:
    """HH:MM:SS in local time (the operator's clock, as in the gateway's log file)."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def size(nbytes: int | None) -> str:
    if nbytes is None:
        return "—"
    if nbytes < 1024 * 1024:
        return f"{nbytes / 1024:.0f}KB"
    if nbytes < 1024**3:
        return f"{nbytes / 1024**2:.1f}MB"
    return f"{nbytes / 1024**3:.1f}GB"


def lines(*rows: Text | str) -> Text:
    """Join rows into one Text; plain strings are taken literally, never parsed as markup."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for index, row in enumerate(rows):
        if index:
            out.append("\n")
        out.append_text(row if isinstance(row, Text) else Text(row))
    return out


def labelled(label: str, value: Text | str, style: str = "") -> Text:
    """`label value` with a dim label; the value is literal text (it may be untrusted)."""
    out = Text(f"{label} ", style="dim")
    out.append_text(value if isinstance(value, Text) else Text(value, style=style))
    return out
