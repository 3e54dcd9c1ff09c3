"""The control socket: status, remote operations, hostile clients, many subscribers."""

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from typing import Any

import pytest

from gateway_core.config import Home, Profile
from gateway_core.control import (
    ControlError,
    ControlServer,
    arequest,
    is_allowed_peer,
    peer_uid,
    request,
    subscribe,
)
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from gateway_core.snapshots import snapshot_from_dict, snapshot_to_dict

from .support import HeadlessProcess, ask, gateway_env, in_own_thread, write_profile


async def test_status_over_the_socket_is_the_full_snapshot(gateway: Gateway, home: Home, sims: Simulators) -> None:
    path = home.socket_file("p")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    await ask(sims, "hi", gateway=gateway)
    # The activity is recorded once the reply's HTTP answer is back, just after the simulator saw it.
    deadline = time.monotonic() + 5
    while not (status := (await in_own_thread(request, path, "status"))["status"])["pipeline"]["activity"]:
        assert time.monotonic() < deadline, "no activity recorded"
        await asyncio.sleep(0.05)
    assert status["healthy"] is True and status["owner"]["pid"] == os.getpid()
    assert status["feishu"]["state"] == "connected" and status["models"]["active"] == "alpha"
    assert status["pipeline"]["activity"][-1]["preview"] == "hi"
    # The console rebuilds the same dataclasses from it.
    rebuilt = snapshot_from_dict(status)
    assert rebuilt.feishu.conn_id == gateway.snapshot().feishu.conn_id
    assert rebuilt.pipeline.activity[-1].outcome == "answered"


def test_snapshot_codec_round_trips_exactly() -> None:
    from gateway_core.ownership import OwnerInfo

    from .factories import (
        activity,
        executor_snapshot,
        feishu_snapshot,
        gateway_snapshot,
        model_health,
        models_snapshot,
        pipeline_snapshot,
    )

    snap = gateway_snapshot(
        owner=OwnerInfo(pid=1, owner="headless", started_at=2.0, profile="p", launchd_label="ai.x"),
        uptime=3.0,
        executor=executor_snapshot(
            max_workers=4,
            completed=5,
            restarts=1,
            last_restart_at=9.0,
            last_restart_cause="why",
            probe_history=(0.001, 0.002),
        ),
        feishu=feishu_snapshot(since=1.0, conn_id="d1", last_frame_at=2.0),
        models=models_snapshot("a", (model_health("a", requests=1, last_latency=0.1, avg_latency=0.1),)),
        pipeline=pipeline_snapshot(
            received=1,
            answered=1,
            last_message_at=5.0,
            activity=(activity(at=5.0, chat_id="c", sender_id="s", preview="[b]x[/b]", model="a", latency=0.2),),
        ),
    )
    assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snap)))) == snap


def test_named_states_travel_as_their_plain_words() -> None:
    """States are StrEnums in the code and plain words on the wire; a rebuilt snapshot equals the sent one."""
    from gateway_core.executor import ExecutorSnapshot
    from gateway_core.feishu import FeishuSnapshot
    from gateway_core.llm import ModelsSnapshot
    from gateway_core.pipeline import PipelineSnapshot
    from gateway_core.snapshots import GatewaySnapshot
    from gateway_core.states import ExecutorState, FeishuState, GatewayState, Verdict

    snap = GatewaySnapshot(
        profile="p",
        state=GatewayState.RUNNING,
        owner=None,
        uptime=1.0,
        executor=ExecutorSnapshot(
            state=ExecutorState.HEALTHY,
            max_workers=4,
            live_threads=4,
            busy=0,
            queued=0,
            completed=1,
            failed=0,
            restarts=0,
            last_probe_latency=0.001,
            probe_p50=0.001,
            probe_p95=0.001,
            last_restart_at=None,
            last_restart_cause=None,
        ),
        feishu=FeishuSnapshot(
            state=FeishuState.CONNECTED,
            since=1.0,
            detail="",
            conn_id="c1",
            last_frame_at=2.0,
            connects=1,
            reconnects=0,
            restarts=0,
            last_error=None,
        ),
        models=ModelsSnapshot(active="a", models=()),
        pipeline=PipelineSnapshot.empty(),
    )
    assert snap.health is not None and snap.health.verdict is Verdict.HEALTHY
    text = json.dumps(snapshot_to_dict(snap))
    wire = json.loads(text)
    assert '"state": "running"' in text and '"verdict": "healthy"' in text
    assert (wire["state"], wire["executor"]["state"], wire["feishu"]["state"]) == ("running", "healthy", "connected")
    rebuilt = snapshot_from_dict(wire)
    assert rebuilt == snap
    assert rebuilt.feishu.state == FeishuState.CONNECTED and type(rebuilt.feishu.state) is str


