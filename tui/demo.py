"""`gatewatch demo`: the console on the built-in simulators, with messages flowing and a fault menu.

Everything is local and temporary: a throw-away GATEWATCH_HOME, a Feishu simulator and an LLM
simulator on 127.0.0.1, and secrets that exist only in this process's environment. A newcomer can
break the gateway from the `f` menu in the ways the incident did and watch each fault heal. Now
and then a user sends an image, a file or a voice note (Enter on its row shows name, size, type).
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Callable, Protocol

from gateway_core.demo import DEMO_PROFILE
from gateway_core.states import FeishuState

if TYPE_CHECKING:
    from gateway_core.demo import DemoEnvironment
    from gateway_core.gateway import Gateway
    from gateway_core.sim import InjectedEvent, Simulators

from .app import ConsoleApp, leave
from .screens import Fault
from .source import LocalSource

MESSAGE_PERIOD = 3.0  # a gentle stream: enough for the panels to move, slow enough to read
MODEL_LATENCY = 0.4  # the simulated model thinks a little, so latencies are not all zero
REFUSE_SECONDS = 30
MEDIA_EVERY = 3  # every third burst of traffic also carries an image, a file or a voice note

DEMO_CHATS = (("oc_team", "ou_alice"), ("oc_team", "ou_bob"), ("oc_ops", "ou_carol"))
GROUP_CHAT = "oc_demo_group"  # a group where the bot answers only its own @-mention
DEMO_TEXTS = (
    "Hello! Are you there?",
    "Summarise yesterday's incident in one line, please.",
    "What does 'Executor shutdown has been called' mean?",
    "[bold red]this is not bold[/] — untrusted text is shown as typed",
    "How many gateways should serve one profile?",
    "Thanks!",
)


class DemoRun:
    """The demo's moving parts, made in the background once the console has painted.

    The simulators and the gateway (and what they import: aiohttp's server, the SDK's frame class)
    are made by `make_gateway`, which runs on the gateway's own loop thread (`LocalSource`), so the
    first frame waits for none of them.
    """

    def __init__(self) -> None:
        self._env: DemoEnvironment | None = None
        self._gateway: Gateway | None = None
        self._stop = threading.Event()
        self._texts = itertools.cycle(DEMO_TEXTS)
        self._chats = itertools.cycle(DEMO_CHATS)
        self._group_lines = 0
        self._bursts = 0
        self._media: itertools.cycle[Callable[[], InjectedEvent]] | None = None
        self._traffic = threading.Thread(target=self._send_traffic, name="demo-traffic", daemon=True)

    @property
    def env(self) -> DemoEnvironment:
        if self._env is None:
            raise RuntimeError("the demo's simulators are not made yet: make_gateway() makes them")
        return self._env

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the demo's gateway is not made yet: make_gateway() makes it")
        return self._gateway

    @property
    def sims(self) -> Simulators:
        return self.env.sims

    def make_gateway(self) -> Gateway:
        from gateway_core.demo import DemoEnvironment
        from gateway_core.gateway import Gateway

        self._env = DemoEnvironment(llm_latency=MODEL_LATENCY)
        self._env.__enter__()
        self._gateway = Gateway(self._env.profile(), self._env.home, owner="console")
        self._traffic.start()
        return self._gateway

    def close(self) -> None:
        self._stop.set()
        if self._traffic.is_alive():
            self._traffic.join(timeout=5)
        if self._env is not None:
            self._env.__exit__(None, None, None)

    def _send_traffic(self) -> None:
        """A couple of user messages every few seconds while Feishu is connected."""
        while not self._stop.wait(MESSAGE_PERIOD):  # the pause between bursts doubles as the stop check
            if self.gateway.feishu.state != FeishuState.CONNECTED:
                continue  # no piling up while the connection is down; the demo is about watching
            for _ in range(2):
                chat_id, sender = next(self._chats)
                self.sims.feishu.inject_text(next(self._texts), chat_id=chat_id, sender_open_id=sender)
            self._group_turn()
            self._bursts += 1
            if self._bursts % MEDIA_EVERY == 1:
                if self._media is None:
                    from gateway_core.demo import media_samples

                    self._media = itertools.cycle(send for _, send in media_samples(self.sims, "oc_media", "ou_frank"))
                next(self._media)()

    def _group_turn(self) -> None:
        """A group line: every other one @-mentions the bot (answered), the rest are chatter (not)."""
        feishu = self.sims.feishu
        self._group_lines += 1
        if self._group_lines % 2:
            feishu.inject_group_text(
                "@_user_1 any news?", chat_id=GROUP_CHAT, sender_open_id="ou_dave", mentions=[feishu.bot_mention()]
            )
        else:
            feishu.inject_group_text("coffee anyone?", chat_id=GROUP_CHAT, sender_open_id="ou_erin")


class FaultTargets(Protocol):
    """What the faults act on: the demo's DemoRun, or a test's own simulators and gateway."""

    @property
    def sims(self) -> Simulators: ...

    @property
    def gateway(self) -> Gateway: ...


def demo_faults(run: FaultTargets) -> list[Fault]:
    """The fault menu; each fault reaches `run.sims` and `run.gateway` when it is picked.

    Looked up at that moment, not now: in the demo both appear only after the first paint.
    """

    def shut_down_executor() -> str:
        run.gateway.executor.pool.shutdown(wait=False)
        return "executor shut down behind the gateway's back — watch it be replaced"

    def drop_websocket() -> str:
        dropped = run.sims.feishu.drop_connection()
        return "WebSocket dropped — watch Feishu reconnect" if dropped else "no live WebSocket to drop"

    def fail_current_model() -> str:
        model = run.gateway.llm.active_model
        run.sims.llm.set_behaviour(model, "error")
        return f"model {model} now fails — watch failover and its breaker open"

    def heal_models() -> str:
        for model in run.gateway.profile.llm.models:
            run.sims.llm.set_behaviour(model, "echo", latency=MODEL_LATENCY)
        run.sims.feishu.refuse_tokens(False)
        return "all models answer again, and Feishu issues tenant tokens again"

    def unknown_model() -> str:
        model = run.gateway.llm.active_model
        run.sims.llm.set_behaviour(model, "unknown")
        return f"the provider no longer knows {model} (404 model_not_found) — watch the header turn UNHEALTHY"

    def refuse_tokens() -> str:
        run.sims.feishu.refuse_tokens()
        return "Feishu refuses the app's tenant token (10014) — replies fail, the header says why"

    def refuse_reconnects() -> str:
        run.sims.feishu.refuse_reconnects(REFUSE_SECONDS)
        run.sims.feishu.drop_connection()
        return f"Feishu refuses reconnects for {REFUSE_SECONDS}s and the socket dropped — watch it retry, then heal"

    return [
        Fault("executor", "shut down the executor behind the gateway's back", "1", shut_down_executor),
        Fault("websocket", "drop the Feishu WebSocket", "2", drop_websocket),
        Fault("model", "make the current model fail", "3", fail_current_model),
        Fault("heal", "heal the models and the tenant token", "4", heal_models),
        Fault("refuse", f"refuse reconnects for {REFUSE_SECONDS}s (and drop the socket)", "5", refuse_reconnects),
        Fault("unknown", "make the current model unknown to the provider", "6", unknown_model),
        Fault("tokens", "refuse the app's tenant token (replies fail)", "7", refuse_tokens),
    ]


def console_demo(app_class: type[ConsoleApp] = ConsoleApp) -> tuple[DemoRun, ConsoleApp]:
    """The demo's parts and its console, not yet running (the start-up benchmark times this)."""
    run = DemoRun()
    app = app_class(LocalSource(DEMO_PROFILE, run.make_gateway), faults=demo_faults(run), handle_signals=True)
    return run, app


def run_console_demo() -> int:
    """Open the console on the simulators in a temporary home; returns the exit code."""
    run, app = console_demo()
    try:
        app.run()
    finally:
        run.close()
    return leave(app)
