"""Issue 19: who may talk to the bot — pairing, allowlists, group chats and per-user budgets.

End to end over the real SDK, a real WebSocket to the Feishu simulator and real HTTP to the LLM
simulator; `gatewatch access …` through `tui.cli.main`, over the control socket while a gateway
serves the profile and directly on the journal (under the profile's lock) when none does.
"""

import json
import os
import re
import time
from pathlib import Path

import pytest

from gateway_core.access import (
    CODE_TTL,
    MAX_PENDING,
    NOT_ALLOWED_NOTICE,
    PAIRING_FULL_NOTICE,
    SLOWDOWN_NOTICE,
    AccessGate,
    RefusalReason,
    mask_code,
    new_code,
)
from gateway_core.config import Home, load_profile, write_profile_template
from gateway_core.control import ControlError, ControlServer, request
from gateway_core.gateway import Gateway
from gateway_core.journal import SCHEMA_VERSION, Journal
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.states import DmPolicy, MessageState
from tui.cli import main

from .support import access_section, connected_gateway, gateway_on_profile, in_own_thread, present, until, write_profile

CODE = re.compile(r"pairing code is ([A-Z2-9]{8}) ")
REFUSED = MessageState.REFUSED


async def replied(gateway: Gateway, sims: Simulators, event: InjectedEvent, count: int = 1) -> list[SentMessage]:
    replies = await in_own_thread(sims.feishu.wait_for_replies, event, count, 15)
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0
    return replies


