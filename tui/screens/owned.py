"""Shown instead of the console when another gateway owns the profile: who, and what can be done.

gatewatch never kills the running owner; the choices only ever ask it to step aside.
"""

from __future__ import annotations

from gateway_core.ownership import ProfileBusy

from .choice import Choice, ChoiceModal

ATTACH, TAKE_OVER, QUIT = "attach", "take_over", "quit"


def owned_by_another(busy: ProfileBusy, manager: str = "launchd") -> ChoiceModal:
    holder = busy.holder.describe() if busy.holder else "another process (owner unknown)"
    body = (
        f"Profile '{busy.profile}' is already served by {holder}.\n"
        "This console will not start a second gateway for it, and never kills the owner."
    )
    return ChoiceModal(
        "Profile owned by another gateway",
        body,
        [
            Choice(ATTACH, "attach to it (watch and operate it from here)", "a"),
            Choice(TAKE_OVER, f"take it over from {manager} ({manager} stops its job first)", "t"),
            Choice(QUIT, "quit", "q"),
        ],
        cancel=QUIT,
    )
