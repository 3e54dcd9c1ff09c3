"""The Feishu connection never stays deaf: real lark-oapi against a simulator that misbehaves.

Each test breaks the link the way networks do (a half-open socket, an endpoint POST that never
answers, an attempt blocked in a handler) and shows the connection heals by itself, within the
deadlines it promises, without an abandoned attempt ever delivering an event or changing state.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from typing import Any

import pytest

from gateway_core.config import FeishuConfig, Home, load_profile
from gateway_core.feishu import FeishuConnection, FeishuSnapshot, PhaseDeadlines, derived_liveness_timeout
from gateway_core.gateway import Gateway
from gateway_core.messages import IncomingMessage
from gateway_core.sim import Simulators
from gateway_core.snapshots import GatewaySnapshot
from tui.panels.feishu import render_feishu

from .support import FEISHU_SECRET, in_own_thread, present, until, write_profile

PING = 1  # the simulator's ping interval for these tests (Feishu's is 120 s)


async def started_gateway(
    home: Home, sims: Simulators, name: str = "p", deadlines: PhaseDeadlines | None = None, **options: Any
) -> Gateway:
    write_profile(home, name, sims, **options)
    gateway = Gateway(load_profile(home, name), home, owner="console")
    if deadlines is not None:
        gateway.feishu.deadlines = deadlines
    await gateway.start()
    assert await gateway.wait_connected(15), gateway.feishu.snapshot()
    return gateway


def log_lines(gateway: Gateway, fragment: str) -> list[str]:
    return [line.message for line in present(gateway.logging).ring.since(0) if fragment in line.message]


@pytest.mark.slow
async def test_half_open_link_is_suspected_then_replaced_by_itself(home: Home, sims: Simulators) -> None:
    sims.feishu.ping_interval = PING
    gateway = await started_gateway(home, sims)
    try:
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.pings >= 2, 10)
        assert gateway.snapshot().healthy
        first = sims.feishu.deafen_connection()
        lost = sims.feishu.inject_text("sent into the half-open link")

        # Unhealthy from the moment it is suspected, while still "connected".
        suspected = await until(
            lambda: (snap := gateway.snapshot()).feishu.suspect and snap, 10, "the link to be suspected"
        )
        assert isinstance(suspected, GatewaySnapshot)
        assert suspected.feishu.state == "connected" and not suspected.healthy
        assert "no pong" in present(suspected.feishu.suspect_reason)

        # Replaced within 2 ping intervals + 10 s of going deaf, with no help.
        budget = 2 * PING + 10
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.connections_total >= 2, budget)
        assert sims.feishu.current_conn_id != first
        assert await gateway.wait_connected(10)
        snap = gateway.snapshot()
        assert snap.feishu.restarts == 1 and snap.feishu.generation == 2
        assert log_lines(gateway, "no frame for")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, lost, 1, 15)
        assert reply.text == "[alpha] sent into the half-open link"
        await until(lambda: gateway.snapshot().healthy, 5, "healthy again")
    finally:
        await asyncio.wait_for(gateway.stop(drain_timeout=2), 15)


@pytest.mark.slow
async def test_endpoint_post_hanging_forever_heals_once_it_answers(home: Home, sims: Simulators) -> None:
    quick = PhaseDeadlines(endpoint=1.0, handshake=2.0)
    gateway = await started_gateway(home, sims, deadlines=quick)
    try:
        before = sims.feishu.endpoint_requests
        sims.feishu.hang_endpoint()
        sims.feishu.drop_connection()
        # Each held POST is given up at its deadline and retried: the attempt never sits in one.
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.endpoint_requests >= before + 3, 15)
        snap = await until(
            lambda: (s := gateway.feishu.snapshot()).last_error and s.next_attempt_at and s,
            5,
            "the timeout and the next attempt to be shown",
        )
        assert isinstance(snap, FeishuSnapshot)
        assert snap.state == "reconnecting" and "Timeout" in present(snap.last_error)
        panel = render_feishu(snap, time.time()).plain  # what the console's Feishu panel shows
        assert present(snap.last_error) in panel and "next attempt" in panel
        assert not gateway.snapshot().healthy
        assert sims.feishu.connections_total == 1

        sims.feishu.hang_endpoint(False)
        assert await gateway.wait_connected(10)
        event = sims.feishu.inject_text("after the endpoint came back")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
        assert reply.text == "[alpha] after the endpoint came back"
        assert gateway.feishu.snapshot().restarts == 0  # healed by the deadlines, not the watchdog

        # Stopping while a POST hangs is bounded too.
        sims.feishu.hang_endpoint()
        sims.feishu.drop_connection()
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.endpoints_hanging >= 1, 10)
    finally:
        await asyncio.wait_for(gateway.stop(drain_timeout=2), 15)


async def test_operator_restart_during_a_hung_attempt_connects(home: Home, sims: Simulators) -> None:
    gateway = await started_gateway(home, sims)  # default deadlines: the POST stays hung 10 s
    try:
        sims.feishu.hang_endpoint(count=1)
        sims.feishu.drop_connection()
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.endpoints_hanging == 1, 10)
        assert gateway.feishu.snapshot().detail == "discovering endpoint"

        assert await gateway.restart_feishu("operator, while the attempt hangs")
        assert await gateway.wait_connected(5)  # long before the hung POST's own deadline
        connected = gateway.feishu.snapshot()
        assert connected.generation == 2 and sims.feishu.endpoints_hanging == 1
        event = sims.feishu.inject_text("after the restart")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
        assert reply.text == "[alpha] after the restart"

        # The abandoned attempt's POST is answered at last: it must not connect or change a thing.
        total = sims.feishu.connections_total
        sims.feishu.hang_endpoint(False)
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.endpoints_hanging == 0, 10)
        probe = sims.feishu.inject_text("still the same link")
        await in_own_thread(sims.feishu.wait_for_replies, probe, 1, 15)
        after = gateway.feishu.snapshot()
        assert (after.state, after.conn_id, after.connects) == ("connected", connected.conn_id, connected.connects)
        assert sims.feishu.connections_total == total
    finally:
        await asyncio.wait_for(gateway.stop(drain_timeout=2), 15)


async def test_abandoned_attempt_that_wakes_up_neither_delivers_nor_flips_state(sims: Simulators) -> None:
    """An attempt whose loop is blocked (here: in the event hand-over) is replaced; when it wakes
    up, its queued frames and its teardown reach nothing."""
    entered, release = threading.Event(), threading.Event()
    deliveries: list[tuple[str, str | None]] = []

    def on_message(message: IncomingMessage) -> None:
        deliveries.append((threading.current_thread().name, message.text))
        if message.text == "block" and not entered.is_set():
            entered.set()
            release.wait(30)

    config = FeishuConfig(
        app_id=sims.feishu.app_id, app_secret=FEISHU_SECRET, domain=sims.feishu.domain, max_reconnect_interval=1
    )
    connection = FeishuConnection(config, on_message)
    connection.start()
    try:
        await until(lambda: connection.state == "connected", 15, "the first connection")
        sims.feishu.inject_text("block")
        assert await in_own_thread(entered.wait, 5)
        queued = sims.feishu.inject_text("queued behind the blocked hand-over")
        old = next(t for t in threading.enumerate() if t.name == "gw-feishu-ws-1")

        connection.restart("test: the attempt is blocked")
        await until(lambda: connection.state == "connected", 15, "the replacement connection")
        await until(lambda: ("gw-feishu-ws-2", queued.text) in deliveries, 10, "the redelivery on the new link")
        replaced = connection.snapshot()
        assert replaced.generation == 2

        release.set()  # the old attempt wakes up: its loop stops, it tears down its socket
        # Its teardown is bounded: cancelling its tasks and closing its socket, each within
        # deadlines.close (5 s).
        await in_own_thread(old.join, 2 * connection.deadlines.close + 5)
        assert not old.is_alive(), "".join(traceback.format_stack(sys._current_frames()[present(old.ident)]))
        from_old = [text for name, text in deliveries if name == "gw-feishu-ws-1"]
        assert from_old == ["block"], deliveries  # only what it handed over before it was replaced
        after = connection.snapshot()
        assert (after.state, after.conn_id, after.connects, after.generation) == (
            "connected",
            replaced.conn_id,
            replaced.connects,
            2,
        )
        assert sims.feishu.is_acked(queued)
    finally:
        release.set()
        await in_own_thread(connection.stop)
    assert connection.state == "stopped"


@pytest.mark.slow
async def test_idle_healthy_link_does_not_reconnect_over_ten_ping_intervals(home: Home, sims: Simulators) -> None:
    sims.feishu.ping_interval = PING
    # A configured timeout below two pings is raised to the derived one, with one warning.
    gateway = await started_gateway(home, sims, liveness_timeout=1)
    try:
        await in_own_thread(sims.feishu.wait_for, lambda: sims.feishu.pings >= 12, 30)
        snap = gateway.snapshot()
        assert snap.healthy and snap.feishu.restarts == 0 and snap.feishu.reconnects == 0
        assert sims.feishu.connections_total == 1 and sims.feishu.endpoint_requests == 1
        assert snap.feishu.ping_interval == PING
        assert snap.feishu.liveness_timeout == derived_liveness_timeout(PING)
        assert len(log_lines(gateway, "is below 2 pings")) == 1
    finally:
        await asyncio.wait_for(gateway.stop(drain_timeout=2), 15)


async def test_event_without_message_id_is_acked_and_never_answered(gateway: Gateway, sims: Simulators) -> None:
    nameless = sims.feishu.inject_text("who am I answering?", message_id="")
    await in_own_thread(sims.feishu.wait_acked, nameless, 10)
    event = sims.feishu.inject_text("an ordinary message")
    await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0
    assert [(m.in_reply_to, m.text) for m in sims.feishu.sent] == [(event.message_id, "[alpha] an ordinary message")]
    assert sims.feishu.failed_posts == 0
    assert log_lines(gateway, "has no message id; dropped unanswered")
