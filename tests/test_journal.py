"""The inbox journal on a real SQLite file: dedup, unfinished work, history, pruning, damage."""

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest

from gateway_core.config import Home
from gateway_core.journal import RETENTION, SCHEMA_VERSION, Journal, JournalError, TransitionError, peek_pending
from gateway_core.messages import IncomingMessage
from gateway_core.sim import Simulators
from gateway_core.states import TRANSITIONS, MessageState, sources_of

from .support import HeadlessProcess, present, write_profile


def message(n: int, chat: str = "oc_a", at: float | None = None, text: str | None = "hi") -> IncomingMessage:
    return IncomingMessage(
        event_id=f"ev_{n}",
        message_id=f"om_{n}",
        chat_id=chat,
        chat_type="p2p",
        sender_id="ou_1",
        message_type="text" if text is not None else "image",
        raw_content=json.dumps({"text": text} if text is not None else {"image_key": f"img_{n}"}),
        received_at=time.time() if at is None else at,
    )


def test_a_message_is_recorded_once_by_message_id_or_event_id_and_that_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "p.db"
    journal = Journal(path)
    assert journal.record_inbound(message(1))
    assert not journal.record_inbound(message(1))
    same_event = dataclasses.replace(message(1), message_id="om_other")
    assert not journal.record_inbound(same_event)
    journal.close()

    reopened = Journal(path)  # a new owner, after a restart
    assert not reopened.record_inbound(message(1))
    assert reopened.record_inbound(message(2))
    assert [p.message.message_id for p in reopened.unfinished()] == ["om_1", "om_2"]
    assert reopened.snapshot().writes == 1 and len(reopened.snapshot().write_times) == 1  # arrivals only
    reopened.close()


def test_unfinished_comes_out_oldest_first_with_a_stored_answer_and_history_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    journal = Journal(path)
    now = time.time()
    journal.record_inbound(message(2, "oc_b", at=now - 5))
    journal.record_inbound(message(1, "oc_a", at=now - 10))
    journal.record_inbound(message(3, "oc_a", at=now - 1))
    journal.mark_answering("om_1")
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    journal.save_answer("om_1", "oc_a", "hello", "alpha", 0.2, turns)
    journal.mark_answering("om_3")
    journal.mark_answered("om_3", "om_r1", "alpha", 0.1)
    journal.close()

    journal = Journal(path)
    pending = journal.unfinished()
    assert [(p.message.message_id, p.state, p.answer) for p in pending] == [
        ("om_1", "answering", "hello"),
        ("om_2", "received", None),
    ]
    assert pending[0].message.text == "hi" and pending[0].model == "alpha"
    assert journal.load_history("oc_a") == turns and journal.load_history("oc_b") == []
    snap = journal.snapshot()
    assert snap.pending == 2 and snap.oldest_pending_at == pytest.approx(now - 10)
    journal.close()
    assert present(peek_pending(path)).pending == 2  # what `gatewatch status` reads when nobody serves


def test_prune_forgets_only_finished_messages_past_the_retention(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "p.db")
    old = time.time() - RETENTION - 60
    for n in (1, 2, 3):
        journal.record_inbound(message(n, at=old))
    for n in (1, 2):
        journal.mark_answering(f"om_{n}")
    journal.mark_answered("om_1", "om_r1", "alpha", 0.1)
    journal.mark_answered_locally("om_2", "om_r2", "unsupported message type image")
    journal.record_inbound(message(4))
    journal.mark_answering("om_4")
    journal.mark_apologised("om_4", "om_r4", "every model failed")
    assert journal.prune() == 2
    assert journal.state_of("om_1") is None and journal.state_of("om_2") is None
    assert journal.state_of("om_3") == "received"  # unfinished: kept however old
    assert journal.state_of("om_4") == "apologised"  # finished but recent: still deduplicates
    assert not journal.record_inbound(message(4))
    journal.close()


def test_a_damaged_journal_or_an_unwritable_state_dir_is_one_clear_error(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)
    with pytest.raises(JournalError) as error:
        Journal(damaged)
    assert "damaged" in str(error.value) and "move it aside" in str(error.value) and "\n" not in str(error.value)

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(JournalError) as error:
        Journal(blocker / "p.db")
    assert "writable" in str(error.value) and "\n" not in str(error.value)


def test_a_journal_write_that_fails_raises_rather_than_pretending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "p.db")
    journal.record_inbound(message(1))
    # Another process holds the write lock past the busy timeout: the arrival cannot be made durable.
    other = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(JournalError, match="journal write failed for om_2"):
            journal.record_inbound(message(2))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert journal.record_inbound(message(2))
    journal.close()


@pytest.mark.process
def test_headless_refuses_to_run_on_a_damaged_journal_with_exit_4(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    home.state.mkdir(parents=True, exist_ok=True)
    home.state_file("p").write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)
    with HeadlessProcess.start(home, "p") as gateway:
        assert gateway.process.wait(30) == 4
        line = gateway.wait_for_line("damaged")
        assert str(home.state_file("p")) in line and "move it aside" in line
        assert len(gateway.lines) == 1 and "Traceback" not in line
    assert sims.feishu.connections_total == 0  # never served without durability


