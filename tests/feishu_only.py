"""The Feishu-only set-up of the simulator tests (test_simulators.py, test_sim_cardkit.py): the
app's secret and the SDK's own HTTP client pointed at the simulator. The fixtures (`app_id`,
`feishu_only_sims`) are in conftest.py."""

from __future__ import annotations

from typing import Any

import lark_oapi as lark

from gateway_core.sim.feishu_sim import FeishuSimulator

SECRET = "sim-secret"


def http_client(feishu: FeishuSimulator, app_id: str) -> Any:
    """The SDK's HTTP client (replies, tokens) pointed at the simulator (lark-oapi is untyped: Any)."""
    return (
        lark.Client.builder()
        .app_id(app_id)
        .app_secret(SECRET)
        .domain(feishu.domain)
        .timeout(5)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )
