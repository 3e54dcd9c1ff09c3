"""The inbox journal: every accepted message, durable before Feishu is told it was handled.

One SQLite database per profile, `$GATEWATCH_HOME/state/<profile>.db`, in WAL mode with
`synchronous=FULL` so a commit survives kill -9 and power loss. It belongs to whoever holds the
profile's lock, so one process writes it at a time.

A message's life, one row in `inbox`:

    received ──▶ answering ──(answer stored)──▶ answered | apologised | answered_locally | ignored
        └──────▶ refused (the access gate)

The states and every allowed change between them are written once, in states.py
(`MessageState`, `TRANSITIONS`); each write here checks its change against that table, in the
same statement, and a change the table does not allow raises `TransitionError`.

* `received` is written on the SDK's thread *before* the handler returns; if that write fails the
  handler raises, the SDK acks with 500 and Feishu redelivers. Nothing is acked before it is here.
* `answering` with a stored `answer` means the LLM answered but Feishu's acceptance is not yet
  recorded: a new owner re-sends that answer (same reply uuid) instead of asking the LLM again.
* answered / apologised / answered_locally are final and are only written after Feishu accepted
  the reply; ignored (nothing to send) and refused are final too.

The same rows are the persisted dedup: a redelivered event (same message id or event id) is
recognised for `RETENTION` (24 h+, longer than Feishu's ~7.1 h retry schedule) and pruned after.
Chat history lives in `history`, one JSON list of turns per conversation (a chat, or in groups
optionally a chat and one sender: `chat_id/open_id`), updated in the same transaction that stores
the answer, so history and "answered" never disagree.

Streaming replies (schema 2): `reply_mode` says how a message is being answered ("card" once a
card entity exists for it, "text" for a plain reply) and `checkpoint` holds the card's last
`cardkit.StreamCheckpoint`, so a re-drive finishes the same card and a text reply never follows a
card. `raw_content` and `mentions` keep what the pipeline interprets (post content, @-mentions).
`chat_models` holds the model a chat chose with `/model NAME`.

Access (schema 3, issue 19): a message stopped at the access gate is `refused` (final, with the
reason, never re-driven). `access` holds one row per person the gate knows (access.AccessRecord):
approved (by a pairing code), a pending pairing code, and when they were last sent a notice, so
approvals survive restarts and hand-overs and no owner repeats a notice.

Schema 4 (issue 17): `dropped` meant both "not for the bot" and "answered without the model"; it is
split into `ignored` and `answered_locally`. An old `dropped` row becomes `answered_locally` if a
reply was sent for it (its `reply_id` is set: a command's answer, a polite refusal), else
`ignored` (nothing was sent: not addressed to the bot, recalled, empty).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .access import AccessRecord
from .messages import IncomingMessage, Mention
from .states import FINISHED, LEGACY_DROPPED, TRANSITIONS, UNFINISHED, DeliveryMode, MessageState, sources_of

log = logging.getLogger("gatewatch.journal")

SCHEMA_VERSION = 4
RETENTION = 48 * 3600.0  # finished rows are kept this long: dedup must outlive Feishu's ~7.1 h retries
WRITE_TIMES_KEPT = 64  # small: every status and subscribe snapshot carries them
BUSY_TIMEOUT = 2.0  # seconds sqlite waits for a lock: the SDK's 3 s ack budget is the ceiling

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id   TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    chat_type    TEXT NOT NULL,
    sender_id    TEXT NOT NULL,
    message_type TEXT NOT NULL,
    text         TEXT,
    received_at  REAL NOT NULL,
    state        TEXT NOT NULL,
    updated_at   REAL NOT NULL,
    answer       TEXT,
    reply_id     TEXT,
    model        TEXT,
    latency      REAL,
    reason       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_event ON inbox(event_id);
CREATE INDEX IF NOT EXISTS inbox_unfinished ON inbox(state, received_at);
CREATE TABLE IF NOT EXISTS history (
    chat_id    TEXT PRIMARY KEY,
    turns      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_models (
    chat_id    TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access (
    open_id     TEXT PRIMARY KEY,
    approved_at REAL,
    code        TEXT,
    code_at     REAL,
    code_chat   TEXT,
    refusal_at  REAL,
    slowdown_at REAL
);
"""
# Schema 1 → 2: columns added to `inbox` (a v1 row reads as a text message answered in text).
_INBOX_COLUMNS_V2 = (
    ("raw_content", "TEXT"),
    ("mentions", "TEXT"),
    ("reply_mode", "TEXT"),
    ("checkpoint", "TEXT"),
)


