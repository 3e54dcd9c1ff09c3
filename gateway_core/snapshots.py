"""What the gateway reports about itself, and how that report travels over the control socket.

A `GatewaySnapshot` is taken by the process that owns the gateway; the console renders it, the
control socket sends it as JSON. Both the dataclass and its wire codec live here, apart from
`Gateway` (which takes snapshots) and the control server (which sends them), so neither of those
needs the other to know what a snapshot is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .access import AccessSnapshot, PendingCode
from .executor import ExecutorSnapshot
from .feishu import FeishuSnapshot
from .health import Health, assess
from .llm import ModelHealth, ModelsSnapshot
from .ownership import OwnerInfo
from .pipeline import Activity, Answering, PipelineSnapshot
from .replies import ReplyStats
from .states import DeliveryMode, Outcome, ReplyMode


@dataclass(frozen=True)
class GatewaySnapshot:
    """Everything an operator needs to judge whether the gateway is really alive."""

    profile: str
    state: str  # starting | running | draining | stopped
    owner: OwnerInfo | None
    uptime: float
    executor: ExecutorSnapshot
    feishu: FeishuSnapshot
    models: ModelsSnapshot
    pipeline: PipelineSnapshot
    replies: ReplyStats | None = None
    # The one verdict (health.py). Judged when the snapshot is taken, by the process that owns the
    # gateway; a snapshot rebuilt from the control socket carries the owner's verdict unchanged.
    health: Health | None = field(default=None)

    def __post_init__(self) -> None:
        if self.health is None:
            verdict = assess(self.state, self.executor, self.feishu, self.models, self.pipeline, self.replies)
            object.__setattr__(self, "health", verdict)

    @property
    def healthy(self) -> bool:
        """Users get answers (healthy or degraded): the health model's verdict, nothing else."""
        return self.health is not None and self.health.ok


# -- wire codec ---------------------------------------------------------------------------------


def snapshot_to_dict(snapshot: GatewaySnapshot) -> dict[str, Any]:
    data = dataclasses.asdict(snapshot)
    data["healthy"] = snapshot.healthy
    return data


def snapshot_from_dict(data: dict[str, Any]) -> GatewaySnapshot:
    """Rebuild the dataclasses a console renders, from a status response."""

    def build(cls: type, values: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})

    models = data["models"]
    pipeline = dict(data["pipeline"])
    pipeline["activity"] = [build(Activity, _typed_activity(a)) for a in pipeline.get("activity", [])]
    pipeline["answering"] = [
        build(Answering, {**a, "reply_mode": DeliveryMode(a["reply_mode"])}) for a in pipeline.get("answering", [])
    ]
    pipeline["reply_mode"] = ReplyMode(pipeline.get("reply_mode", ReplyMode.TEXT))
    if pipeline.get("access"):
        access = dict(pipeline["access"])
        access["pending"] = [build(PendingCode, p) for p in access.get("pending", [])]
        pipeline["access"] = build(AccessSnapshot, access)
    return GatewaySnapshot(
        profile=data["profile"],
        state=data["state"],
        owner=build(OwnerInfo, data["owner"]) if data.get("owner") else None,
        uptime=data["uptime"],
        executor=build(ExecutorSnapshot, data["executor"]),
        feishu=build(FeishuSnapshot, data["feishu"]),
        models=ModelsSnapshot(active=models["active"], models=tuple(build(ModelHealth, m) for m in models["models"])),
        pipeline=build(PipelineSnapshot, pipeline),
        replies=build(ReplyStats, data["replies"]) if data.get("replies") else None,
        # An older owner sends no verdict: then it is judged here from the parts it did send.
        health=build(Health, data["health"]) if data.get("health") else None,
    )


def _typed_activity(row: dict[str, Any]) -> dict[str, Any]:
    """An activity row's words as the enums they are (an older owner wrote "" for no reply)."""
    mode = row.get("reply_mode")
    return {**row, "outcome": Outcome.read(row["outcome"]), "reply_mode": DeliveryMode(mode) if mode else None}
