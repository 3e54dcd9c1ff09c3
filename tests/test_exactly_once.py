"""Exactly once across kill -9, drain timeouts, restarts and redeliveries — real processes only.

Each crash point is reached deterministically, with no hook in the gateway:
* before the ack: the test holds SQLite's write lock on the journal, so the gateway's arrival
  write waits; the event has been delivered and cannot have been acked when it is killed;
* after the ack, before the answer: the LLM simulator holds the model's request;
* after the reply POST, before the journal update: the Feishu simulator records the reply (the
  user sees it) but withholds the HTTP response (`hold_send_responses`).
A second headless process then takes the profile. "Shown" replies are those Feishu did not
swallow as a repeated uuid.
"""

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.journal import Journal
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.sim.profile import write_sim_profile
from gateway_core.status import profile_status, render_status
from launchd.agents import AgentSettings, LaunchdManager, install, uninstall
from launchd.handover import hand_back, take_over
from launchd.launchctl import Launchctl
from launchd.plist import job_label

from .handover_support import launchd_pid_serving
from .sim.launchctl_harness import LaunchctlSim
from .support import FEISHU_SECRET, LLM_KEY, HeadlessProcess, ask, in_own_thread, present, until, write_profile


def shown_replies(sims: Simulators, event: InjectedEvent) -> list[SentMessage]:
    return [r for r in sims.feishu.replies_to(event) if not r.duplicate]


def answered_by_successor(
    home: Home, sims: Simulators, events: list[InjectedEvent], journal_states: tuple[str, ...] = ("answered",)
) -> None:
    """Start the next owner, wait until every event is answered, stop it; check each shown once."""
    with HeadlessProcess.start(home, "p") as successor:
        successor.wait_for_line("Feishu connected")
        for event in events:
            sims.feishu.wait_for_replies(event, 1, 20)
        assert successor.terminate_and_wait() == 0
    for event in events:
        assert [r.text for r in shown_replies(sims, event)] == [f"[alpha] {event.text}"], event.text
    journal = Journal(home.state_file("p"))
    try:
        assert journal.unfinished() == []
        assert {journal.state_of(e.message_id) for e in events} <= set(journal_states)
    finally:
        journal.close()


def kill_9(gateway: HeadlessProcess) -> None:
    gateway.process.send_signal(signal.SIGKILL)
    assert gateway.process.wait(10) == -signal.SIGKILL


