"""The inbox journal on a real SQLite file: dedup, unfinished work, history, pruning, damage."""

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest

from gateway_core.config import Home
from gateway_core.journal import RETENTION, Journal, JournalError, peek_pending
from gateway_core.messages import IncomingMessage
from gateway_core.sim import Simulators

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
    journal.mark_answered("om_1", "om_r1", "alpha", 0.1)
    journal.mark_dropped("om_2", "unsupported message type image", "om_r2")
    journal.record_inbound(message(4))
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
