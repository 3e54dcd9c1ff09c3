"""The named states of the gateway's parts, and the health verdict judged from them.

They are `StrEnum`s: a member equals its word ("connected" == FeishuState.CONNECTED), formats as
that word and is written by `json.dumps` as that word, so the control socket's JSON and every
snapshot rebuilt from it stay plain strings while the code names each state once, here.
"""

from __future__ import annotations

from enum import StrEnum


class FeishuState(StrEnum):
    """The Feishu long connection (feishu.py)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


class ExecutorState(StrEnum):
    """The held thread pool (executor.py), as its probes see it."""

    STARTING = "starting"  # no pool yet: what the console shows before the gateway exists
    HEALTHY = "healthy"
    BUSY = "busy"
    DEGRADED = "degraded"  # the queue moves, but slower than the probe deadline
    REPLACED = "replaced"  # rebuilt recently
    DEAD = "dead"


class GatewayState(StrEnum):
    """The gateway as a whole (gateway.py)."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Verdict(StrEnum):
    """The health model's one verdict (health.py): do users get answers?"""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class DmPolicy(StrEnum):
    """Who may talk to the bot in a direct message (access.py, profile key access.dm_policy)."""

    PAIRING = "pairing"  # a stranger gets a code the owner approves
    ALLOWLIST = "allowlist"  # only access.allow and approved open_ids; others a polite refusal
    OPEN = "open"  # anyone in the tenant (also a profile without [access])


class MessageState(StrEnum):
    """A journaled message's state (journal.py, the `inbox.state` column); its life is TRANSITIONS."""

    RECEIVED = "received"  # journaled on the SDK's thread, before Feishu's event is acked
    ANSWERING = "answering"  # being answered (an `answer` stored means: the model already did)
    ANSWERED = "answered"  # the model's answer reached Feishu
    APOLOGISED = "apologised"  # an apology reached Feishu (every model failed, or too old to answer)
    ANSWERED_LOCALLY = "answered_locally"  # a reply without the model: a command, a polite refusal
    IGNORED = "ignored"  # not for the bot (group policy), recalled or empty: nothing sent
    REFUSED = "refused"  # stopped at the access gate (a notice may have been sent)


# Schema 3 and older wrote `dropped` for both IGNORED and ANSWERED_LOCALLY; the migration to
# schema 4 (journal._migrate) tells them apart by whether a reply was sent (`reply_id`).
LEGACY_DROPPED = "dropped"

UNFINISHED = (MessageState.RECEIVED, MessageState.ANSWERING)
FINISHED = tuple(state for state in MessageState if state not in UNFINISHED)

# Every state change the journal may write, and nothing else (as h11 writes its connection states
# down once). A message is received, then either refused at the access gate or answered; answering
# may start again (a re-drive, a retried delivery); a final state never changes, except that a
# refused message's notice records its reply id once it is out.
TRANSITIONS: dict[MessageState, frozenset[MessageState]] = {
    MessageState.RECEIVED: frozenset({MessageState.ANSWERING, MessageState.REFUSED}),
    MessageState.ANSWERING: frozenset(
        {
            MessageState.ANSWERING,
            MessageState.ANSWERED,
            MessageState.APOLOGISED,
            MessageState.ANSWERED_LOCALLY,
            MessageState.IGNORED,
        }
    ),
    MessageState.ANSWERED: frozenset(),
    MessageState.APOLOGISED: frozenset(),
    MessageState.ANSWERED_LOCALLY: frozenset(),
    MessageState.IGNORED: frozenset(),
    MessageState.REFUSED: frozenset({MessageState.REFUSED}),
}


def sources_of(new: MessageState) -> tuple[MessageState, ...]:
    """The states a message may be in to move to `new` (TRANSITIONS read backwards)."""
    return tuple(state for state, targets in TRANSITIONS.items() if new in targets)


class Outcome(StrEnum):
    """How the pipeline ended with one message, as the console's activity rows say it.

    Each outcome but REPLY_FAILED is journaled as one final state (`state`); COMMAND and
    UNSUPPORTED both end as `answered_locally`, told apart here because an operator reads them
    differently. REPLY_FAILED leaves the message `answering`, its answer stored, to be sent again.
    """

    ANSWERED = "answered"
    APOLOGISED = "apologised"
    COMMAND = "command"  # an in-chat command (/help, /model, /reset, /status) or a bare mention
    UNSUPPORTED = "unsupported"  # a polite refusal: a sticker, an unreadable file, empty text
    IGNORED = "ignored"
    REFUSED = "refused"
    REPLY_FAILED = "reply failed"

    @property
    def state(self) -> MessageState | None:
        """The final state this outcome is journaled as; None: the message stays unfinished."""
        return _OUTCOME_STATES[self]

    @classmethod
    def read(cls, word: str) -> Outcome | str:
        """An outcome as a snapshot carries it; an older owner said "apology", a newer one may say
        a word this console does not know (kept as it is: shown plain)."""
        word = _LEGACY_OUTCOMES.get(word, word)
        try:
            return cls(word)
        except ValueError:
            return word


_OUTCOME_STATES: dict[Outcome, MessageState | None] = {
    Outcome.ANSWERED: MessageState.ANSWERED,
    Outcome.APOLOGISED: MessageState.APOLOGISED,
    Outcome.COMMAND: MessageState.ANSWERED_LOCALLY,
    Outcome.UNSUPPORTED: MessageState.ANSWERED_LOCALLY,
    Outcome.IGNORED: MessageState.IGNORED,
    Outcome.REFUSED: MessageState.REFUSED,
    Outcome.REPLY_FAILED: None,
}
_LEGACY_OUTCOMES = {"apology": Outcome.APOLOGISED.value}  # activity rows before schema 4


class ReplyMode(StrEnum):
    """How a profile wants answers to go out (profile key `feishu.reply_mode`)."""

    STREAM = "stream"  # a CardKit card that grows while the model writes (text if CardKit is unavailable)
    TEXT = "text"  # plain text replies once the answer is complete


class DeliveryMode(StrEnum):
    """How one message's answer is going out (journal column `reply_mode`, activity rows).

    CARD once a card exists for it (a re-drive finishes the cards before any text), else TEXT
    (a card never follows a text reply).
    """

    CARD = "card"
    TEXT = "text"


class FleetVerdict(StrEnum):
    """A profile's verdict in the console's fleet view (gateway_core/fleet.py).

    The health model's three for a gateway that answers — the same words as `Verdict`, judged by
    the gateway itself — and, for one with no verdict to give, why: its owner does not answer
    (UNREACHABLE), nobody serves it (STOPPED), or it could not start as it is written (INVALID).
    """

    HEALTHY = Verdict.HEALTHY.value
    DEGRADED = Verdict.DEGRADED.value
    UNHEALTHY = Verdict.UNHEALTHY.value
    UNREACHABLE = "unreachable"
    STOPPED = "stopped"
    INVALID = "invalid"


class OwnerKind(StrEnum):
    """Who runs a profile's gateway, as the fleet view names it."""

    LAUNCHD = "launchd"  # a headless gateway its LaunchAgent started
    SYSTEMD = "systemd"  # a headless gateway its systemd --user unit started
    CONSOLE = "console"
    HEADLESS = "headless"  # started by hand (`gatewatch run --headless`), no service manager
    NONE = "none"
