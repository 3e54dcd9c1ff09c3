"""The one health model: the verdict from snapshots, and the same verdict wherever it is shown."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

from gateway_core.config import Home
from gateway_core.health import DEGRADED, HEALTHY, UNHEALTHY, Health, assess
from gateway_core.sim import Simulators
from gateway_core.snapshots import snapshot_from_dict, snapshot_to_dict

from .factories import (
    NOW,
    executor_snapshot,
    feishu_snapshot,
    gateway_snapshot,
    model_health,
    models_snapshot,
    pipeline_snapshot,
    reply_stats,
)
from .support import HeadlessProcess, gateway_env, in_own_thread, present, write_profile


def well() -> dict[str, Any]:
    """The parts of a gateway that is answering everyone."""
    return dict(
        state="running",
        executor=executor_snapshot(),
        feishu=feishu_snapshot(since=NOW - 300, last_frame_at=NOW - 1, ping_interval=120),
        models=models_snapshot(
            "alpha",
            (model_health("alpha", requests=10, last_latency=0.4, avg_latency=0.4), model_health("beta")),
        ),
        pipeline=pipeline_snapshot(received=10, answered=10, last_message_at=NOW - 5),
        replies=reply_stats(sent=10),
    )


def judge(**changes: Any) -> Health:
    parts = {**well(), **changes}
    return assess(now=NOW, **parts)


def test_a_gateway_answering_everyone_is_healthy() -> None:
    health = judge()
    assert (health.verdict, health.reasons, health.ok) == (HEALTHY, (), True)
    assert health.one_line() == "healthy"


def test_feishu_reconnecting_says_for_how_long_why_and_when_next() -> None:
    feishu = replace(
        well()["feishu"],
        state="reconnecting",
        since=NOW - 80,
        last_error="NameResolutionError",
        last_error_at=NOW - 3,
        next_attempt_at=NOW + 4,
    )
    health = judge(feishu=feishu)
    assert health.verdict == UNHEALTHY and not health.ok
    assert health.reasons == ("Feishu reconnecting for 80s: NameResolutionError; next attempt in 4s",)
    assert health.one_line() == "unhealthy: Feishu reconnecting for 80s: NameResolutionError; next attempt in 4s"


def test_a_silent_connection_is_unhealthy_although_it_says_connected() -> None:
    feishu = replace(well()["feishu"], last_frame_at=NOW - 42, suspect=True, suspect_reason="a ping unanswered")
    assert judge(feishu=feishu).reasons == ("Feishu connected but silent for 42s: a ping unanswered",)


def test_executor_dead_is_unhealthy_and_busy_or_rebuilt_only_degraded() -> None:
    executor = well()["executor"]
    dead = judge(executor=replace(executor, state="dead", last_restart_cause="Executor shutdown has been called"))
    assert (dead.verdict, dead.reasons) == (UNHEALTHY, ("executor dead: Executor shutdown has been called",))
    busy = judge(executor=replace(executor, state="busy", busy=8, queued=3))
    assert (busy.verdict, busy.reasons) == (DEGRADED, ("executor busy: 8/8 threads busy, 3 queued",))
    assert judge(executor=replace(executor, state="replaced", last_restart_cause="probe stuck")).verdict == DEGRADED


def test_a_refused_tenant_token_is_unhealthy_at_the_first_failure() -> None:
    refused = reply_stats(
        sent=10,
        failed_attempts=1,
        failures_in_a_row=1,
        last_error="tenant token refused: code 10014: app secret invalid",
        token_refused=True,
    )
    health = judge(replies=refused)
    assert health.verdict == UNHEALTHY
    assert health.reasons == (
        "replies failing: tenant token refused (code 10014: app secret invalid); check the app secret",
    )


def test_other_reply_failures_degrade_then_make_it_unhealthy_in_a_row() -> None:
    one = reply_stats(sent=10, failed_attempts=1, failures_in_a_row=1, last_error="HTTP 500, not a Feishu answer")
    assert judge(replies=one).verdict == DEGRADED
    timeout = "no answer from Feishu within 10s"
    three = judge(replies=reply_stats(sent=10, failed_attempts=3, failures_in_a_row=3, last_error=timeout))
    assert three.reasons == ("replies failing: 3 in a row, last: no answer from Feishu within 10s",)
    # a reply that went out since ends the run
    assert judge(replies=reply_stats(sent=11, failed_attempts=3, last_error=timeout)).verdict == HEALTHY


def test_models_unknown_all_failing_or_only_apologies_are_unhealthy_one_failing_degraded() -> None:
    alpha, beta = well()["models"].models
    unknown = models_snapshot("alpha", (replace(alpha, unknown=True, last_error="HTTP 404 model_not_found"), beta))
    assert judge(models=unknown).reasons == ("model alpha does not exist at the provider (HTTP 404 model_not_found)",)
    open_beta = replace(beta, breaker="open", open_for=22, last_error="HTTP 500")
    one = judge(models=models_snapshot("alpha", (alpha, open_beta)))
    assert (one.verdict, one.reasons) == (DEGRADED, ("model beta failing, tried last for 22s: HTTP 500",))
    both = judge(models=models_snapshot("alpha", (replace(alpha, breaker="open", last_error="HTTP 500"), open_beta)))
    assert (both.verdict, both.reasons) == (UNHEALTHY, ("every model failing: alpha (HTTP 500), beta (HTTP 500)",))
    apologising = judge(pipeline=replace(well()["pipeline"], apologies_in_a_row=3))
    assert apologising.reasons == ("3 apologies in a row: no model answers",)


def test_an_old_backlog_degrades() -> None:
    pipeline = replace(well()["pipeline"], pending=4, oldest_pending_at=NOW - 200)
    assert judge(pipeline=pipeline).reasons == ("4 messages unanswered, the oldest for 3m",)
    assert judge(pipeline=replace(pipeline, oldest_pending_at=NOW - 10)).verdict == HEALTHY


def test_worst_first_and_a_stopped_gateway_is_unhealthy() -> None:
    feishu = replace(well()["feishu"], state="stopped", since=NOW - 5)
    executor = replace(well()["executor"], state="busy", busy=8)
    health = judge(state="draining", feishu=feishu, executor=executor)
    assert health.verdict == UNHEALTHY
    assert health.reasons[:2] == ("gateway draining", "Feishu stopped for 5s")
    assert health.reasons[-1].startswith("executor busy")


def test_the_snapshot_carries_the_verdict_and_the_control_socket_keeps_it() -> None:
    snapshot = gateway_snapshot(
        **{k: v for k, v in well().items() if k != "replies"},
        replies=reply_stats(
            sent=1, failed_attempts=1, failures_in_a_row=1, last_error="code 10014", token_refused=True
        ),
    )
    assert snapshot.health is not None
    assert snapshot.health.verdict == UNHEALTHY and snapshot.healthy is False
    wire = json.loads(json.dumps(snapshot_to_dict(snapshot)))
    assert wire["healthy"] is False and wire["health"]["verdict"] == UNHEALTHY
    back = snapshot_from_dict(wire)
    assert back.health == snapshot.health and back.replies == snapshot.replies
    assert back.models == snapshot.models and back.pipeline == snapshot.pipeline
    del wire["health"]  # an older owner: judged here from what it sent
    assert present(snapshot_from_dict(wire).health).verdict == UNHEALTHY


def run_status(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui", "status", *args],
        env=gateway_env(home),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_refused_tenant_token_makes_headless_and_status_say_unhealthy(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        await in_own_thread(gateway.wait_for_line, "Feishu connected")
        await in_own_thread(gateway.wait_for_line, "health: healthy")
        sims.feishu.refuse_tokens()  # the app secret was reset: the connection stays, replies fail
        sims.feishu.inject_text("does anyone hear me?")
        line = await in_own_thread(gateway.wait_for_line, "health: unhealthy", 20)
        assert "replies failing: tenant token refused (code 10014" in line
        result = await in_own_thread(run_status, home)
        assert result.returncode == 1, result.stdout
        assert "UNHEALTHY: replies failing: tenant token refused (code 10014" in result.stdout
        (row,) = json.loads((await in_own_thread(run_status, home, "--json")).stdout)
        assert row["feishu"] == "connected" and row["healthy"] is False and row["verdict"] == UNHEALTHY
        assert any("10014" in reason for reason in row["reasons"])

        sims.feishu.refuse_tokens(False)  # fixed: the next reply goes out and the verdict follows
        event = sims.feishu.inject_text("and now?")
        await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
        await in_own_thread(gateway.wait_for_lines, "health: healthy", 2, 20)
        assert (await in_own_thread(run_status, home)).returncode == 0
        assert gateway.terminate_and_wait() == 0


async def test_an_unknown_model_makes_headless_and_status_say_unhealthy(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims, models=("ghost", "alpha"))
    with HeadlessProcess.start(home, "p") as gateway:
        await in_own_thread(gateway.wait_for_line, "health: healthy")
        sims.llm.set_behaviour("ghost", "unknown")  # the provider answers 404 model_not_found
        event = sims.feishu.inject_text("hello?")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 20)
        assert reply.text == "[alpha] hello?"  # the next model answered, but the profile is wrong
        line = await in_own_thread(gateway.wait_for_line, "health: unhealthy", 10)
        assert "model ghost does not exist at the provider (HTTP 404 model_not_found)" in line
        result = await in_own_thread(run_status, home)
        assert result.returncode == 1
        assert "UNHEALTHY: model ghost does not exist at the provider" in result.stdout
        assert gateway.terminate_and_wait() == 0
