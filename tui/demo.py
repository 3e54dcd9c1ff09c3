"""`gatewatch demo`: the console on the built-in simulators, with messages flowing and a fault menu.

Everything is local and temporary: a throw-away GATEWATCH_HOME, a Feishu simulator and an LLM
simulator on 127.0.0.1, and secrets that exist only in this process's environment. A newcomer can
break the gateway from the `f` menu in the ways the incident did and watch each fault heal.
"""

from __future__ import annotations

import itertools
import threading

from gateway_core.demo import DEMO_MODELS, DemoEnvironment
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators

from .app import ConsoleApp
from .screens import Fault
from .source import LocalSource

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
        for model in DEMO_MODELS:
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
    """Open the console on the simulators in a temporary home (the headless demo's setup)."""
    with DemoEnvironment(llm_latency=MODEL_LATENCY) as env:
        gateway = Gateway(env.profile(), env.home, owner="console")
        traffic = DemoTraffic(env.sims, gateway)
        app = ConsoleApp(LocalSource(gateway), home=env.home, faults=demo_faults(env.sims, gateway), handle_signals=True)
        traffic.start()
        try:
            app.run()
        finally:
            traffic.stop()
        return app.return_code or 0