class JournalError(Exception):
    """The journal cannot be opened or written; the text is one line saying what to do."""


class TransitionError(JournalError):
    """A state change `states.TRANSITIONS` does not allow: a bug, refused before it is written."""


def _marks(values: tuple[object, ...]) -> str:
    """`?, ?, ?` for a parameterised `IN (...)` over `values`."""
    return ", ".join("?" * len(values))


@dataclass(frozen=True)
class PendingMessage:
    """An unfinished message a new owner must answer; `answer` is set if the LLM already did."""

    message: IncomingMessage
    state: MessageState
    answer: str | None
    model: str | None
    reply_mode: DeliveryMode | None = None  # None: no reply attempted yet
    checkpoint: str | None = None  # how the answer is being delivered: a DeliveryRecord as JSON


@dataclass(frozen=True)
class JournalSnapshot:
    pending: int
    oldest_pending_at: float | None
    path: str
    writes: int = 0  # arrival writes since opened
    write_times: tuple[float, ...] = ()  # seconds, the most recent WRITE_TIMES_KEPT of them


def peek_pending(path: Path) -> JournalSnapshot | None:
    """The backlog of a journal nobody may be serving (read-only, for `gatewatch status`)."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            count, oldest = db.execute(
                f"SELECT COUNT(*), MIN(received_at) FROM inbox WHERE state IN ({_marks(UNFINISHED)})", UNFINISHED
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return JournalSnapshot(pending=count, oldest_pending_at=oldest, path=str(path))


def peek_access(path: Path, since: float) -> tuple[list[AccessRecord], int] | None:
    """The access rows and the refusals since `since` of a journal nobody may be serving (read-only)."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            rows = db.execute(f"SELECT {_ACCESS_COLUMNS} FROM access ORDER BY code_at, open_id").fetchall()
            [(refused,)] = db.execute(
                "SELECT COUNT(*) FROM inbox WHERE state = ? AND received_at >= ?", (MessageState.REFUSED, since)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None  # not there yet (an older journal), or busy: nothing to tell
    return [AccessRecord(*row) for row in rows], int(refused)


class Journal:
    """Thread-safe: the SDK thread records arrivals, the gateway loop records progress."""

    def __init__(self, path: Path):
        self.path = path
        self._guard = threading.Lock()
        self._db = self._open(path)
        # How long arrival writes take (they sit on the ack path): the last few, and how many in all.
        self._write_times: deque[float] = deque(maxlen=WRITE_TIMES_KEPT)
        self._writes = 0

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        hint = f"check that {path.parent} is writable and has space"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}; {hint}") from None
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError("WAL mode refused")
            db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before Feishu gets the ack
            db.executescript(_SCHEMA)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, 2, 3, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this gatewatch knows {SCHEMA_VERSION}")
            _migrate(db, version)
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).lower():
                raise JournalError(f"the journal {path} is read-only: {exc}; {hint}") from None
            if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc).lower():
                raise JournalError(f"cannot open the journal {path}: {exc}; {hint}") from None
            raise JournalError(
                f"the journal {path} is damaged ({exc}); move it aside (it holds unanswered messages "
                f"and chat history) and start again"
            ) from None
        return db

    def close(self) -> None:
        with self._guard:
            self._db.close()

    # -- arrivals (SDK thread) -----------------------------------------------------------------

    def record_inbound(self, message: IncomingMessage) -> bool:
        """Write an arrival durably; False if it was seen before (same message id or event id).

        Raises JournalError if the write fails: the caller must not let the SDK ack the event.
        """
        started = time.perf_counter()
        try:
            with self._guard:
                known = self._db.execute(
                    "SELECT 1 FROM inbox WHERE message_id = ? OR (event_id = ? AND event_id != '')",
                    (message.message_id, message.event_id),
                ).fetchone()
                if known:
                    return False
                self._db.execute(
                    "INSERT INTO inbox (message_id, event_id, chat_id, chat_type, sender_id, message_type,"
                    " text, received_at, state, updated_at, raw_content, mentions)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.message_id,
                        message.event_id,
                        message.chat_id,
                        message.chat_type,
                        message.sender_id,
                        message.message_type,
                        message.text,
                        message.received_at,
                        MessageState.RECEIVED,
                        time.time(),
                        message.raw_content,
                        _mentions_json(message.mentions),
                    ),
                )
                self._write_times.append(time.perf_counter() - started)
                self._writes += 1
                return True
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed for {message.message_id}: {exc}") from None

    # -- progress (gateway loop) ---------------------------------------------------------------

    def mark_answering(self, message_id: str) -> None:
        self._move(message_id, MessageState.ANSWERING, "attempts = attempts + 1")

    def save_answer(
        self,
        message_id: str,
        chat_id: str,
        answer: str,
        model: str | None,
        latency: float | None,
        history: list[dict[str, str]] | None,
    ) -> None:
        """Store the answer (and the chat's new history) before it is sent, in one transaction."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE inbox SET answer = ?, model = ?, latency = ?, updated_at = ? WHERE message_id = ?",
                (answer, model, latency, now, message_id),
            )
            if history is not None:
                db.execute(
                    "INSERT INTO history (chat_id, turns, updated_at) VALUES (?, ?, ?) ON CONFLICT(chat_id)"
                    " DO UPDATE SET turns = excluded.turns, updated_at = excluded.updated_at",
                    (chat_id, json.dumps(history, ensure_ascii=False), now),
                )

    def save_delivery(self, message_id: str, reply_mode: DeliveryMode, record_json: str) -> None:
        """How the answer is being delivered (delivery.DeliveryRecord), before what it says is seen."""
        self._update_columns(message_id, "reply_mode = ?, checkpoint = ?", (reply_mode, record_json))

    def _update_columns(self, message_id: str, assignments: str, args: tuple[Any, ...]) -> None:
        with self._transaction() as db:
            db.execute(
                f"UPDATE inbox SET updated_at = ?, {assignments} WHERE message_id = ?",
                (time.time(), *args, message_id),
            )

    def mark_answered(self, message_id: str, reply_id: str, model: str | None, latency: float | None) -> None:
        self._move(
            message_id, MessageState.ANSWERED, "reply_id = ?, model = ?, latency = ?", (reply_id, model, latency)
        )

    def mark_apologised(self, message_id: str, reply_id: str, reason: str) -> None:
        self._move(message_id, MessageState.APOLOGISED, "reply_id = ?, reason = ?", (reply_id, reason))

    def mark_answered_locally(self, message_id: str, reply_id: str, reason: str) -> None:
        """Answered without the model (a command, a polite refusal), the reply accepted by Feishu."""
        self._move(message_id, MessageState.ANSWERED_LOCALLY, "reply_id = ?, reason = ?", (reply_id, reason))

    def mark_ignored(self, message_id: str, reason: str) -> None:
        """Not for the bot (or recalled, empty): nothing sent, never re-driven."""
        self._move(message_id, MessageState.IGNORED, "reason = ?", (reason,))

    def mark_refused(self, message_id: str, reason: str, reply_id: str | None = None) -> None:
        """Stopped at the access gate: final, never re-driven (a notice's reply id may follow)."""
        self._move(message_id, MessageState.REFUSED, "reply_id = ?, reason = ?", (reply_id, reason))

    def _move(self, message_id: str, state: MessageState, assignments: str, args: tuple[Any, ...] = ()) -> None:
        """Change a message's state, only from a state TRANSITIONS allows (checked in the UPDATE)."""
        sources = sources_of(state)
        with self._transaction() as db:
            moved = db.execute(
                f"UPDATE inbox SET state = ?, updated_at = ?, {assignments}"
                f" WHERE message_id = ? AND state IN ({_marks(sources)})",
                (state, time.time(), *args, message_id, *sources),
            ).rowcount
            if not moved:
                row = db.execute("SELECT state FROM inbox WHERE message_id = ?", (message_id,)).fetchone()
                raise _refused_transition(message_id, None if row is None else row[0], state)

    # -- a new owner's view --------------------------------------------------------------------

    def unfinished(self) -> list[PendingMessage]:
        """Every message not yet answered, oldest first (so each chat comes out in order)."""
        rows = self._read(
            "SELECT event_id, message_id, chat_id, chat_type, sender_id, message_type, text, received_at,"
            " state, answer, model, raw_content, mentions, reply_mode, checkpoint FROM inbox"
            f" WHERE state IN ({_marks(UNFINISHED)}) ORDER BY received_at, rowid",
            UNFINISHED,
        )
        pending = []
        for row in rows:
            # The record as the SDK handler made it: its reading (the stored `text` among it) follows
            # from the raw content and mentions, for a bot whose open_id is not known yet.
            message = IncomingMessage(
                event_id=row[0],
                message_id=row[1],
                chat_id=row[2],
                chat_type=row[3],
                sender_id=row[4],
                message_type=row[5],
                raw_content=row[11] or _raw_content_v1(row[5], row[6]),
                received_at=row[7],
                mentions=_mentions(row[12]),
            )
            pending.append(
                PendingMessage(
                    message,
                    state=MessageState(row[8]),
                    answer=row[9],
                    model=row[10],
                    reply_mode=DeliveryMode(row[13]) if row[13] else None,
                    checkpoint=row[14],
                )
            )
        return pending

    def load_history(self, chat_id: str) -> list[dict[str, str]]:
        """The turns of one conversation (`history_key`: a chat id, or `chat_id/open_id`)."""
        rows = self._read("SELECT turns FROM history WHERE chat_id = ?", (chat_id,))
        return json.loads(rows[0][0]) if rows else []

    def chat_model(self, chat_id: str) -> str | None:
        """The model this chat chose with `/model NAME`, or None (the gateway's active model)."""
        with self._guard:
            return ChatSettings(self._db).chat_model(chat_id)

    def answer_locally(self, message_id: str, act: Callable[[ChatSettings], str]) -> str:
        """Run a command (`act` changes chat settings, returns the reply) and store its reply, in one
        transaction: a re-drive after a crash finds the reply stored and sends it, never running the
        command a second time (a `/reset` re-run would forget what was said since)."""
        with self._transaction() as db:
            reply = act(ChatSettings(db))
            db.execute(
                "UPDATE inbox SET answer = ?, model = NULL, updated_at = ? WHERE message_id = ?",
                (reply, time.time(), message_id),
            )
        return reply

    # -- access (issue 19) -------------------------------------------------------------------

    def access_records(self) -> list[AccessRecord]:
        rows = self._read(f"SELECT {_ACCESS_COLUMNS} FROM access ORDER BY code_at, open_id")
        return [AccessRecord(*row) for row in rows]

    def access_record(self, open_id: str) -> AccessRecord | None:
        rows = self._read(f"SELECT {_ACCESS_COLUMNS} FROM access WHERE open_id = ?", (open_id,))
        return AccessRecord(*rows[0]) if rows else None

    def save_access(self, record: AccessRecord) -> None:
        """Write one person's row; a row that says nothing any more is deleted."""
        with self._transaction() as db:
            if record.is_empty:
                db.execute("DELETE FROM access WHERE open_id = ?", (record.open_id,))
                return
            db.execute(
                f"INSERT OR REPLACE INTO access ({_ACCESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.open_id,
                    record.approved_at,
                    record.code,
                    record.code_at,
                    record.code_chat,
                    record.refusal_at,
                    record.slowdown_at,
                ),
            )

    def messages_from(self, sender_id: str, since: float, but: str = "") -> int:
        """How many messages `sender_id` sent since `since` that were (or are being) answered by the
        model: neither refused, ignored nor answered locally (a command does not count)."""
        unanswered = (MessageState.REFUSED, MessageState.IGNORED, MessageState.ANSWERED_LOCALLY)
        [(count,)] = self._read(
            "SELECT COUNT(*) FROM inbox WHERE sender_id = ? AND received_at >= ? AND message_id != ?"
            f" AND state NOT IN ({_marks(unanswered)})",
            (sender_id, since, but, *unanswered),
        )
        return int(count)

    def refused_since(self, since: float) -> int:
        [(count,)] = self._read(
            "SELECT COUNT(*) FROM inbox WHERE state = ? AND received_at >= ?", (MessageState.REFUSED, since)
        )
        return int(count)

    def state_of(self, message_id: str) -> MessageState | None:
        rows = self._read("SELECT state FROM inbox WHERE message_id = ?", (message_id,))
        return MessageState(rows[0][0]) if rows else None

    def prune(self, older_than: float = RETENTION, now: float | None = None) -> int:
        """Forget finished messages older than `older_than` seconds; unfinished ones are kept."""
        cutoff = (time.time() if now is None else now) - older_than
        with self._transaction() as db:
            pruned = db.execute(
                f"DELETE FROM inbox WHERE state IN ({_marks(FINISHED)}) AND received_at < ?",
                (*FINISHED, cutoff),
            ).rowcount
        if pruned:
            log.info("journal: pruned %d finished messages older than %.0fh", pruned, older_than / 3600)
        return pruned

    def snapshot(self) -> JournalSnapshot:
        [(count, oldest)] = self._read(
            f"SELECT COUNT(*), MIN(received_at) FROM inbox WHERE state IN ({_marks(UNFINISHED)})", UNFINISHED
        )
        with self._guard:
            writes, times = self._writes, tuple(self._write_times)
        return JournalSnapshot(count, oldest, str(self.path), writes, times)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._guard:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)


