"""Issue 13's settings and storage: profile keys for chats, and the journal's schema 2 migration."""

import json
import sqlite3
from pathlib import Path

import pytest

from gateway_core.config import ConfigError, Home, describe_profile, load_profile
from gateway_core.journal import SCHEMA_VERSION, ChatSettings, Journal
from gateway_core.messages import IncomingMessage, interpret
from gateway_core.sim import Simulators
from gateway_core.states import DeliveryMode

from .support import write_profile

V1_INBOX = """
CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, chat_id TEXT NOT NULL, chat_type TEXT NOT NULL,
    sender_id TEXT NOT NULL, message_type TEXT NOT NULL, text TEXT, received_at REAL NOT NULL,
    state TEXT NOT NULL, updated_at REAL NOT NULL, answer TEXT, reply_id TEXT, model TEXT, latency REAL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE history (chat_id TEXT PRIMARY KEY, turns TEXT NOT NULL, updated_at REAL NOT NULL);
PRAGMA user_version=1;
"""


def test_a_schema_1_journal_is_migrated_and_its_pending_messages_still_answered(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db = sqlite3.connect(path)
    db.executescript(V1_INBOX)
    db.execute(
        "INSERT INTO inbox VALUES ('om_1', 'ev_1', 'oc_1', 'p2p', 'ou_1', 'text', 'hello', 1.0,"
        " 'answering', 1.0, NULL, NULL, NULL, NULL, NULL, 1)"
    )
    db.execute(
        "INSERT INTO inbox VALUES ('om_2', 'ev_2', 'oc_1', 'p2p', 'ou_1', 'image', NULL, 2.0,"
        " 'received', 2.0, NULL, NULL, NULL, NULL, NULL, 0)"
    )
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        text, image = journal.unfinished()
        assert interpret("text", text.message.raw_content, (), None)[0] == "hello"
        assert interpret("image", image.message.raw_content, (), None)[3] is not None  # still gets its answer
        assert (text.reply_mode, text.checkpoint) == (None, None)
        journal.save_delivery("om_1", DeliveryMode.CARD, json.dumps({"card_id": "c1"}))
        assert journal.unfinished()[0].reply_mode == "card"
        assert journal._read("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    finally:
        journal.close()
    Journal(path).close()  # opening a migrated journal again changes nothing


def test_chat_models_and_history_reset_are_per_chat_and_stored_with_the_commands_reply(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "p.db")
    try:
        for n in (1, 2, 3):
            journal.record_inbound(
                IncomingMessage(f"ev_{n}", f"om_cmd{n}", "oc_1", "p2p", "ou_1", "text", "{}", float(n))
            )

        def switch_to_beta(chat: ChatSettings) -> str:
            chat.set_chat_model("oc_1", "beta")
            return "beta here"

        def clear_models(chat: ChatSettings) -> str:
            chat.clear_chat_models()
            return "all on the default"

        journal.answer_locally("om_cmd1", switch_to_beta)
        assert (journal.chat_model("oc_1"), journal.chat_model("oc_2")) == ("beta", None)
        for key in ("oc_1", "oc_1/ou_a", "oc_10", "oc_2"):
            journal.save_answer(f"om_{key}", key, "a", None, None, [{"role": "user", "content": key}])
        assert journal.answer_locally("om_cmd2", lambda chat: f"forgot {chat.forget_history('oc_1')}") == "forgot 2"
        assert journal.load_history("oc_10") != [] and journal.load_history("oc_2") != []
        journal.answer_locally("om_cmd3", clear_models)
        assert journal.chat_model("oc_1") is None
        # Each reply is stored with its effect: a re-drive sends it and never runs the command again.
        stored = {p.message.message_id: (p.answer, p.model) for p in journal.unfinished()}
        assert stored == {
            "om_cmd1": ("beta here", None),
            "om_cmd2": ("forgot 2", None),
            "om_cmd3": ("all on the default", None),
        }
    finally:
        journal.close()


def test_chat_settings_are_read_checked_and_shown(home: Home, sims: Simulators) -> None:
    extra = 'admins = ["ou_admin"]\n[feishu.chat_policies]\n"oc_a" = "always"\n"oc_b" = "never"\n'
    write_profile(home, "p", sims, reply_mode="stream", group_policy="never", extra=extra)
    profile = load_profile(home, "p")
    assert (profile.feishu.reply_mode, profile.feishu.group_policy) == ("stream", "never")
    assert profile.feishu.chat_policies == (("oc_a", "always"), ("oc_b", "never"))
    assert profile.admins == ("ou_admin",) and profile.llm.history_per_user_in_groups is False
    shown = describe_profile(profile)
    assert shown["feishu.chat_policies"] == "oc_a=always, oc_b=never" and shown["gateway.admins"] == "ou_admin"


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"reply_mode": "cards"}, 'feishu.reply_mode: expected one of "stream", "text"'),
        ({"group_policy": "sometimes"}, 'feishu.group_policy: expected one of "always", "mention", "never"'),
        ({"extra": '[feishu.chat_policies]\n"oc_a" = "loud"\n'}, "feishu.chat_policies.oc_a: expected one of"),
        ({"extra": 'admins = "ou_1"'}, "gateway.admins: expected a list of non-empty strings"),
        ({"extra": 'admin = ["ou_1"]'}, "unknown key gateway.admin: did you mean admins?"),
    ],
)
def test_bad_chat_settings_are_one_clear_line(
    home: Home, sims: Simulators, options: dict[str, str], expected: str
) -> None:
    write_profile(home, "p", sims, **options)
    with pytest.raises(ConfigError) as error:
        load_profile(home, "p")
    assert expected in str(error.value) and "\n" not in str(error.value)
