"""The demo's fault menu (`f`): break the gateway on purpose and watch the console show it heal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .choice import Choice, ChoiceModal


@dataclass(frozen=True)
class Fault:
    id: str
    label: str
    key: str
    inject: Callable[[], str]  # blocking; runs on a worker thread; returns what happened


def fault_menu(faults: list[Fault]) -> ChoiceModal:
    return ChoiceModal(
        "Inject a fault (demo only)",
        "Each fault happens behind the gateway's back; watch the panels show it, then heal.",
        [Choice(f.id, f.label, f.key) for f in faults],
    )
