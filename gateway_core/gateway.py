"""The gateway: one profile's owner, wiring Feishu, the pipeline, the LLM and the held executor.

A Gateway takes the profile's lock before it does anything else and releases it last, so "this
object is running" and "this process owns the profile" are the same fact. A supervisor task probes
the executor and watches the Feishu connection on a fixed interval; the console and the control
socket only read snapshots and call the few operations below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from .config import Home, Profile
from .control import ControlServer
from .executor import ExecutorSnapshot, HeldExecutor
from .feishu import FeishuConnection, FeishuSnapshot, InboundMessage
from .llm import LlmClient, ModelsSnapshot
from .logs import GatewayLogging, setup_logging
from .ownership import OwnerInfo, ProfileLock
from .pipeline import MessagePipeline, PipelineSnapshot
from .replies import ReplySender

log = logging.getLogger("gatewatch.gateway")


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

    @property
    def healthy(self) -> bool:
        """Alive in fact, not just a process: the executor works and Feishu is connected."""
        return (
            self.state == "running"
            and self.executor.state in ("healthy", "busy", "degraded", "replaced")
            and self.feishu.state == "connected"
        )


class GatewayDraining(RuntimeError):
    """An event arrived while stopping; the SDK acks it as failed so Feishu redelivers it."""


class Gateway:
    def __init__(self, profile: Profile, home: Home, owner: str = "headless", log_to_file: bool = True):
        self.profile = profile
        self.home = home
        self.owner_kind = owner
        self.lock = ProfileLock(home.lock_file(profile.name), profile.name)
        self.logging: GatewayLogging | None = None
        self._log_to_file = log_to_file
        self.executor = HeldExecutor(profile.executor.max_workers, profile.executor.probe_deadline)
        self.llm = LlmClient(profile.llm)
        self.replier = ReplySender(profile.feishu)
        self.pipeline: MessagePipeline | None = None
        self.feishu = FeishuConnection(profile.feishu, self._on_feishu_message, self.executor)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task | None = None
        self._restart_lock = asyncio.Lock()
        self._state = "stopped"
        self._started_at = time.time()
        self._accepting = False
        self.control: ControlServer | None = None
        self.stop_requested = asyncio.Event()  # set by a control-socket `stop`; the owner acts on it

    # -- the one way blocking work runs --------------------------------------------------------

    async def run_blocking(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run blocking work (the SDK's connection calls) on the held, supervised executor."""
        return await self.executor.run(fn, *args)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the profile (ProfileBusy if owned), start logging, connect to Feishu, supervise."""
        self.home.ensure_dirs()
        self.lock.acquire(self.owner_kind)
        try:
            self.logging = setup_logging(
                self.home.log_file(self.profile.name) if self._log_to_file else None,
                self.profile.secrets,
                self.profile.logging.level,
                self.profile.logging.max_bytes,
                self.profile.logging.backups,
            )
            self._loop = asyncio.get_running_loop()
            self.executor.install_on(self._loop)
            self.pipeline = MessagePipeline(
                self.llm,
                self._send_reply,
                self.profile.llm.history_turns,
                self.profile.llm.system_prompt,
                max_in_flight=self.profile.max_in_flight,
            )
            self._started_at = time.time()
            self._state, self._accepting = "running", True
            log.info(
                "gateway starting: profile %s, pid %d, owner %s, models %s",
                self.profile.name, os.getpid(), self.owner_kind, ", ".join(self.profile.llm.models),
            )
            self.control = ControlServer(self, self.home.socket_file(self.profile.name))
            await self.control.start()
            self.feishu.start()
            self._supervisor = self._loop.create_task(self._supervise(), name="gatewatch-supervisor")
        except BaseException:
            self._release()
            raise

    async def stop(self, drain_timeout: float | None = None) -> int:
        """Stop taking events, finish in-flight answers, disconnect; return answers left unfinished.

        The WebSocket closes first: events Feishu sends after that are not acked and are
        redelivered to the next owner, while those already accepted are answered here.
        """
        if self._state in ("stopped", "draining"):
            return 0
        self._state, self._accepting = "draining", False
        timeout = self.profile.drain_timeout if drain_timeout is None else drain_timeout
        log.info("gateway stopping: draining up to %.0fs", timeout)
        try:
            await self.run_blocking(self.feishu.stop)
        except Exception as exc:
            log.error("closing the Feishu connection failed: %s", exc)
        await asyncio.sleep(0)  # let hand-overs already scheduled by the SDK thread run
        unfinished = await self.pipeline.drain(timeout) if self.pipeline else 0
        if unfinished:
            log.error("%d answers still unfinished after the drain timeout", unfinished)
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self.control:
            await self.control.stop()
        await self.llm.aclose()
        await self.replier.aclose()
        self.executor.shutdown(wait=False)
        if self._loop is not None:
            self.executor.forget(self._loop)
        log.info("gateway stopped")
        self._release()
        return unfinished

    def _release(self) -> None:
        self._state = "stopped"
        self.lock.release()
        if self.logging:
            self.logging.close()
            self.logging = None

    # -- operations ----------------------------------------------------------------------------

    def switch_model(self, name: str) -> str:
        """Switch the model for the next request; raises UnknownModel. Returns the previous one."""
        return self.llm.switch_model(name)

    async def restart_feishu(self, cause: str = "operator request") -> bool:
        """Reconnect now; False when a restart is already running (one at a time)."""
        if self._restart_lock.locked():
            return False
        async with self._restart_lock:
            await self.run_blocking(self.feishu.restart, cause)
        return True

    def rebuild_executor(self, cause: str = "operator request") -> None:
        self.executor.rebuild(cause)

    def request_stop(self, cause: str) -> None:
        """Ask the gateway's owner (headless runner or console) to stop it cleanly."""
        log.info("stop requested: %s", cause)
        self.stop_requested.set()

    async def wait_connected(self, timeout: float) -> bool:
        """True once Feishu is connected; False at the deadline or if the connection failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.feishu.state
            if state == "connected":
                return True
            if state == "failed":
                return False
            await asyncio.sleep(0.05)  # polling a thread-owned state; bounded by the deadline
        return False

    def snapshot(self) -> GatewaySnapshot:
        return GatewaySnapshot(
            profile=self.profile.name,
            state=self._state,
            owner=self.lock.info,
            uptime=time.time() - self._started_at if self._state != "stopped" else 0.0,
            executor=self.executor.snapshot(),
            feishu=self.feishu.snapshot(),
            models=self.llm.snapshot(),
            pipeline=self.pipeline.snapshot() if self.pipeline else _EMPTY_PIPELINE,
        )

    @property
    def state(self) -> str:
        return self._state

    # -- internals -----------------------------------------------------------------------------

    def _on_feishu_message(self, message: InboundMessage) -> None:
        """Called on the SDK's thread: hand over to our loop and return, so the SDK acks at once."""
        loop = self._loop
        if not self._accepting or loop is None or loop.is_closed() or self.pipeline is None:
            raise GatewayDraining("gateway is stopping; Feishu will redeliver")
        loop.call_soon_threadsafe(self.pipeline.accept, message)

    async def _send_reply(self, message_id: str, text: str, chat_id: str) -> str:
        return await self.replier.reply_text(message_id, text, chat_id)

    async def _supervise(self) -> None:
        interval = self.profile.executor.probe_interval
        while True:
            try:
                await self.executor.probe()
                reason = self.feishu.check_liveness()
                if reason and not self._restart_lock.locked():
                    await self.restart_feishu(reason)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor check failed; continuing")
            await asyncio.sleep(interval)  # the probe period itself


_EMPTY_PIPELINE = PipelineSnapshot(0, 0, 0, 0, 0, 0, None, ())
