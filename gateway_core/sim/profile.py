"""A profile wired to running simulators — used by the tests, the demo and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import Home


def write_sim_profile(
    home: Home,
    name: str,
    sims,  # gateway_core.sim.Simulators
    secret_env: str,
    key_env: str,
    models: Sequence[str] = ("alpha", "beta"),
    probe_interval: float = 0.2,
    max_workers: int = 4,
    liveness_timeout: float = 30,
    extra: str = "",
) -> Path:
    """Write `<home>/profiles/<name>.toml` pointing at `sims`, secrets read from the named env vars."""
    home.ensure_dirs()
    path = home.profile_file(name)
    model_list = ", ".join(f'"{m}"' for m in models)
    path.write_text(
        f"""# written by gatewatch for the local simulators
[feishu]
app_id = "{sims.feishu.app_id}"
app_secret_env = "{secret_env}"
domain = "{sims.feishu.domain}"
liveness_timeout = {liveness_timeout}
max_reconnect_interval = 1

[llm]
base_url = "{sims.llm.base_url}"
api_key_env = "{key_env}"
models = [{model_list}]
request_timeout = 5
breaker_cooldown = 30

[executor]
max_workers = {max_workers}
probe_interval = {probe_interval}
probe_deadline = 2

[gateway]
drain_timeout = 10
{extra}
""",
        encoding="utf-8",
    )
    return path
