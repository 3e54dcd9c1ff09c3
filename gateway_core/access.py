"""Who may talk to the bot: the access gate's judgement, pairing codes and per-user budgets.

Pure domain logic over a small store (`AccessBook`, which the journal implements): no I/O of its
own, no Feishu, no model. The pipeline asks `AccessGate.judge` about every new message after the
journal recorded it and before the scheduler sees it; a refusal costs no model call.

* Direct messages follow `access.dm_policy`: `open` answers anyone; `allowlist` answers the
  profile's `access.allow` and approved open_ids, anyone else gets one polite refusal per hour;
  `pairing` answers the same people, and a stranger gets ONE reply with a pairing code (8 of
  A–Z and 2–9, valid 1 h) and the command that approves it — at most one such reply per 10
  minutes, at most 3 codes pending per profile (a fourth stranger is told to try later).
* Group chats: if `access.chats` is not empty, only those are answered (silently refused
  elsewhere: no notice is ever sent into a group that did not ask for the bot). Pairing is
  DM-only, so a code is never sent into a group.
* Everyone answered is held to `access.user_messages_per_hour` (0: no limit); over it, one
  polite "slow down" per hour.

Codes are matched case-insensitively and compared in constant time (`hmac.compare_digest`), and
only ever logged masked (`mask_code`). Approving, denying and revoking (`perform`) go through the
same store, from the gateway (control socket, console) or directly from the CLI under the profile's
lock.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Iterable, Protocol

from .config import AccessConfig
from .states import DmPolicy

log = logging.getLogger("gatewatch.access")

CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789"  # no 0/1: they read as O/I
CODE_LENGTH = 8
CODE_PATTERN = re.compile(f"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")
CODE_TTL = 3600.0  # a pairing code is valid this long
MAX_PENDING = 3  # pending codes per profile
PAIRING_REPLY_INTERVAL = 600.0  # at most one pairing reply per person this often
REFUSAL_INTERVAL = 3600.0  # at most one "not allowed" per person this often
SLOWDOWN_INTERVAL = 3600.0  # at most one "slow down" per person this often
BUDGET_WINDOW = 3600.0  # user_messages_per_hour counts this far back


class RefusalReason(StrEnum):
    """Why the gate refused a message: the journal's `reason`, the log's and the console's word."""

    PAIRING_CODE_SENT = "not paired: pairing code sent"
    PAIRING_WAIT = "not paired: pairing code already sent"
    PAIRING_FULL = "not paired: too many pairing codes pending"
    NOT_ALLOWED = "not on the allowlist"
    CHAT_NOT_ALLOWED = "group chat not in access.chats"
    OVER_BUDGET = "over access.user_messages_per_hour"


class AccessOp(StrEnum):
    """What an operator may do (CLI, control socket, console)."""

    LIST = "list"
    APPROVE = "approve"  # by code (CLI) or by open_id (the console's key on a pending request)
    DENY = "deny"  # drop a pending code
    REVOKE = "revoke"


class AccessError(Exception):
    """An approval or revocation cannot be done; the text is one line saying why."""


@dataclass(frozen=True)
class AccessRecord:
    """One person the gate knows: the journal's `access` row."""

    open_id: str
    approved_at: float | None = None
    code: str | None = None  # a pending pairing code (upper case)
    code_at: float | None = None
    code_chat: str | None = None  # the chat the code was asked for in
    refusal_at: float | None = None  # the last pairing reply or refusal sent
    slowdown_at: float | None = None  # the last "slow down" sent

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self) if f.name != "open_id")

    def pending(self, now: float) -> bool:
        return self.code is not None and self.code_at is not None and now - self.code_at < CODE_TTL


class AccessBook(Protocol):
    """Where approvals, codes and notices live (the journal), and what it knows of past messages."""

    def access_records(self) -> list[AccessRecord]: ...

    def access_record(self, open_id: str) -> AccessRecord | None: ...

    def save_access(self, record: AccessRecord) -> None: ...

    def messages_from(self, sender_id: str, since: float, but: str = "") -> int: ...

    def refused_since(self, since: float) -> int: ...