class ChatSettings:
    """What commands change, read and written on one connection (inside a caller's transaction)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def forget_history(self, chat_id: str) -> int:
        """`/reset`: forget a chat's history, its shared one and every per-user one; how many."""
        return self._db.execute(
            "DELETE FROM history WHERE chat_id = ? OR substr(chat_id, 1, ?) = ?",
            (chat_id, len(chat_id) + 1, chat_id + "/"),
        ).rowcount

    def chat_model(self, chat_id: str) -> str | None:
        row = self._db.execute("SELECT model FROM chat_models WHERE chat_id = ?", (chat_id,)).fetchone()
        return str(row[0]) if row else None

    def set_chat_model(self, chat_id: str, model: str | None) -> None:
        if model is None:
            self._db.execute("DELETE FROM chat_models WHERE chat_id = ?", (chat_id,))
        else:
            self._db.execute(
                "INSERT INTO chat_models (chat_id, model, updated_at) VALUES (?, ?, ?) ON CONFLICT(chat_id)"
                " DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at",
                (chat_id, model, time.time()),
            )

    def clear_chat_models(self) -> None:
        """An admin switched every chat: per-chat choices give way to the new active model."""
        self._db.execute("DELETE FROM chat_models")


_ACCESS_COLUMNS = "open_id, approved_at, code, code_at, code_chat, refusal_at, slowdown_at"


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring an older journal up to SCHEMA_VERSION in one transaction (a crash leaves it as it was).

    Schema 2 added columns to `inbox` (a column present is kept); schema 3 only the `access` table
    (created by _SCHEMA) and the `refused` state; schema 4 splits `dropped` (see the module text).
    """
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(inbox)")}
        for column, kind in _INBOX_COLUMNS_V2:
            if column not in present:
                db.execute(f"ALTER TABLE inbox ADD COLUMN {column} {kind}")
        db.execute(
            "UPDATE inbox SET state = CASE WHEN reply_id IS NULL THEN ? ELSE ? END WHERE state = ?",
            (MessageState.IGNORED, MessageState.ANSWERED_LOCALLY, LEGACY_DROPPED),
        )
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _refused_transition(message_id: str, current: str | None, new: MessageState) -> TransitionError:
    if current is None:
        return TransitionError(f"message {message_id} is not in the journal, so it cannot become {new}")
    allowed = ", ".join(sorted(TRANSITIONS.get(MessageState(current), ()))) or "nothing (it is final)"
    return TransitionError(
        f"message {message_id} cannot go from {current} to {new} (from {current}: {allowed});"
        " this is a gatewatch bug, please report it with the log"
    )


def _mentions_json(mentions: tuple[Mention, ...]) -> str:
    return json.dumps([[m.key, m.open_id, m.name] for m in mentions], ensure_ascii=False)


def _mentions(stored: str | None) -> tuple[Mention, ...]:
    try:
        return tuple(Mention(*item) for item in json.loads(stored)) if stored else ()
    except (ValueError, TypeError):
        return ()


def _raw_content_v1(message_type: str, text: str | None) -> str:
    """A schema-1 row kept only the text: rebuild the content a text message had."""
    if message_type == "text" and text is not None:
        return json.dumps({"text": text}, ensure_ascii=False)
    return json.dumps({"schema_1": True})  # not empty: an image still gets its friendly answer


class _Transaction:
    """`with journal._transaction() as db:` — one locked, committed-or-rolled-back transaction."""

    def __init__(self, journal: Journal):
        self._journal = journal

    def __enter__(self) -> sqlite3.Connection:
        self._journal._guard.acquire()
        try:
            self._journal._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._journal._guard.release()
            raise JournalError(f"journal {self._journal.path}: {exc}") from None
        return self._journal._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        db = self._journal._db
        try:
            if exc_type is None:
                db.execute("COMMIT")
                return
            db.execute("ROLLBACK")
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise JournalError(f"journal {self._journal.path}: {error}") from None
        finally:
            self._journal._guard.release()
        if isinstance(exc, sqlite3.Error):
            raise JournalError(f"journal {self._journal.path}: {exc}") from None
