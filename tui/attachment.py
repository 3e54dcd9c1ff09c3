"""Attached to another process's gateway: each change of its state said once, in one line.

RemoteSource (tui/remote.py) knows the mode — answering over its socket, unreachable, exited;
this turns a change of mode or owner into the notice the operator sees: re-attached, UNREACHABLE
with why, or exited with the offer to serve the profile here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .remote import RemoteSource
from .source import GatewaySource


@dataclass(frozen=True)
class News:
    text: str
    style: dict[str, Any] = field(default_factory=dict)  # notify's title, severity, timeout


class AttachWatch:
    """Remembers what was said last about an attached source, so each change is said once."""

    def __init__(self) -> None:
        self._said = ""

    def news(self, source: GatewaySource, can_serve_here: bool) -> News | None:
        if not isinstance(source, RemoteSource):
            return None
        word = f"{source.mode} {source.owner.pid} {source.attaches}"
        if word == self._said:
            return None
        self._said = word
        if source.mode == "socket" and source.attaches > 1:
            return News(f"re-attached to PID {source.owner.pid} ({source.owner.owner})")
        if source.mode == "unreachable":
            return News(source.gone_sentence(), {"title": "UNREACHABLE", "severity": "error"})
        if source.mode == "exited":
            offer = "; press s to serve the profile here" if can_serve_here else ""
            return News(source.gone_sentence() + offer, {"title": "gateway exited", "severity": "error", "timeout": 15})
        return News("", {})  # a change with nothing to say (the first attach): keys may change all the same
