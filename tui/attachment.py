"""Attached to another process's gateway: each change of its state said once, in one line.

RemoteSource (tui/remote.py) knows the mode — answering over its socket, unreachable, exited;
this turns a change of mode or owner into the notice the operator sees: re-attached, UNREACHABLE
with why, or exited with the offer to serve the profile here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .source import Attachment, AttachMode


@dataclass(frozen=True)
class News:
    text: str
    style: dict[str, Any] = field(default_factory=dict)  # notify's title, severity, timeout


class AttachWatch:
    """Remembers what was said last about an attached source, so each change is said once."""

    def __init__(self) -> None:
        self._said = ""

    def news(self, attached: Attachment | None, can_serve_here: bool) -> News | None:
        if attached is None:
            return None
        word = f"{attached.mode} {attached.owner.pid} {attached.attaches}"
        if word == self._said:
            return None
        self._said = word
        if attached.mode == AttachMode.SOCKET and attached.attaches > 1:
            return News(f"re-attached to PID {attached.owner.pid} ({attached.owner.owner})")
        if attached.mode == AttachMode.UNREACHABLE:
            return News(attached.gone, {"title": "UNREACHABLE", "severity": "error"})
        if attached.mode == AttachMode.EXITED:
            offer = "; press s to serve the profile here" if can_serve_here else ""
            return News(attached.gone + offer, {"title": "gateway exited", "severity": "error", "timeout": 15})
        return News("", {})  # a change with nothing to say (the first attach): keys may change all the same
