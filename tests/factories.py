"""Keyword factories for the snapshot dataclasses a test builds by hand.

Each one makes the part of a gateway that is answering everyone (the baseline the health model
calls healthy), and a test names only what it changes: `feishu_snapshot(state="reconnecting")`.
A field added to a dataclass then needs a default here, not an edit of every positional call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway_core.executor import ExecutorSnapshot
from gateway_core.feishu import FeishuSnapshot
from gateway_core.llm import ModelHealth, ModelsSnapshot
from gateway_core.pipeline import Activity, PipelineSnapshot
from gateway_core.replies import ReplyStats
from gateway_core.snapshots import GatewaySnapshot
from gateway_core.states import DeliveryMode, ExecutorState, FeishuState, GatewayState, Outcome

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: the frozen clock of the console pictures


def executor_snapshot(**changes: Any) -> ExecutorSnapshot:
    return ExecutorSnapshot(
        **{
            "state": ExecutorState.HEALTHY,
            "max_workers": 8,
            "live_threads": 2,
            "busy": 0,
            "queued": 0,
            "completed": 10,
            "failed": 0,
            "restarts": 0,
            "last_probe_latency": 0.001,
            "probe_p50": 0.001,
            "probe_p95": 0.002,
            "last_restart_at": None,
            "last_restart_cause": None,
            **changes,
        }
    )


def feishu_snapshot(**changes: Any) -> FeishuSnapshot:
    return FeishuSnapshot(
        **{
            "state": FeishuState.CONNECTED,
            "since": NOW - 300,
            "detail": "",
            "conn_id": "c1",
            "last_frame_at": NOW - 1,
            "connects": 1,
            "reconnects": 0,
            "restarts": 0,
            "last_error": None,
            **changes,
        }
    )


def model_health(name: str = "alpha", **changes: Any) -> ModelHealth:
    """A model whose breaker is closed and that has not been asked yet."""
    return ModelHealth(
        **{
            "name": name,
            "breaker": "closed",
            "open_for": 0.0,
            "requests": 0,
            "errors": 0,
            "last_latency": None,
            "avg_latency": None,
            "last_error": None,
            **changes,
        }
    )


def models_snapshot(active: str = "alpha", models: tuple[ModelHealth, ...] | None = None) -> ModelsSnapshot:
    return ModelsSnapshot(active=active, models=(model_health(active),) if models is None else models)


def activity(**changes: Any) -> Activity:
    """One answered text message in a direct chat."""
    return Activity(
        **{
            "at": NOW,
            "chat_id": "oc_1",
            "sender_id": "ou_1",
            "preview": "hi",
            "model": "alpha",
            "latency": 0.2,
            "outcome": Outcome.ANSWERED,
            "reply_mode": DeliveryMode.TEXT,
            **changes,
        }
    )


def pipeline_snapshot(**changes: Any) -> PipelineSnapshot:
    """Counters only (nothing received) unless changed; `PipelineSnapshot.empty()` is the baseline."""
    return dataclasses.replace(PipelineSnapshot.empty(), **changes)


def reply_stats(**changes: Any) -> ReplyStats:
    return ReplyStats(**{"sent": 0, "rate_limited": 0, "failed_attempts": 0, **changes})


def gateway_snapshot(**changes: Any) -> GatewaySnapshot:
    """A running gateway made of the parts above; the health verdict is judged from them."""
    return GatewaySnapshot(
        **{
            "profile": "p",
            "state": GatewayState.RUNNING,
            "owner": None,
            "uptime": 1.0,
            "executor": executor_snapshot(),
            "feishu": feishu_snapshot(),
            "models": models_snapshot(),
            "pipeline": pipeline_snapshot(),
            **changes,
        }
    )
