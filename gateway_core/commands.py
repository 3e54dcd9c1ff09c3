"""In-chat commands: `/help`, `/model`, `/model NAME`, `/reset`, `/status`.

Parsing only: the gateway answers a command without calling the model, and the handlers that act
on one (switch the model, forget history, report health) are wired in the pipeline. A message
that merely starts with a slash (a path, "/shrug") is not a command unless its first word is a
command word; an unknown command word gets a hint rather than a trip to the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS = {
    "help": "/help — what I can do",
    "model": "/model — which model answers here; /model NAME — switch this chat to NAME",
    "reset": "/reset — forget this chat's history and start over",
    "status": "/status — the gateway's health in one line",
}
COMMAND_WORD = re.compile(r"/([A-Za-z][A-Za-z_-]*)(?:\s+(.*))?", re.DOTALL)


@dataclass(frozen=True)
class Command:
    """A parsed in-chat command. `name` is one of COMMANDS, or "unknown" (then `word` says which)."""

    name: str
    argument: str | None  # e.g. the model name of `/model NAME`; None when absent
    word: str  # the command word as typed, lower-cased

    @property
    def known(self) -> bool:
        return self.name in COMMANDS


def parse_command(text: str | None) -> Command | None:
    """The command in a message's text (mentions already stripped), or None for ordinary text."""
    if not text:
        return None
    match = COMMAND_WORD.fullmatch(text.strip())
    if match is None:
        return None
    word = match.group(1).lower()
    argument = (match.group(2) or "").strip() or None
    return Command(word if word in COMMANDS else "unknown", argument, word)


def help_text(models: list[str] | None = None) -> str:
    """The answer to /help (and to an unknown command), listing the models one may switch to."""
    lines = ["Commands:"] + [f"  {line}" for line in COMMANDS.values()]
    if models:
        lines.append("Models: " + ", ".join(models))
    return "\n".join(lines)


def unknown_command_text(command: Command) -> str:
    return f"I don't know /{command.word}.\n" + help_text()