@pytest.mark.process
def test_kill_9_before_the_ack_is_redelivered_and_answered_once(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        blocker = sqlite3.connect(home.state_file("p"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the gateway's arrival write now waits for this lock
        try:
            event = sims.feishu.inject_text("killed before the ack")
            sims.feishu.wait_for(lambda: sims.feishu.deliveries(event) >= 1, 10)
            assert not sims.feishu.is_acked(event)
            kill_9(gateway)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert sims.feishu.ack_codes(event) == []  # never acked: Feishu still owes it to someone
    answered_by_successor(home, sims, [event])
    assert sims.feishu.deliveries(event) == 2


@pytest.mark.process
def test_kill_9_after_the_ack_before_the_answer_is_answered_by_the_next_owner(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.llm.hold("alpha")
        events = [sims.feishu.inject_text(f"acked then killed {n}", chat_id=f"oc_{n}") for n in range(3)]
        for event in events:
            sims.feishu.wait_acked(event)
        sims.llm.wait_in_flight("alpha", 3, 10)
        kill_9(gateway)
    sims.llm.release("alpha")
    answered_by_successor(home, sims, events)
    assert all(sims.feishu.deliveries(e) == 1 for e in events)  # acked once: no redelivery needed


@pytest.mark.process
def test_kill_9_after_the_reply_post_before_the_journal_update_shows_the_reply_once(
    home: Home, sims: Simulators
) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.feishu.hold_send_responses(True)
        event = sims.feishu.inject_text("posted then killed")
        sims.feishu.wait_held_responses(1)
        assert len(shown_replies(sims, event)) == 1  # the user already sees the answer
        kill_9(gateway)
    sims.feishu.hold_send_responses(False)
    answered_by_successor(home, sims, [event])
    replies = sims.feishu.replies_to(event)
    assert len(replies) == 2 and replies[1].duplicate and replies[0].uuid == replies[1].uuid
    assert len(sims.llm.requests) == 1  # the stored answer was re-sent, the model not asked again


@pytest.mark.process
def test_sigterm_with_the_llm_slower_than_the_drain_exits_in_budget_and_hands_on(home: Home, sims: Simulators) -> None:
    # A model request may take 60 s; the drain allows 1 s. Waiting for the model would take ~60 s.
    write_profile(home, "p", sims, drain_timeout=1, request_timeout=60)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.llm.hold("alpha")
        events = [sims.feishu.inject_text(f"slow answer {n}", chat_id=f"oc_{n}") for n in range(3)]
        sims.llm.wait_in_flight("alpha", 3, 10)
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(15) == 0  # far inside the 60 s the model could still take
        assert "3 unfinished answers handed on to the next owner" in gateway.wait_for_line("stopped")
    assert all(not shown_replies(sims, e) for e in events)
    waiting = profile_status(home, "p")  # nobody serves the profile; its journal says what waits
    assert (
        waiting.owner == "none"
        and waiting.pending == 3
        and waiting.oldest_pending_age is not None
        and waiting.oldest_pending_age >= 0
    )
    assert "3 (oldest" in render_status([waiting], as_json=False)
    sims.llm.release("alpha")
    answered_by_successor(home, sims, events)


@pytest.mark.process
def test_a_journal_write_that_fails_is_not_acked_and_the_gateway_stops_with_exit_4(
    home: Home, sims: Simulators
) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        blocker = sqlite3.connect(home.state_file("p"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # held past the journal's busy timeout: the write fails
        try:
            event = sims.feishu.inject_text("not durable, so not acked")
            assert gateway.process.wait(20) == 4
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        line = gateway.wait_for_line("journal write failed")
        assert "exit 4" in line and str(home.state) in line
    assert sims.feishu.ack_codes(event) == [500]  # Feishu keeps it and redelivers
    answered_by_successor(home, sims, [event])


# Restarts below are in-process owners (a new Gateway on the same home): what they prove is about
# the journal's contents, which the real-process tests above already carry across kill -9.


async def start_owner(home: Home) -> Gateway:
    gateway = Gateway(load_profile(home, "p"), home, owner="console")
    await gateway.start()
    assert await gateway.wait_connected(15)
    return gateway


async def test_a_redelivery_after_a_restart_costs_no_llm_call_and_no_post(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    first = await start_owner(home)
    try:
        event = (await ask(sims, "answer me once", chat_id="oc_1")).event
    finally:
        await first.stop()
    second = await start_owner(home)
    try:
        sims.feishu.redeliver(event)  # Feishu retries hours later, with the same ids
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.ack_codes(event) == [200, 200], 10)
        await ask(sims, "and this one", chat_id="oc_1")  # the new owner works: a fence for the checks below
        assert second.snapshot().pipeline.duplicates == 1
    finally:
        await second.stop()
    assert len(sims.feishu.replies_to(event)) == 1  # one POST ever, not a swallowed duplicate
    assert [r.messages[-1]["content"] for r in sims.llm.requests] == ["answer me once", "and this one"]


async def test_chat_history_survives_a_restart(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    first = await start_owner(home)
    try:
        await ask(sims, "my name is Ada", chat_id="oc_hist")
    finally:
        await first.stop()
    second = await start_owner(home)
    try:
        await ask(sims, "what is my name?", chat_id="oc_hist")
    finally:
        await second.stop()
    prompt = contents(sims.llm.requests[-1].messages)
    assert prompt[1:] == ["my name is Ada", "[alpha] my name is Ada", "what is my name?"]


async def test_a_message_older_than_stale_after_gets_the_restart_apology_not_a_stale_answer(
    home: Home, sims: Simulators
) -> None:
    write_profile(home, "p", sims, extra="stale_after = 3600")
    first = await start_owner(home)
    try:
        sims.llm.hold("alpha")
        event = sims.feishu.inject_text("asked long ago")
        await in_own_thread(sims.llm.wait_in_flight, "alpha", 1, 10)
    finally:
        assert await first.stop(drain_timeout=0) == 1  # handed on, unanswered
    sims.llm.release("alpha")
    write_profile(home, "p", sims, extra="stale_after = 0")  # for the next owner, it is now too old
    second = await start_owner(home)
    try:
        [reply] = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
        # The simulator shows the reply a moment before its HTTP answer reaches the gateway.
        await until(
            lambda: present(second.journal).state_of(event.message_id) == "apologised", 5, "the apology journaled"
        )
    finally:
        await second.stop()
    assert "came in while I was restarting" in present(reply.text)
    assert len(sims.llm.requests) == 1  # only the first owner's abandoned request


@pytest.mark.process
async def test_take_over_and_hand_back_mid_traffic_lose_and_double_nothing_and_keep_history(
    home: Home, sims: Simulators, launchctl_sim: LaunchctlSim, tmp_path: Path
) -> None:
    settings = AgentSettings(agents_dir=tmp_path / "LaunchAgents", throttle_interval=1)
    write_sim_profile(home, "p", sims, secret_files=(FEISHU_SECRET, LLM_KEY), drain_timeout=1, request_timeout=60)
    label = job_label("p")
    install(home, "p", settings, print)
    launchd_pid_serving(home, Launchctl(), label)
    events = [(await ask(sims, "my name is Ada", chat_id="oc_hist")).event]

    # Take over while three answers are in flight at launchd's gateway: it drains for 1 s, hands
    # them on, and the console's gateway answers them.
    sims.llm.hold("alpha")
    in_flight = [sims.feishu.inject_text(f"during the take-over {n}", chat_id=f"oc_{n}") for n in range(3)]
    await in_own_thread(sims.llm.wait_in_flight, "alpha", 3, 10)
    await in_own_thread(lambda: take_over(home, "p", print, manager=LaunchdManager(settings)))
    console = Gateway(load_profile(home, "p"), home, owner="console")
    await console.start()
    try:
        assert await console.wait_connected(15)
        sims.llm.release("alpha")
        for event in in_flight:
            await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
        events += in_flight
        events.append((await ask(sims, "what is my name?", chat_id="oc_hist")).event)
        assert "my name is Ada" in contents(sims.llm.requests[-1].messages)  # history came along

        # Hand back while two answers are in flight here: the console hands them on to launchd's.
        sims.llm.hold("alpha")
        more = [sims.feishu.inject_text(f"during the hand-back {n}", chat_id=f"oc_{n}") for n in range(2)]
        await in_own_thread(sims.llm.wait_in_flight, "alpha", 2, 10)
    finally:
        handed_on = await console.stop(drain_timeout=0.5)
    assert handed_on == 2
    await in_own_thread(lambda: hand_back(home, "p", print, manager=LaunchdManager(settings)))
    sims.llm.release("alpha")
    for event in more:
        await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
    events += more
    events.append((await ask(sims, "and now?", chat_id="oc_hist")).event)
    history = contents(sims.llm.requests[-1].messages)
    assert "my name is Ada" in history and "what is my name?" in history

    for event in events:
        assert [r.text for r in shown_replies(sims, event)] == [f"[alpha] {event.text}"], event.text
    uninstall(home, "p", settings, print)


def contents(messages: list[Any]) -> list[Any]:
    return [m["content"] for m in messages]
