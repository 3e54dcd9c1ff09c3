"""A profile wired to running simulators — used by the tests, the demo and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..config import Home

if TYPE_CHECKING:  # the package imports this module
    from . import Simulators


def write_sim_profile(
    home: Home,
    name: str,
    sims: Simulators,
    secret_env: str | None = None,
    key_env: str | None = None,
    *,
    secret_files: tuple[str, str] | None = None,
    models: Sequence[str] = ("alpha", "beta"),
    probe_interval: float = 0.2,
    max_workers: int = 4,
    liveness_timeout: float | None = None,
    drain_timeout: float = 10,
    request_timeout: float = 5,
    chat_replies_per_second: int = 5,
    app_replies_per_second: int = 50,
    max_in_flight: int = 256,
    reply_mode: str = "text",
    group_policy: str = "mention",
    history_per_user_in_groups: bool = False,
    extra: str = "",
    feishu_extra: str = "",
    llm_extra: str = "",
) -> Path:
    """Write `<home>/profiles/<name>.toml` pointing at `sims`.

    Secrets come from the named environment variables, or with `secret_files=(app_secret, api_key)`
    from 0600 files written under `<home>/secrets` — the form a launchd job needs, since launchd
    passes no shell environment.

    `reply_mode` is "text" by default here (the profile's own default is "stream"): most tests
    check what a reply says, and a plain reply says it in one message; streaming tests, the demo
    and the benchmarks ask for "stream". `extra`, `feishu_extra` and `llm_extra` are TOML lines
    added to [gateway], [feishu] and [llm] (`llm_extra='vision_models = ["beta"]'`).
    """
    home.ensure_dirs()
    path = home.profile_file(name)
    if secret_files is not None:
        feishu_secret = f'app_secret_file = "{_private_file(home, f"{name}.app_secret", secret_files[0])}"'
        llm_secret = f'api_key_file = "{_private_file(home, f"{name}.api_key", secret_files[1])}"'
    else:
        feishu_secret, llm_secret = f'app_secret_env = "{secret_env}"', f'api_key_env = "{key_env}"'
    model_list = ", ".join(f'"{m}"' for m in models)
    path.write_text(
        f"""# written by gatewatch for the local simulators
[feishu]
app_id = "{sims.feishu.app_id}"
{feishu_secret}
domain = "{sims.feishu.domain}"
{"" if liveness_timeout is None else f"liveness_timeout = {liveness_timeout}"}
max_reconnect_interval = 1
chat_replies_per_second = {chat_replies_per_second}
app_replies_per_second = {app_replies_per_second}
reply_mode = "{reply_mode}"
group_policy = "{group_policy}"
{feishu_extra}

[llm]
base_url = "{sims.llm.base_url}"
{llm_secret}
models = [{model_list}]
request_timeout = {request_timeout}
breaker_cooldown = 30
history_per_user_in_groups = {str(history_per_user_in_groups).lower()}
{llm_extra}

[executor]
max_workers = {max_workers}
probe_interval = {probe_interval}
probe_deadline = 2

[gateway]
drain_timeout = {drain_timeout}
max_in_flight = {max_in_flight}
{extra}
""",
        encoding="utf-8",
    )
    return path


def _private_file(home: Home, name: str, value: str) -> Path:
    directory = home.root / "secrets"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path