@dataclass(frozen=True)
class Judgement:
    """The gate's answer for one message: admitted, or refused with why and what to reply (if anything)."""

    reason: RefusalReason | None = None
    notice: str | None = None  # the reply to send (None: refused silently)
    code: str | None = None  # the pairing code in the notice, if any

    @property
    def shown_notice(self) -> str:
        """The notice as the console may show it: the code masked."""
        if self.notice is None:
            return ""
        return self.notice.replace(self.code, mask_code(self.code)) if self.code else self.notice

    @property
    def admitted(self) -> bool:
        return self.reason is None


ADMIT = Judgement()


@dataclass(frozen=True)
class PendingCode:
    """A pairing request as shown to the operator: never the code itself."""

    open_id: str
    chat_id: str
    requested_at: float
    masked_code: str


@dataclass(frozen=True)
class AccessSnapshot:
    """For the console and `status --json`."""

    policy: str  # a DmPolicy
    declared: bool  # False: the profile has no [access] and answers anyone
    pending: tuple[PendingCode, ...] = ()
    refused_last_hour: int = 0
    refused: int = 0  # since this gateway started


# -- codes --------------------------------------------------------------------------------------


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    return text.strip().upper()


def mask_code(code: str) -> str:
    """What logs and screens show of a code: its first two characters."""
    return code[:2] + "*" * max(0, len(code) - 2)


def codes_match(given: str, stored: str) -> bool:
    return hmac.compare_digest(given.encode(), stored.encode())


# -- notices ------------------------------------------------------------------------------------


def pairing_notice(code: str, profile: str) -> str:
    return (
        "Hi! This bot answers only people its owner has approved. "
        f"Your pairing code is {code} (valid for 1 hour). "
        f"Send it to the bot's owner, who approves it with: gatewatch access approve {code} --profile {profile}"
    )


PAIRING_FULL_NOTICE = (
    "Hi! This bot answers only people its owner has approved, and too many requests are waiting "
    "right now. Please try again later."
)
NOT_ALLOWED_NOTICE = "Sorry — this bot answers only people its owner has allowed. Please ask its owner for access."
SLOWDOWN_NOTICE = (
    "You have sent a lot of messages in the last hour — please slow down. I will answer again once the hour has passed."
)


# -- the gate -----------------------------------------------------------------------------------


