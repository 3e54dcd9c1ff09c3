"""`gatewatch demo`: the gateway on the local simulators, no credentials needed.

The headless demo prints a scripted conversation as it flows, including the faults gatewatch
exists for (the executor shut down behind the gateway's back, the WebSocket dropped, the primary
model failing) and how each heals, then a group conversation (the bot answers only when it is
@-mentioned), in-chat commands, and an image, a file and a voice note (issue 20: the image goes
to the vision model, the file's text and the voice note's transcript to the model). Answers
stream into CardKit cards (the simulated model writes a word at a time). The console's demo
(tui/demo.py) opens the console on the same setup.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import Home, Profile, load_profile
from .gateway import Gateway
from .journal import Journal
from .pipeline import MessagePipeline
from .states import FINISHED, ReplyMode
from .threads import in_own_thread

if TYPE_CHECKING:
    # The simulators (aiohttp's server, the SDK's frame class) are imported when the environment is
    # set up, not with this module: the console's demo names its profile before its first frame.
    from .sim import InjectedEvent, Simulators

DEMO_PROFILE = "demo"
DEMO_MODELS = ("demo-fast", "demo-smart")
WORD_PACE = 0.06  # seconds per streamed word: slow enough to watch a card grow
SECRET_ENV, KEY_ENV = "GATEWATCH_DEMO_FEISHU_SECRET", "GATEWATCH_DEMO_LLM_KEY"
VISION_MODEL, TRANSCRIBE_MODEL = DEMO_MODELS[1], "demo-whisper"
DEMO_PNG = base64.b64decode(  # a 1x1 PNG: what a screenshot is to the simulator
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
DEMO_NOTES = "# Deploy checklist\n\n1. tag the release\n2. run the migrations\n3. watch the error rate\n"
DEMO_VOICE = b"OggS\x00\x02" + bytes(range(64))  # stands for an Opus voice note
DEMO_TRANSCRIPT = "What is on the deploy checklist?"


def media_samples(
    sims: Simulators, chat_id: str = "oc_chat1", sender_open_id: str = "ou_user1"
) -> list[tuple[str, Callable[[], InjectedEvent]]]:
    """An image, a markdown file and a voice note, as a user sends them (their bytes served):
    (what the user sent, a call that sends it)."""
    feishu = sims.feishu
    return [
        (
            "<an image>",
            lambda: feishu.inject_image(
                chat_id=chat_id, sender_open_id=sender_open_id, data=DEMO_PNG, content_type="image/png"
            ),
        ),
        (
            "<the file checklist.md>",
            lambda: feishu.inject_file(
                "checklist.md",
                chat_id=chat_id,
                sender_open_id=sender_open_id,
                data=DEMO_NOTES.encode(),
                content_type="text/markdown",
            ),
        ),
        ("<a voice note>", lambda: feishu.inject_audio(DEMO_VOICE, chat_id=chat_id, sender_open_id=sender_open_id)),
    ]


class DemoEnvironment:
    """A temporary GATEWATCH_HOME, both simulators, and a 'demo' profile wired to them."""

    def __init__(self, llm_latency: float = 0.3, word_pace: float = WORD_PACE):
        self.llm_latency = llm_latency
        self.word_pace = word_pace
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._sims: Simulators | None = None
        self._home: Home | None = None

    def __enter__(self) -> "DemoEnvironment":
        self._tmp = tempfile.TemporaryDirectory(prefix="gatewatch-demo-")
        home = self._home = Home(Path(self._tmp.name))
        os.environ["GATEWATCH_HOME"] = str(home.root)
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
        # Fresh random secrets each run: the demo needs none of yours, and shows they never leak.
        os.environ[SECRET_ENV] = "demo-" + secrets.token_hex(8)
        os.environ[KEY_ENV] = "demo-" + secrets.token_hex(8)
        from .sim import Simulators
        from .sim.profile import write_sim_profile

        sims = self._sims = Simulators(
            feishu={"app_id": f"cli_demo{secrets.token_hex(4)}", "app_secret": os.environ[SECRET_ENV]},
            llm={"api_key": os.environ[KEY_ENV]},
        ).start()
        for model in DEMO_MODELS:
            sims.llm.set_behaviour(model, "echo", latency=self.llm_latency)
            sims.llm.pace(model, self.word_pace)
        sims.llm.transcribe_as(DEMO_TRANSCRIPT)
        write_sim_profile(
            home,
            DEMO_PROFILE,
            sims,
            SECRET_ENV,
            KEY_ENV,
            models=DEMO_MODELS,
            probe_interval=1.0,
            reply_mode=ReplyMode.STREAM,
            llm_extra=f'vision_models = ["{VISION_MODEL}"]\ntranscribe_model = "{TRANSCRIBE_MODEL}"',
        )
        return self

    @property
    def sims(self) -> Simulators:
        """The running simulators (inside the `with` only)."""
        if self._sims is None:
            raise RuntimeError("the demo environment is not set up: use it in a `with` block")
        return self._sims

    @property
    def home(self) -> Home:
        """The temporary GATEWATCH_HOME (inside the `with` only)."""
        if self._home is None:
            raise RuntimeError("the demo environment is not set up: use it in a `with` block")
        return self._home

    def profile(self) -> Profile:
        return load_profile(self.home, DEMO_PROFILE)

    def __exit__(self, *exc: object) -> None:
        if self._sims:
            self._sims.stop()
        if self._tmp:
            self._tmp.cleanup()


def run_headless_demo(extra_messages: int = 0) -> int:
    """`gatewatch demo --headless`: the scripted conversation, printed as it flows."""
    with DemoEnvironment() as env:
        return asyncio.run(_scripted_demo(env, extra_messages))


SCRIPT = [
    ("Hello! Who are you?", None),
    ("What does gatewatch watch?", None),
    ("This one arrives after the executor is shut down behind the gateway's back.", "executor"),
    ("This one arrives after the WebSocket was dropped by the server.", "websocket"),
    ("This one arrives while the primary model returns HTTP 500.", "model"),
    ("Thanks, bye!", None),
]


async def _scripted_demo(env: DemoEnvironment, extra_messages: int) -> int:
    sims = env.sims
    gateway = Gateway(env.profile(), env.home, owner="headless")
    out = _Printer()
    out.say(f"Feishu simulator {sims.feishu.domain}, LLM simulator {sims.llm.base_url}")
    await gateway.start()
    try:
        if not await gateway.wait_connected(20):
            out.say(f"Feishu did not connect: {gateway.feishu.snapshot().last_error}")
            return 1
        out.say(f"gateway connected (conn_id {gateway.feishu.snapshot().conn_id}), models {', '.join(DEMO_MODELS)}")
        script = SCRIPT + [(f"Extra message {n + 1}", None) for n in range(extra_messages)]
        for text, fault in script:
            if fault:
                await _inject_fault(fault, gateway, sims, out)
            event = sims.feishu.inject_text(text)
            out.say(f"user> {text}")
            await _show_answer(gateway, sims, event, out)
            if fault == "executor":
                executor = gateway.snapshot().executor
                out.say(f"healed: executor rebuilt, restarts {executor.restarts} ({executor.last_restart_cause})")
        sims.llm.set_behaviour(DEMO_MODELS[0], "echo", latency=env.llm_latency)
        await _group_conversation(gateway, sims, out)
        for said, send in media_samples(sims):
            out.say(f"user> {said}")
            await _show_answer(gateway, sims, send(), out)
            activity = gateway.snapshot().pipeline.activity[-1]
            out.say(f"  (media: {activity.media}; in the history as: {activity.text.splitlines()[0]})")
        snap = gateway.snapshot()
        out.say(
            f"done: {snap.pipeline.answered} answered, {snap.pipeline.commands} commands, "
            f"{snap.pipeline.ignored} not for the bot, {snap.pipeline.apologies} apologies, "
            f"executor restarts {snap.executor.restarts}, Feishu reconnects {snap.feishu.reconnects}"
        )
        return 0
    finally:
        await gateway.stop(drain_timeout=5)


async def _show_answer(gateway: Gateway, sims: Simulators, event: InjectedEvent, out: "_Printer") -> None:
    """Wait for the reply to `event` and print it: a card (with its updates) or a text."""
    started = time.monotonic()
    (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 30)
    if reply.msg_type == "interactive":
        card = await in_own_thread(sims.feishu.wait_card_finished, event, 30)
        shown = f"(card, {len(card.content_updates)} updates) {card.text()}"
    else:
        shown = reply.content if reply.text is None else reply.text
    await _pipeline(gateway).drain(10)
    activity = gateway.snapshot().pipeline.activity[-1]
    out.say(f"bot [{activity.model or '-'}, {time.monotonic() - started:.2f}s]> {shown}")


async def _group_conversation(gateway: Gateway, sims: Simulators, out: "_Printer") -> None:
    """A group chat: the bot answers its own @-mention only; commands work in any chat."""
    feishu = sims.feishu
    group = "oc_demo_group"
    out.say(f"group {group} (policy: {gateway.profile.feishu.group_policy}):")
    chatter = feishu.inject_group_text("Anyone up for lunch?", chat_id=group, sender_open_id="ou_alice")
    out.say("alice> Anyone up for lunch?")
    await _wait_settled(gateway, chatter)
    out.say(f"(no reply: {gateway.snapshot().pipeline.activity[-1].outcome}, not addressed to the bot)")
    everyone = feishu.inject_group_text("@_all standup in 5", chat_id=group, sender_open_id="ou_bob")
    out.say("bob> @all standup in 5")
    await _wait_settled(gateway, everyone)
    out.say("(no reply: @all does not address the bot)")
    bob = feishu.user_mention("@_user_2", "ou_bob", "Bob")
    asked = feishu.inject_group_text(
        "@_user_1 what did @_user_2 just announce?",
        chat_id=group,
        sender_open_id="ou_alice",
        mentions=[feishu.bot_mention(), bob],
    )
    out.say(f"alice> @{feishu.bot_name} what did @Bob just announce?")
    await _show_answer(gateway, sims, asked, out)
    for command in ("/model", f"/model {DEMO_MODELS[1]}", "/status"):
        event = feishu.inject_text(command)
        out.say(f"user> {command}")
        await _show_answer(gateway, sims, event, out)


async def _wait_settled(gateway: Gateway, event: InjectedEvent) -> None:
    deadline = time.monotonic() + 15
    while _journal(gateway).state_of(event.message_id) not in FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event.message_id} not settled")
        await asyncio.sleep(0.05)  # polling the journal, bounded by the deadline
    await _pipeline(gateway).drain(10)


def _pipeline(gateway: Gateway) -> MessagePipeline:
    if gateway.pipeline is None:
        raise RuntimeError("the gateway has not started")
    return gateway.pipeline


def _journal(gateway: Gateway) -> Journal:
    if gateway.journal is None:
        raise RuntimeError("the gateway has not started")
    return gateway.journal


async def _inject_fault(fault: str, gateway: Gateway, sims: Simulators, out: "_Printer") -> None:
    if fault == "executor":
        out.say("FAULT: the held executor is shut down behind the gateway's back (the original incident)")
        gateway.executor.pool.shutdown()
    elif fault == "websocket":
        out.say("FAULT: the Feishu server drops the WebSocket")
        before = sims.feishu.connections_total
        sims.feishu.drop_connection()
        await in_own_thread(sims.feishu.wait_for_connection, before + 1, 20)
        await gateway.wait_connected(20)
        out.say(f"healed: reconnected (conn_id {gateway.feishu.snapshot().conn_id})")
    elif fault == "model":
        out.say(f"FAULT: model {DEMO_MODELS[0]} starts failing with HTTP 500")
        sims.llm.set_behaviour(DEMO_MODELS[0], "error")


class _Printer:
    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self._t0:6.2f}s] {line}", flush=True)
