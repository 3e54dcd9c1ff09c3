"""`q`: leaving the console stops the gateway it runs, so ask how, naming the profile."""

from __future__ import annotations

from .choice import Choice, ChoiceModal

STOP, HAND_BACK, CANCEL = "stop", "hand_back", "cancel"


def quit_confirm(profile: str, described: str, manager: str | None = "launchd") -> ChoiceModal:
    """`manager` is this machine's service manager (launchd, systemd); None (the demo: no gatewatch
    home) leaves out the hand-back it could not do."""
    body = f"Profile '{profile}' is served by this console ({described}).\n" + (
        f"Quitting stops answering messages unless {manager} takes it over."
        if manager
        else "Quitting stops answering messages."
    )
    choices = [Choice(STOP, "stop the gateway and quit (in-flight answers finish first)", "s")]
    if manager:
        choices.append(Choice(HAND_BACK, f"hand the profile back to {manager} and quit", "h"))
    choices.append(Choice(CANCEL, "cancel — keep serving", "c"))
    return ChoiceModal("Quit the console?", body, choices, cancel=CANCEL)


def hand_back_confirm(profile: str, described: str, manager: str = "launchd") -> ChoiceModal:
    return ChoiceModal(
        f"Hand the profile back to {manager}?",
        f"This console ({described}) stops serving '{profile}' after in-flight answers finish,\n"
        f"then {manager} starts its gateway and the console quits.",
        [Choice(HAND_BACK, "hand back and quit", "y"), Choice(CANCEL, "cancel — keep serving", "n")],
        cancel=CANCEL,
    )