class AccessGate:
    """Judges messages against the profile's [access] and keeps the book (on the gateway's loop)."""

    def __init__(
        self, config: AccessConfig, book: AccessBook, profile: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.book = book
        self.profile = profile
        self.clock = clock
        self.refused = 0

    def judge(
        self, sender_id: str, chat_id: str, is_group: bool, message_id: str = "", addressed: bool = False
    ) -> Judgement:
        """Admit or refuse one message; records codes and notices in the book.

        `addressed`: the message is known to mention the bot (a "slow down" may then go into a group).
        """
        now = self.clock()
        config = self.config
        if is_group:
            if config.chats and chat_id not in config.chats:
                return self._refused(Judgement(RefusalReason.CHAT_NOT_ALLOWED))
        elif not self.allowed(sender_id):
            record = self.book.access_record(sender_id) or AccessRecord(sender_id)
            if config.dm_policy == DmPolicy.ALLOWLIST:
                return self._refused(self._notice(record, RefusalReason.NOT_ALLOWED, NOT_ALLOWED_NOTICE, now))
            return self._refused(self._pairing(record, chat_id, now))
        return self._budget(sender_id, message_id, not is_group or addressed, now)

    def allowed(self, open_id: str) -> bool:
        if self.config.dm_policy == DmPolicy.OPEN or open_id in self.config.allow:
            return True
        record = self.book.access_record(open_id)
        return record is not None and record.approved_at is not None

    def _pairing(self, record: AccessRecord, chat_id: str, now: float) -> Judgement:
        if record.refusal_at is not None and now - record.refusal_at < PAIRING_REPLY_INTERVAL:
            return Judgement(RefusalReason.PAIRING_WAIT)  # one reply per 10 minutes: silence
        if record.pending(now):
            assert record.code is not None
            code = record.code  # still valid: the same code again
        else:
            others = [r for r in self.book.access_records() if r.open_id != record.open_id and r.pending(now)]
            if len(others) >= MAX_PENDING:
                self.book.save_access(dataclasses.replace(record, refusal_at=now))
                return Judgement(RefusalReason.PAIRING_FULL, PAIRING_FULL_NOTICE)
            code = new_code()
            record = dataclasses.replace(record, code=code, code_at=now, code_chat=chat_id)
            log.info("pairing code %s issued to %s in %s", mask_code(code), record.open_id, chat_id)
        self.book.save_access(dataclasses.replace(record, refusal_at=now))
        return Judgement(RefusalReason.PAIRING_CODE_SENT, pairing_notice(code, self.profile), code)

    def _notice(self, record: AccessRecord, reason: RefusalReason, text: str, now: float) -> Judgement:
        if record.refusal_at is not None and now - record.refusal_at < REFUSAL_INTERVAL:
            return Judgement(reason)
        self.book.save_access(dataclasses.replace(record, refusal_at=now))
        return Judgement(reason, text)

    def _budget(self, sender_id: str, message_id: str, may_notify: bool, now: float) -> Judgement:
        limit = self.config.user_messages_per_hour
        if not limit or self.book.messages_from(sender_id, now - BUDGET_WINDOW, message_id) < limit:
            return ADMIT
        record = self.book.access_record(sender_id) or AccessRecord(sender_id)
        if not may_notify or (record.slowdown_at is not None and now - record.slowdown_at < SLOWDOWN_INTERVAL):
            return self._refused(Judgement(RefusalReason.OVER_BUDGET))
        self.book.save_access(dataclasses.replace(record, slowdown_at=now))
        return self._refused(Judgement(RefusalReason.OVER_BUDGET, SLOWDOWN_NOTICE))

    def _refused(self, judgement: Judgement) -> Judgement:
        self.refused += 1
        return judgement

    def snapshot(self) -> AccessSnapshot:
        now = self.clock()
        return AccessSnapshot(
            policy=self.config.dm_policy,
            declared=self.config.declared,
            pending=pending_codes(self.book.access_records(), now),
            refused_last_hour=self.book.refused_since(now - 3600.0),
            refused=self.refused,
        )


def pending_codes(records: Iterable[AccessRecord], now: float) -> tuple[PendingCode, ...]:
    return tuple(
        PendingCode(r.open_id, r.code_chat or "", r.code_at or now, mask_code(r.code or ""))
        for r in records
        if r.pending(now)
    )


# -- operations (CLI, control socket, console) --------------------------------------------------


def perform(
    book: AccessBook, config: AccessConfig, op: str, argument: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """One operator request; raises AccessError (one line) for bad input. JSON-ready result."""
    now = time.time() if now is None else now
    if op == AccessOp.LIST:
        return listing(book, config, now)
    if not isinstance(argument, str) or not argument.strip():
        raise AccessError(f"access {op} needs {'a code' if op == AccessOp.APPROVE else 'an open_id'}")
    argument = argument.strip()
    if op == AccessOp.APPROVE:
        record = approve_open_id(book, argument, now) if argument.startswith("ou_") else approve(book, argument, now)
        return {"approved": record.open_id}
    if op == AccessOp.DENY:
        return {"denied": deny(book, argument, now).open_id}
    if op == AccessOp.REVOKE:
        return {"revoked": revoke(book, config, argument).open_id}
    raise AccessError(f"unknown access operation {op!r}; one of: {', '.join(AccessOp)}")


def approve(book: AccessBook, code: str, now: float) -> AccessRecord:
    """Approve whoever holds `code` (any case); AccessError for a malformed, unknown or expired one."""
    given = normalise_code(code)
    if not CODE_PATTERN.match(given):
        raise AccessError(f"not a pairing code: expected {CODE_LENGTH} letters A-Z and digits 2-9")
    found = None
    for record in book.access_records():  # every stored code is compared: no early exit
        if record.code is not None and codes_match(given, record.code):
            found = record
    if found is None:
        raise AccessError(f"no pending pairing code {mask_code(given)}: check it, or ask for a new one")
    if not found.pending(now):
        raise AccessError(f"pairing code {mask_code(given)} has expired: they get a new one with their next message")
    return _approved(book, found, now)


def approve_open_id(book: AccessBook, open_id: str, now: float) -> AccessRecord:
    """Approve a pending request by who asked (the console's key)."""
    record = book.access_record(open_id)
    if record is None or not record.pending(now):
        raise AccessError(f"{open_id} has no pending pairing code")
    return _approved(book, record, now)


def _approved(book: AccessBook, record: AccessRecord, now: float) -> AccessRecord:
    approved = dataclasses.replace(record, approved_at=now, code=None, code_at=None, code_chat=None, refusal_at=None)
    book.save_access(approved)
    log.info("access approved for %s (pairing code %s)", record.open_id, mask_code(record.code or ""))
    return approved


def deny(book: AccessBook, open_id: str, now: float) -> AccessRecord:
    """Drop a pending code; the person can ask again after the pairing reply interval."""
    record = book.access_record(open_id)
    if record is None or record.code is None:
        raise AccessError(f"{open_id} has no pending pairing code")
    denied = dataclasses.replace(record, code=None, code_at=None, code_chat=None)
    book.save_access(denied)
    log.info("pairing request of %s denied", open_id)
    return denied


def revoke(book: AccessBook, config: AccessConfig, open_id: str) -> AccessRecord:
    if open_id in config.allow:
        raise AccessError(f"{open_id} is in the profile's access.allow: remove it there")
    record = book.access_record(open_id)
    if record is None or record.approved_at is None:
        raise AccessError(f"{open_id} is not approved")
    revoked = dataclasses.replace(record, approved_at=None, code=None, code_at=None, code_chat=None)
    book.save_access(revoked)
    log.info("access revoked for %s", open_id)
    return revoked


def listing(book: AccessBook, config: AccessConfig, now: float) -> dict[str, Any]:
    records = book.access_records()
    return {
        "policy": str(config.dm_policy),
        "declared": config.declared,
        "allowed": [{"open_id": o, "source": "profile"} for o in config.allow]
        + [
            {"open_id": r.open_id, "source": "approved", "approved_at": r.approved_at}
            for r in records
            if r.approved_at is not None and r.open_id not in config.allow
        ],
        "pending": [dataclasses.asdict(p) for p in pending_codes(records, now)],
    }


def render_listing(listing_: dict[str, Any], now: float) -> str:
    """`gatewatch access list` as text."""
    policy = listing_["policy"] if listing_["declared"] else f"{listing_['policy']} (no [access] section: anyone)"
    out = [f"policy: {policy}"]
    allowed = listing_["allowed"]
    out.append(f"allowed ({len(allowed)}):" if allowed else "allowed: none")
    for item in allowed:
        out.append(f"  {item['open_id']}  {item['source']}")
    pending = listing_["pending"]
    out.append(f"pending codes ({len(pending)}):" if pending else "pending codes: none")
    for item in pending:
        minutes = int(max(0.0, now - item["requested_at"]) // 60)
        out.append(f"  {item['masked_code']}  {item['open_id']}  in {item['chat_id']}  {minutes} min ago")
    return "\n".join(out)