async def test_remote_operations_show_in_the_next_reply_and_snapshot(
    gateway: Gateway, home: Home, sims: Simulators
) -> None:
    path = home.socket_file("p")
    response = await arequest(path, "switch_model", model="beta")
    assert response["previous"] == "alpha"
    assert (await ask(sims, "which model?", gateway=gateway)).text == "[beta] which model?"
    with pytest.raises(ControlError, match="unknown model 'nope'"):
        await arequest(path, "switch_model", model="nope")

    conn_before = gateway.feishu.snapshot().conn_id
    assert (await arequest(path, "restart_feishu", timeout=15))["restarted"] is True
    assert await gateway.wait_connected(10) and gateway.feishu.snapshot().conn_id != conn_before

    await arequest(path, "rebuild_executor")
    assert gateway.snapshot().executor.restarts == 1
    assert (await ask(sims, "still fine", gateway=gateway)).text == "[beta] still fine"


async def test_hostile_clients_get_errors_and_the_gateway_keeps_answering(
    gateway: Gateway, home: Home, sims: Simulators
) -> None:
    path = str(home.socket_file("p"))

    async def exchange(payload: bytes) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(payload)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        answer: dict[str, Any] = json.loads(line)
        return answer

    assert (await exchange(b"garbage\n"))["error"] == "not JSON"
    assert "unknown op" in (await exchange(b'{"v":1,"op":"format_disk"}\n'))["error"]
    assert "version" in (await exchange(b'{"v":99,"op":"status"}\n'))["error"]
    assert "a request is a JSON object" in (await exchange(b"[1,2]\n"))["error"]
    assert "larger than" in (await exchange(b"x" * (10 * 1024 * 1024) + b"\n"))["error"]
    # Half a line, then gone.
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b'{"v":1,"op":"sta')
    await writer.drain()
    writer.close()
    assert (await ask(sims, "unbothered", gateway=gateway)).text == "[alpha] unbothered"
    assert gateway.control is not None
    assert gateway.control.bad_requests >= 5
    assert (await arequest(home.socket_file("p"), "status"))["status"]["healthy"]


async def test_200_subscribers_receive_updates_and_cannot_slow_the_gateway(
    gateway: Gateway, home: Home, sims: Simulators
) -> None:
    path = str(home.socket_file("p"))
    idle = []  # subscribers that never read: their buffers fill, they must not hold anyone up
    for _ in range(200):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b'{"v":1,"op":"subscribe"}\n')
        idle.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in idle))

    stream = subscribe(home.socket_file("p"))
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert first["ok"] and first["status"]["state"] == "running" and isinstance(first["log"], list)
    assert (await ask(sims, "busy socket", gateway=gateway)).text == "[alpha] busy socket"
    seen_log = seen_snapshot = False
    while not (seen_log and seen_snapshot):
        event = await asyncio.wait_for(stream.__anext__(), 10)
        seen_snapshot |= event.get("event") == "snapshot"
        seen_log |= event.get("event") == "log" and "busy socket" in event["line"]["message"]
    assert gateway.control is not None
    assert gateway.control.subscriber_count == 201
    await stream.aclose()
    for _, writer in idle:
        writer.close()


def test_peer_check_refuses_another_uid() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        assert peer_uid(left) == os.getuid() and peer_uid(right) == os.getuid()
        assert is_allowed_peer(peer_uid(left), own_uid=os.getuid())
        assert not is_allowed_peer(peer_uid(left), own_uid=os.getuid() + 1)  # the same peer, to another user's gateway
    finally:
        left.close()
        right.close()
    assert not is_allowed_peer(None)  # a peer whose uid cannot be told is refused too


async def test_a_connection_from_another_user_is_refused_and_counted(gateway: Gateway, home: Home) -> None:
    """A real connection down the refused path: a server that lets in only another uid than ours.

    (Connecting as another user needs root; the server's side of the check is the same either way.)
    """
    path = home.root / "run" / "other-user.sock"
    foreign = ControlServer(gateway, path, allowed_uid=os.getuid() + 1)
    await foreign.start()
    try:
        with pytest.raises(ControlError, match="refused: not the gateway's user"):
            await in_own_thread(request, path, "status")
        with pytest.raises(ControlError, match="refused"):
            await in_own_thread(request, path, "stop")  # nothing gets through, not even a stop
        assert foreign.refused_peers == 2
        assert gateway.state == "running"
        # The gateway's own socket lets its own user in, and refused no one.
        assert (await in_own_thread(request, home.socket_file("p"), "status"))["ok"]
        assert gateway.control is not None
        assert gateway.control.refused_peers == 0
    finally:
        await foreign.stop()


