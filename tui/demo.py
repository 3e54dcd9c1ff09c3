"""`gatewatch demo`: the console on the built-in simulators, with messages flowing and a fault menu.

Everything is local and temporary: a throw-away GATEWATCH_HOME, a Feishu simulator and an LLM
simulator on 127.0.0.1, and secrets that exist only in this process's environment. A newcomer can
break the gateway from the `f` menu in the ways the incident did and watch each fault heal.
"""

from __future__ import annotations

import itertools
import os
import secrets
import tempfile
import threading
from pathlib import Path

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators

from .app import ConsoleApp
from .screens import Fault
from .source import LocalSource

PROFILE = "demo"
MODELS = ("alpha", "beta")
FEISHU_SECRET_ENV = "GATEWATCH_DEMO_FEISHU_SECRET"
LLM_KEY_ENV = "GATEWATCH_DEMO_LLM_KEY"
MESSAGE_PERIOD = 3.0  # a gentle stream: enough for the panels to move, slow enough to read
MODEL_LATENCY = 0.4  # the simulated model thinks a little, so latencies are not all zero
REFUSE_SECONDS = 30

DEMO_CHATS = (("oc_team", "ou_alice"), ("oc_team", "ou_bob"), ("oc_ops", "ou_carol"))
DEMO_TEXTS = (
    "Hello! Are you there?",
    "Summarise yesterday's incident in one line, please.",
    "What does 'Executor shutdown has been called' mean?",
    "[bold red]this is not bold[/] — untrusted text is shown as typed",
    "How many gateways should serve one profile?",
    "Thanks!",
)


def demo_profile_text(sims: Simulators) -> str:
    models = ", ".join(f'"{m}"' for m in MODELS)
    return f"""\
# The demo profile: everything points at the simulators on 127.0.0.1.
[feishu]
app_id = "{sims.feishu.app_id}"
app_secret_env = "{FEISHU_SECRET_ENV}"
domain = "{sims.feishu.domain}"
liveness_timeout = 30
max_reconnect_interval = 2

[llm]
base_url = "{sims.llm.base_url}"
api_key_env = "{LLM_KEY_ENV}"
models = [{models}]
request_timeout = 5
breaker_cooldown = 15

[executor]
max_workers = 4
probe_interval = 0.5
probe_deadline = 2

[gateway]
drain_timeout = 5
"""


class DemoTraffic:
    """Injects a couple of user messages every few seconds while Feishu is connected."""

    def __init__(self, sims: Simulators, gateway: Gateway):
        self.sims, self.gateway = sims, gateway
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self._texts = itertools.cycle(DEMO_TEXTS)
        self._chats = itertools.cycle(DEMO_CHATS)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(MESSAGE_PERIOD):  # the pause between bursts doubles as the stop check
            if self.gateway.feishu.state != "connected":
                continue  # no piling up while the connection is down; the demo is about watching
            for _ in range(2):
                chat_id, sender = next(self._chats)
                self.sims.feishu.inject_text(next(self._texts), chat_id=chat_id, sender_open_id=sender)


def demo_faults(sims: Simulators, gateway: Gateway) -> list[Fault]:
    def shut_down_executor() -> str:
        gateway.executor.pool.shutdown(wait=False)
        return "executor shut down behind the gateway's back — watch it be replaced"

    def drop_websocket() -> str:
        dropped = sims.feishu.drop_connection()
        return "WebSocket dropped — watch Feishu reconnect" if dropped else "no live WebSocket to drop"

    def fail_current_model() -> str:
        model = gateway.llm.active_model
        sims.llm.set_behaviour(model, "error")
        return f"model {model} now fails — watch failover and its breaker open"

    def heal_models() -> str:
        for model in MODELS:
            sims.llm.set_behaviour(model, "echo", latency=MODEL_LATENCY)
        return "all models answer again"

    def refuse_reconnects() -> str:
        sims.feishu.refuse_reconnects(REFUSE_SECONDS)
        sims.feishu.drop_connection()
        return f"Feishu refuses reconnects for {REFUSE_SECONDS}s and the socket dropped — watch it retry, then heal"

    return [
        Fault("executor", "shut down the executor behind the gateway's back", "1", shut_down_executor),
        Fault("websocket", "drop the Feishu WebSocket", "2", drop_websocket),
        Fault("model", "make the current model fail", "3", fail_current_model),
        Fault("heal", "heal the models", "4", heal_models),
        Fault("refuse", f"refuse reconnects for {REFUSE_SECONDS}s (and drop the socket)", "5", refuse_reconnects),
    ]


def run_console_demo() -> int:
    """Open the console on the simulators in a temporary home; returns the exit code."""
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
    feishu_secret, llm_key = secrets.token_hex(12), secrets.token_hex(12)
    os.environ[FEISHU_SECRET_ENV], os.environ[LLM_KEY_ENV] = feishu_secret, llm_key
    sims = Simulators(
        # A fresh app_id: lark-oapi caches tenant tokens per app_id for the whole process.
        feishu={"app_id": f"cli_demo{secrets.token_hex(6)}", "app_secret": feishu_secret},
        llm={"api_key": llm_key},
    )
    with tempfile.TemporaryDirectory(prefix="gatewatch-demo-") as root, sims:
        home = Home(Path(root))
        home.ensure_dirs()
        home.profile_file(PROFILE).write_text(demo_profile_text(sims), encoding="utf-8")
        for model in MODELS:
            sims.llm.set_behaviour(model, "echo", latency=MODEL_LATENCY)
        gateway = Gateway(load_profile(home, PROFILE), home, owner="console")
        traffic = DemoTraffic(sims, gateway)
        app = ConsoleApp(LocalSource(gateway), home=home, faults=demo_faults(sims, gateway), handle_signals=True)
        traffic.start()
        try:
            app.run()
        finally:
            traffic.stop()
        return app.return_code or 0