# The journal as schema 2 and schema 3 wrote it (their own SQL, not this gatewatch's): one
# message of each kind they could hold, `dropped` both with a reply sent and without.
V2_SCHEMA = """
CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, chat_id TEXT NOT NULL, chat_type TEXT NOT NULL,
    sender_id TEXT NOT NULL, message_type TEXT NOT NULL, text TEXT, received_at REAL NOT NULL,
    state TEXT NOT NULL, updated_at REAL NOT NULL, answer TEXT, reply_id TEXT, model TEXT, latency REAL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    raw_content TEXT, mentions TEXT, reply_mode TEXT, checkpoint TEXT
);
CREATE INDEX inbox_event ON inbox(event_id);
CREATE INDEX inbox_unfinished ON inbox(state, received_at);
CREATE TABLE history (chat_id TEXT PRIMARY KEY, turns TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE chat_models (chat_id TEXT PRIMARY KEY, model TEXT NOT NULL, updated_at REAL NOT NULL);
"""
V3_ACCESS = """
CREATE TABLE access (
    open_id TEXT PRIMARY KEY, approved_at REAL, code TEXT, code_at REAL, code_chat TEXT,
    refusal_at REAL, slowdown_at REAL
);
"""
OLD_ROWS = [
    # message id, state, reply id, answer, reason
    ("om_answered", "answered", "om_r1", "hello", None),
    ("om_command", "dropped", "om_r2", "Done: I forgot this chat's history.", "/reset"),
    ("om_sticker", "dropped", "om_r3", None, "unsupported message type sticker"),
    ("om_quiet", "dropped", None, None, "group message without a mention of the bot"),
    ("om_recalled", "dropped", None, None, "recalled or empty"),
    ("om_waiting", "received", None, None, None),
]


def write_old_journal(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.executescript(V2_SCHEMA + (V3_ACCESS if version >= 3 else ""))
    rows = OLD_ROWS + ([("om_stranger", "refused", None, None, "not approved")] if version >= 3 else [])
    for n, (message_id, state, reply_id, answer, reason) in enumerate(rows):
        db.execute(
            "INSERT INTO inbox (message_id, event_id, chat_id, chat_type, sender_id, message_type, text,"
            " received_at, state, updated_at, answer, reply_id, reason, raw_content)"
            " VALUES (?, ?, 'oc_1', 'p2p', 'ou_1', 'text', 'hi', ?, ?, ?, ?, ?, ?, '{\"text\": \"hi\"}')",
            (message_id, f"ev_{n}", time.time() - 60 + n, state, time.time(), answer, reply_id, reason),
        )
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("version", [2, 3])
def test_an_old_journal_is_migrated_in_place_and_dropped_splits_by_whether_a_reply_was_sent(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "old.db"
    write_old_journal(path, version)
    journal = Journal(path)
    try:
        states = dict(journal._read("SELECT message_id, state FROM inbox"))
        assert states.pop("om_answered") == MessageState.ANSWERED
        assert states.pop("om_command") == states.pop("om_sticker") == MessageState.ANSWERED_LOCALLY  # a reply went
        assert states.pop("om_quiet") == states.pop("om_recalled") == MessageState.IGNORED  # nothing was sent
        assert states.pop("om_waiting") == MessageState.RECEIVED
        assert states == ({"om_stranger": MessageState.REFUSED} if version >= 3 else {})
        assert [p.message.message_id for p in journal.unfinished()] == ["om_waiting"]  # still answered
        assert journal._read("PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert not journal.record_inbound(dataclasses.replace(message(9), message_id="om_quiet"))  # still dedups
    finally:
        journal.close()
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM inbox WHERE state = 'dropped'").fetchone() == (0,)
    Journal(path).close()  # opening a migrated journal again changes nothing


def test_a_state_change_the_lifecycle_does_not_allow_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "p.db")
    try:
        journal.record_inbound(message(1))
        with pytest.raises(TransitionError) as error:
            journal.mark_answered("om_1", "om_r1", "alpha", 0.1)  # never started answering
        assert str(error.value).startswith("message om_1 cannot go from received to answered")
        assert "\n" not in str(error.value)
        assert journal.state_of("om_1") == MessageState.RECEIVED  # nothing written

        journal.mark_answering("om_1")
        journal.mark_answering("om_1")  # a re-drive starts again
        journal.mark_answered("om_1", "om_r1", "alpha", 0.1)
        with pytest.raises(TransitionError, match="from answered to answering \\(from answered: nothing"):
            journal.mark_answering("om_1")  # a final state is final
        with pytest.raises(TransitionError, match="om_nope is not in the journal"):
            journal.mark_ignored("om_nope", "not for the bot")

        journal.record_inbound(message(2))
        journal.mark_refused("om_2", "not approved")
        journal.mark_refused("om_2", "not approved", "om_notice")  # the notice's reply id, once it is out
        assert journal.state_of("om_2") == MessageState.REFUSED
    finally:
        journal.close()


def test_the_transition_table_covers_every_state_and_leads_only_to_states() -> None:
    assert set(TRANSITIONS) == set(MessageState)
    for state, targets in TRANSITIONS.items():
        assert targets <= set(MessageState)
        for target in targets:
            assert state in sources_of(target)
    # Every state is reachable from `received`, the only one a message is written in first.
    reached, frontier = {MessageState.RECEIVED}, [MessageState.RECEIVED]
    while frontier:
        for target in TRANSITIONS[frontier.pop()] - reached:
            reached.add(target)
            frontier.append(target)
    assert reached == set(MessageState)