async def test_stale_socket_left_by_a_dead_owner_is_cleaned_up(home: Home, profile: Profile, sims: Simulators) -> None:
    path = home.socket_file("p")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed gateway leaves behind
    with pytest.raises(ControlError):
        await in_own_thread(request, path, "status", 1.0)
    gateway = Gateway(profile, home, owner="console")
    await gateway.start()
    try:
        assert (await arequest(path, "status"))["status"]["state"] == "running"
    finally:
        await gateway.stop(drain_timeout=2)
    assert not path.exists()


@pytest.mark.process
def test_status_cli_and_remote_stop_of_a_headless_gateway(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    write_profile(home, "idle", sims)
    write_profile(home, "typo", sims, extra="max_wrokers = 8\n")  # under [gateway]: no such key
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        result = subprocess.run(
            [sys.executable, "-m", "tui", "status", "--json"],
            env=gateway_env(home),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        rows = {row["profile"]: row for row in json.loads(result.stdout)}
        assert rows["idle"]["owner"] == "none" and rows["idle"]["healthy"] is None
        assert rows["idle"]["state"] == "stopped" and rows["p"]["state"] == "running"
        assert rows["typo"]["state"] == "invalid"
        assert rows["typo"]["problem"].startswith("unknown key gateway.max_wrokers")
        table = subprocess.run(
            [sys.executable, "-m", "tui", "status"],
            env=gateway_env(home),
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.splitlines()
        line_of = {line.split()[0]: line for line in table[1:]}
        assert line_of["idle"].rstrip().endswith("stopped")
        assert "invalid: unknown key gateway.max_wrokers" in line_of["typo"]
        assert line_of["p"].rstrip().endswith("healthy")
        assert rows["p"]["owner"] == "headless" and rows["p"]["pid"] == gateway.process.pid
        assert rows["p"]["feishu"] == "connected" and rows["p"]["healthy"] is True

        assert request(home.socket_file("p"), "stop")["stopping"] is True
        assert gateway.process.wait(20) == 0


@pytest.mark.process
def test_status_reports_an_empty_shell_as_unhealthy(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.feishu.refuse_reconnects(60)
        sims.feishu.drop_connection()  # the WebSocket is gone; the process lives on
        result = subprocess.run(
            [sys.executable, "-m", "tui", "status"],
            env=gateway_env(home),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "UNHEALTHY" in result.stdout and "Feishu reconnecting" in result.stdout


async def test_a_subscriber_may_ask_for_one_snapshot_in_n_and_still_gets_every_log_line(
    gateway: Gateway, home: Home
) -> None:
    """The fleet view takes a snapshot a second (`every`: 2); log lines are never skipped."""
    path = home.socket_file("p")
    fast, slow = subscribe(path, silence_limit=5), subscribe(path, silence_limit=5, every=4)
    try:
        await anext(fast), await anext(slow)  # the first answers
        slow_events: list[dict[str, Any]] = []

        async def read_slow() -> None:
            async for event in slow:
                slow_events.append(event)

        reader = asyncio.create_task(read_slow())
        fast_snapshots = 0
        while fast_snapshots < 12:
            event = await anext(fast)
            fast_snapshots += event.get("event") == "snapshot"
        logging.getLogger("gatewatch.test").info("a line every subscriber must see")
        while fast_snapshots < 16:
            event = await anext(fast)
            fast_snapshots += event.get("event") == "snapshot"
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        slow_snapshots = sum(event.get("event") == "snapshot" for event in slow_events)
        assert 3 <= slow_snapshots <= 5  # 16 ticks, one snapshot in 4 (the two streams start a tick apart)
        lines = [event["line"]["message"] for event in slow_events if event.get("event") == "log"]
        assert "a line every subscriber must see" in lines
    finally:
        await fast.aclose()
        await slow.aclose()


@pytest.mark.parametrize("every", ["0", "21", '"2"', "true", "1.5"])
async def test_a_bad_every_is_refused_in_one_line_and_no_stream_follows(
    gateway: Gateway, home: Home, every: str
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(home.socket_file("p")))
    writer.write(b'{"v":1,"op":"subscribe","every":' + every.encode() + b"}\n")
    await writer.drain()
    answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert (answer["ok"], answer["error"]) == (False, "subscribe's 'every' is a whole number from 1 to 20")
    assert gateway.control is not None and gateway.control.subscriber_count == 0
    writer.close()