async def settled(gateway: Gateway, event: InjectedEvent, state: str = REFUSED) -> None:
    """The journal finished `event` in `state`, and nothing is still on its way (how "no reply" is seen)."""
    await until(lambda: present(gateway.journal).state_of(event.message_id) == state, 15, f"{event.message_id} {state}")
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`gatewatch …` in a thread of its own (it may ask the gateway serving on this loop); (code, out, err)."""
    code = await in_own_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def log_text(gateway: Gateway) -> str:
    return "\n".join(line.message for line in present(gateway.logging).ring.since(0))


# ----------------------------------------------------------------------------- pairing


async def test_pairing_end_to_end_approve_restart_revoke(
    home: Home, sims: Simulators, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = "ou_stranger"
    options = dict(extra=access_section(dm_policy="pairing"))
    async with gateway_on_profile(home, sims, **options) as gateway:
        first = sims.feishu.inject_text("hello?", sender_open_id=stranger, chat_id="oc_dm_s")
        (reply,) = await replied(gateway, sims, first)
        code = present(CODE.search(present(reply.text))).group(1)
        assert f"gatewatch access approve {code} --profile p" in present(reply.text)
        assert gateway.journal is not None
        assert gateway.journal.state_of(first.message_id) == REFUSED
        later = [sims.feishu.inject_text(f"again {n}", sender_open_id=stranger, chat_id="oc_dm_s") for n in (1, 2)]
        for event in later:
            await settled(gateway, event)
        assert [sims.feishu.replies_to(e) for e in later] == [[], []]  # one code reply per 10 minutes
        assert sims.llm.requests == []  # none of it asked the model
        assert code not in log_text(gateway) and mask_code(code) in log_text(gateway)
        shown = gateway.snapshot().pipeline
        assert [a.outcome for a in shown.activity] == ["refused"] * 3
        assert code not in shown.activity[0].reply  # the console sees it masked
        assert [p.open_id for p in present(shown.access).pending] == [stranger]

        # Approved while serving: over the control socket, the code in any case.
        status, out, err = await cli(capsys, "access", "approve", code.lower(), "--profile", "p")
        assert (status, err) == (0, "") and f"approved {stranger}" in out
        answered = sims.feishu.inject_text("now?", sender_open_id=stranger, chat_id="oc_dm_s")
        assert [r.text for r in await replied(gateway, sims, answered)] == ["[alpha] now?"]
        assert present(gateway.snapshot().pipeline.access).pending == ()

    # A new owner (restart): the approval is in the journal; the refused messages are not re-driven.
    async with connected_gateway(home, load_profile(home, "p")) as gateway:
        again = sims.feishu.inject_text("still there?", sender_open_id=stranger, chat_id="oc_dm_s")
        assert [r.text for r in await replied(gateway, sims, again)] == ["[alpha] still there?"]
        assert [len(sims.feishu.replies_to(e)) for e in (first, *later)] == [1, 0, 0]
        assert len(sims.llm.requests) == 2

        status, out, _ = await cli(capsys, "access", "revoke", stranger, "--profile", "p")
        assert status == 0 and f"revoked {stranger}" in out
        refused = sims.feishu.inject_text("and now?", sender_open_id=stranger, chat_id="oc_dm_s")
        (notice,) = await replied(gateway, sims, refused)
        assert CODE.search(present(notice.text))  # a stranger again: a new pairing code, no answer
        assert gateway.journal is not None
        assert gateway.journal.state_of(refused.message_id) == REFUSED and len(sims.llm.requests) == 2


async def test_a_strangers_recalled_message_gets_no_code(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims, extra=access_section(dm_policy="pairing")) as gateway:
        recalled = sims.feishu.inject_text("", content="{}", sender_open_id="ou_stranger", chat_id="oc_s")
        await settled(gateway, recalled, MessageState.IGNORED)
        assert sims.feishu.replies_to(recalled) == [] and present(gateway.snapshot().pipeline.access).pending == ()


async def test_a_fourth_pending_stranger_is_told_to_try_later(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims, extra=access_section(dm_policy="pairing")) as gateway:
        for n in range(MAX_PENDING):
            event = sims.feishu.inject_text("hi", sender_open_id=f"ou_s{n}", chat_id=f"oc_s{n}")
            (reply,) = await replied(gateway, sims, event)
            assert CODE.search(present(reply.text))
        fourth = sims.feishu.inject_text("me too", sender_open_id="ou_s9", chat_id="oc_s9")
        (reply,) = await replied(gateway, sims, fourth)
        assert reply.text == PAIRING_FULL_NOTICE
        assert len(present(gateway.snapshot().pipeline.access).pending) == MAX_PENDING
        assert sims.llm.requests == []


async def test_a_code_is_never_sent_into_a_group(home: Home, sims: Simulators) -> None:
    extra = access_section(dm_policy="pairing", chats=["oc_team"])
    async with gateway_on_profile(home, sims, extra=extra) as gateway:
        bot = sims.feishu.bot_mention()
        elsewhere = sims.feishu.inject_group_text("@_user_1 hi", [bot], chat_id="oc_other", sender_open_id="ou_x")
        await settled(gateway, elsewhere)
        assert sims.feishu.replies_to(elsewhere) == []
        # In a listed group the group policy decides, not pairing: a stranger's mention is answered.
        team = sims.feishu.inject_group_text("@_user_1 hi", [bot], chat_id="oc_team", sender_open_id="ou_x")
        assert [r.text for r in await replied(gateway, sims, team)] == ["[alpha] hi"]
        assert present(gateway.snapshot().pipeline.access).pending == ()
        assert len(sims.llm.requests) == 1


# ----------------------------------------------------------------------------- allowlists and budget


async def test_allowlist_answers_the_listed_and_refuses_others_once_an_hour(home: Home, sims: Simulators) -> None:
    extra = access_section(dm_policy="allowlist", allow=["ou_friend"])
    async with gateway_on_profile(home, sims, extra=extra) as gateway:
        friend = sims.feishu.inject_text("hi", sender_open_id="ou_friend", chat_id="oc_f")
        assert [r.text for r in await replied(gateway, sims, friend)] == ["[alpha] hi"]
        first = sims.feishu.inject_text("let me in", sender_open_id="ou_other", chat_id="oc_o")
        assert [r.text for r in await replied(gateway, sims, first)] == [NOT_ALLOWED_NOTICE]
        second = sims.feishu.inject_text("please", sender_open_id="ou_other", chat_id="oc_o")
        await settled(gateway, second)
        assert sims.feishu.replies_to(second) == []
        assert len(sims.llm.requests) == 1  # the friend's only
        assert present(gateway.snapshot().pipeline.access).refused_last_hour == 2


async def test_chats_allowlist_answers_only_the_listed_groups(home: Home, sims: Simulators) -> None:
    extra = access_section(dm_policy="open", chats=["oc_team"])
    async with gateway_on_profile(home, sims, extra=extra) as gateway:
        bot = sims.feishu.bot_mention()
        other = sims.feishu.inject_group_text("@_user_1 hi", [bot], chat_id="oc_other")
        await settled(gateway, other)
        assert sims.feishu.replies_to(other) == []
        team = sims.feishu.inject_group_text("@_user_1 hi", [bot], chat_id="oc_team")
        assert [r.text for r in await replied(gateway, sims, team)] == ["[alpha] hi"]
        quiet = sims.feishu.inject_group_text("no mention", chat_id="oc_team")
        await settled(gateway, quiet, MessageState.IGNORED)  # the group policy still applies inside
        direct = sims.feishu.inject_text("dm")
        assert [r.text for r in await replied(gateway, sims, direct)] == ["[alpha] dm"]
        assert len(sims.llm.requests) == 2


async def test_over_the_hourly_budget_one_slow_down_and_no_model_call(home: Home, sims: Simulators) -> None:
    extra = access_section(dm_policy="open", user_messages_per_hour=2)
    async with gateway_on_profile(home, sims, extra=extra) as gateway:
        for n in range(2):
            event = sims.feishu.inject_text(f"q{n}")
            assert [r.text for r in await replied(gateway, sims, event)] == [f"[alpha] q{n}"]
        over = sims.feishu.inject_text("q2")
        assert [r.text for r in await replied(gateway, sims, over)] == [SLOWDOWN_NOTICE]
        more = sims.feishu.inject_text("q3")
        await settled(gateway, more)
        assert sims.feishu.replies_to(more) == []
        other = sims.feishu.inject_text("mine", sender_open_id="ou_user2", chat_id="oc_u2")
        assert [r.text for r in await replied(gateway, sims, other)] == ["[alpha] mine"]  # a budget per person
        assert len(sims.llm.requests) == 3


async def test_a_message_left_unjudged_by_the_last_owner_is_judged_on_redrive(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims, extra=access_section(dm_policy="allowlist"))
    from gateway_core.messages import IncomingMessage

    journal = Journal(home.state_file("p"))
    left = IncomingMessage("ev_left", "om_left", "oc_l", "p2p", "ou_nobody", "text", '{"text": "hi"}', time.time())
    assert journal.record_inbound(left)
    journal.close()
    async with connected_gateway(home, load_profile(home, "p")) as gateway:
        await until(lambda: present(gateway.journal).state_of("om_left") == REFUSED, 15, "the left message refused")
        assert gateway.pipeline is not None
        assert await gateway.pipeline.drain(10) == 0
        assert gateway.journal is not None
        assert sims.llm.requests == [] and gateway.journal.unfinished() == []


# ----------------------------------------------------------------------------- the CLI without a gateway


def stranger_with_code(home: Home, name: str, ago: float = 0.0) -> str:
    """A pairing code issued `ago` seconds back, as the gate issues it, in the profile's journal."""
    profile = load_profile(home, name)
    journal = Journal(home.state_file(name))
    try:
        gate = AccessGate(profile.access, journal, name, clock=lambda: time.time() - ago)
        judgement = gate.judge("ou_waiting", "oc_w", is_group=False, message_id="om_w")
        assert judgement.reason == RefusalReason.PAIRING_CODE_SENT and judgement.code
        return judgement.code
    finally:
        journal.close()


async def test_cli_on_a_profile_nobody_serves_works_on_the_journal(
    home: Home, sims: Simulators, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(home, "p", sims, extra=access_section(dm_policy="pairing", allow=["ou_boss"]))
    code = stranger_with_code(home, "p", ago=120)
    status, out, _ = await cli(capsys, "access", "list", "--profile", "p")
    assert status == 0
    assert "policy: pairing" in out and "ou_boss  profile" in out
    assert f"{mask_code(code)}  ou_waiting  in oc_w  2 min ago" in out and code not in out
    status, out, _ = await cli(capsys, "access", "approve", f" {code.lower()} ", "--profile", "p")
    assert status == 0 and "approved ou_waiting" in out
    status, out, _ = await cli(capsys, "access", "list", "--profile", "p")
    assert "ou_waiting  approved" in out and "pending codes: none" in out
    assert not home.lock_file("p").read_bytes()  # the lock was taken and let go


@pytest.mark.parametrize(
    "code, expected",
    [
        ("ZZZZZZZZ", "no pending pairing code ZZ******"),
        ("abc", "not a pairing code: expected 8 letters A-Z and digits 2-9"),
        ("O0O0O0O0", "not a pairing code"),
    ],
)
async def test_a_wrong_code_is_one_line_and_exit_1(
    home: Home, sims: Simulators, capsys: pytest.CaptureFixture[str], code: str, expected: str
) -> None:
    write_profile(home, "p", sims, extra=access_section(dm_policy="pairing"))
    stranger_with_code(home, "p")
    status, out, err = await cli(capsys, "access", "approve", code, "--profile", "p")
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


async def test_an_expired_code_is_one_line_and_exit_1(
    home: Home, sims: Simulators, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(home, "p", sims, extra=access_section(dm_policy="pairing"))
    code = stranger_with_code(home, "p", ago=CODE_TTL + 60)
    status, out, err = await cli(capsys, "access", "approve", code, "--profile", "p")
    assert (status, out) == (1, "")
    assert err == f"gatewatch: pairing code {mask_code(code)} has expired: they get a new one with their next message\n"
    status, _, err = await cli(capsys, "access", "revoke", "ou_waiting", "--profile", "p")
    assert status == 1 and err == "gatewatch: ou_waiting is not approved\n"


async def test_access_ops_from_another_uid_are_refused(gateway: Gateway, home: Home) -> None:
    path = home.socket_file("p").with_name("foreign.sock")
    foreign = ControlServer(gateway, path, allowed_uid=os.getuid() + 1)
    await foreign.start()
    try:
        with pytest.raises(ControlError, match="refused: not the gateway's user"):
            await in_own_thread(lambda: request(path, "access_approve", argument="ABCDEFGH"))
        assert foreign.refused_peers == 1
        # The gateway's own socket: the same op from its user is heard (and this code is unknown).
        with pytest.raises(ControlError, match="no pending pairing code AB"):
            await in_own_thread(lambda: request(home.socket_file("p"), "access_approve", argument="ABCDEFGH"))
    finally:
        await foreign.stop()


# ----------------------------------------------------------------------------- the profile


async def test_profile_show_warns_without_access_and_the_template_pairs(
    home: Home, sims: Simulators, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(home, "p", sims)
    assert load_profile(home, "p").access.dm_policy == DmPolicy.OPEN
    status, out, _ = await cli(capsys, "profile", "show", "p")
    assert status == 0
    assert re.search(r"^access\.dm_policy +open \(no \[access\] section\)$", out, re.M)
    (warning,) = [line for line in out.splitlines() if line.startswith("warning: access.dm_policy")]
    assert "answers anyone" in warning

    write_profile_template(home, "fresh")
    for name in ("fresh.feishu", "fresh.llm"):
        (home.secrets / name).write_text("s3cret\n")
        (home.secrets / name).chmod(0o600)
    access = load_profile(home, "fresh").access
    assert (access.dm_policy, access.declared, access.user_messages_per_hour) == (DmPolicy.PAIRING, True, 0)
    status, out, _ = await cli(capsys, "profile", "show", "fresh")
    assert re.search(r"^access\.dm_policy +pairing$", out, re.M) and "warning: access" not in out


def test_codes_are_8_of_the_unambiguous_alphabet_and_masked() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200 and all(re.fullmatch(r"[A-Z2-9]{8}", c) for c in codes)
    assert mask_code("ABCD2345") == "AB******"


# ----------------------------------------------------------------------------- status and health


async def test_status_json_has_access_while_serving_and_when_stopped(home: Home, sims: Simulators) -> None:
    from gateway_core.status import profile_status, render_status

    async with gateway_on_profile(home, sims, extra=access_section(dm_policy="pairing")) as gateway:
        event = sims.feishu.inject_text("hi", sender_open_id="ou_new", chat_id="oc_new")
        (reply,) = await replied(gateway, sims, event)
        code = present(CODE.search(present(reply.text))).group(1)
        serving = await in_own_thread(profile_status, home, "p")
    stopped = await in_own_thread(profile_status, home, "p")
    for status in (serving, stopped):
        access = status.access
        assert access is not None
        assert (access["policy"], access["declared"], access["answers_anyone"]) == ("pairing", True, False)
        assert access["refused_last_hour"] == 1
        ((pending),) = access["pending"]
        assert (pending["open_id"], pending["chat_id"], pending["code"]) == ("ou_new", "oc_new", mask_code(code))
        shown = render_status([status], as_json=True)
        assert json.loads(shown)[0]["access"] == access and code not in shown
        assert "p: 1 pairing requests waiting: gatewatch access list --profile p" in render_status([status], False)


async def test_status_says_a_profile_without_access_answers_anyone(home: Home, sims: Simulators) -> None:
    from gateway_core.status import profile_status, render_status

    async with gateway_on_profile(home, sims) as gateway:
        status = await in_own_thread(profile_status, home, "p")
        assert status.access is not None
        assert status.access["answers_anyone"] is True and status.access["declared"] is False
        assert "p: answers anyone (no [access] section in the profile)" in render_status([status], False)
        assert present(gateway.snapshot().health).verdict == "healthy"


async def test_a_spike_of_refusals_is_a_reason_in_the_verdict(home: Home, sims: Simulators) -> None:
    from gateway_core.health import REFUSALS_DEGRADED

    async with gateway_on_profile(home, sims, extra=access_section(chats=["oc_team"])) as gateway:
        events = [sims.feishu.inject_group_text(f"n{n}", chat_id="oc_elsewhere") for n in range(REFUSALS_DEGRADED)]
        for event in events:
            await settled(gateway, event)
        health = gateway.snapshot().health
        assert health is not None
        assert health.verdict == "degraded"
        assert health is not None
        assert health.reasons == (f"{REFUSALS_DEGRADED} messages refused at the access gate in the last hour",)
        assert sims.feishu.sent == [] and sims.llm.requests == []


def test_a_schema_2_journal_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE access")  # as schema 2 left it
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        from gateway_core.access import AccessRecord

        journal.save_access(AccessRecord("ou_a", approved_at=1.0))
        assert journal.access_record("ou_a") == AccessRecord("ou_a", approved_at=1.0)
        journal.save_access(AccessRecord("ou_a"))  # a row that says nothing any more is gone
        assert journal.access_records() == []
    finally:
        journal.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize(
    "section, expected",
    [
        ('dm_policy = "closed"', 'access.dm_policy: expected one of "pairing", "allowlist", "open"'),
        ("user_messages_per_hour = -1", "access.user_messages_per_hour: expected an integer >= 0"),
        ('allow = "ou_a"', "access.allow: expected a list of non-empty strings"),
        ('alow = ["ou_a"]', "unknown key access.alow: did you mean allow?"),
    ],
)
def test_bad_access_settings_are_one_line_naming_the_key(
    home: Home, sims: Simulators, section: str, expected: str
) -> None:
    from gateway_core.config import ConfigError

    write_profile(home, "p", sims, extra=f"\n[access]\n{section}\n")
    with pytest.raises(ConfigError) as info:
        load_profile(home, "p")
    assert expected in str(info.value) and "\n" not in str(info.value)
