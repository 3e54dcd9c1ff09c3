"""The gateway: one profile's owner, wiring Feishu, the pipeline, the LLM and the held executor.

A Gateway takes the profile's lock before it does anything else and releases it last, so "this
object is running" and "this process owns the profile" are the same fact. The profile's inbox
journal belongs to the lock holder: opened right after the lock is taken (answering whatever the
previous owner left unfinished) and closed right before it is released. A supervisor task probes
the executor and watches the Feishu connection on a fixed interval; the console and the control
socket only read snapshots and call the few operations below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

from .access import AccessGate, perform
from .cardkit import CardKitClient
from .config import Home, Profile
from .control import ControlServer
from .executor import HeldExecutor
from .feishu import FeishuConnection
from .feishu_http import FeishuHttp, FeishuRefused
from .journal import Journal, JournalError
from .judging import ChatRules
from .llm import LlmClient
from .logs import GatewayLogging, escape_untrusted, setup_logging
from .media import MediaReader
from .messages import IncomingMessage
from .ownership import AppIdLock, ProfileLock, app_lock_file
from .pipeline import MessagePipeline, PipelineSnapshot
from .replies import ReplySender, TypingIndicator
from .snapshots import GatewaySnapshot
from .states import FeishuState, GatewayState
from .threads import in_own_thread

log = logging.getLogger("gatewatch.gateway")

LoopExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

PRUNE_INTERVAL = 3600.0  # seconds between prunes of finished journal rows
IDENTITY_RETRY_FIRST, IDENTITY_RETRY_MAX = 1.0, 60.0  # seconds between bot-info attempts (doubling)


class GatewayDraining(RuntimeError):
    """An event arrived while stopping; the SDK acks it as failed so Feishu redelivers it."""


class Gateway:
    def __init__(self, profile: Profile, home: Home, owner: str = "headless", log_to_file: bool = True):
        self.profile = profile
        self.home = home
        self.owner_kind = owner
        self.lock = ProfileLock(home.lock_file(profile.name), profile.name)
        # One gateway per Feishu app as well: two would split the app's events at random.
        self.app_lock = AppIdLock(app_lock_file(home.run, profile.feishu.app_id), profile.feishu.app_id, profile.name)
        self.logging: GatewayLogging | None = None
        self._log_to_file = log_to_file
        self.executor = HeldExecutor(profile.executor.max_workers, profile.executor.probe_deadline)
        self.llm = LlmClient(profile.llm)
        # One HTTP client for Feishu (one token, one deadline policy) on the gateway's loop: replies,
        # CardKit cards and the bot's identity all go through it. The SDK is for the WebSocket only.
        self.feishu_http = FeishuHttp(profile.feishu)
        self.replier = ReplySender(
            self.feishu_http, profile.feishu.chat_replies_per_second, profile.feishu.app_replies_per_second
        )
        self.cardkit = CardKitClient(self.feishu_http, self.replier)
        self._identity: asyncio.Task[None] | None = None
        self.pipeline: MessagePipeline | None = None
        self.journal: Journal | None = None
        self._journal_failure: str | None = None
        self._next_prune = 0.0
        self.feishu = FeishuConnection(profile.feishu, self._on_feishu_message, self.executor)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_exception_handler: LoopExceptionHandler | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._restart_lock = asyncio.Lock()
        self._state = GatewayState.STOPPED
        self._started_at = time.time()
        self._accepting = False
        self.control: ControlServer | None = None
        self.stop_requested = asyncio.Event()  # set by a control-socket `stop`; the owner acts on it

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the profile (ProfileBusy if owned) and its Feishu app (AppIdBusy if another
        profile serves it), open its journal (JournalError if unusable), re-drive what the
        previous owner left unfinished, connect to Feishu, supervise."""
        self.home.ensure_dirs()
        self.lock.acquire(self.owner_kind)
        try:
            self.app_lock.acquire(self.owner_kind)
            self.logging = setup_logging(
                self.home.log_file(self.profile.name) if self._log_to_file else None,
                self.profile.secrets,
                self.profile.logging.level,
                self.profile.logging.max_bytes,
                self.profile.logging.backups,
            )
            self.journal = Journal(self.home.state_file(self.profile.name))
            self._loop = asyncio.get_running_loop()
            self.executor.install_on(self._loop)
            self._report_task_errors_on(self._loop)
            self.pipeline = MessagePipeline(
                self.llm,
                self.replier,
                self.journal,
                self.profile.llm.history_turns,
                self.profile.llm.system_prompt,
                self.profile.stale_after,
                max_in_flight=self.profile.max_in_flight,
                rules=chat_rules(self.profile),
                cardkit=self.cardkit,
                status_line=self.status_line,
                access=AccessGate(self.profile.access, self.journal, self.profile.name),
                media=MediaReader(self.feishu_http, self.llm, self.profile.llm),
                typing=(
                    TypingIndicator(self.feishu_http, self.profile.feishu.app_replies_per_second)
                    if self.profile.feishu.typing_indicator
                    else None
                ),
            )
            self._started_at = time.time()
            self._state, self._accepting = GatewayState.RUNNING, True
            log.info(
                "gateway starting: profile %s, pid %d, owner %s, models %s",
                self.profile.name,
                os.getpid(),
                self.owner_kind,
                ", ".join(self.profile.llm.models),
            )
            access = self.profile.access
            if not access.declared:
                log.info("access: the profile has no [access] section: answering anyone (dm_policy open)")
            else:
                log.info(
                    "access: dm_policy %s, %d open_ids allowed by the profile", access.dm_policy, len(access.allow)
                )
            self.control = ControlServer(self, self.home.socket_file(self.profile.name))
            await self.control.start()
            self.journal.prune()
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            redriven = self.pipeline.redrive(self.journal.unfinished())
            if redriven:
                log.info("re-driving %d unfinished messages from the journal", redriven)
            self.feishu.start()
            # llm.py and feishu_http.py import aiohttp only where they call out (so the console's first
            # frame does not wait for it); it is loaded here, while the SDK connects in its own thread,
            # so that the first answer does not pay for it.
            import aiohttp  # noqa: F401

            self._identity = self._loop.create_task(self._learn_bot_identity(), name="gatewatch-bot-identity")
            self._supervisor = self._loop.create_task(self._supervise(), name="gatewatch-supervisor")
        except BaseException:
            self._release()
            raise

    async def stop(self, drain_timeout: float | None = None) -> int:
        """Stop taking events, finish in-flight answers, disconnect; return answers handed on.

        The WebSocket closes first: events Feishu sends after that are not acked and are
        redelivered to the next owner, while those already accepted are answered here until the
        drain deadline. Answers still unfinished then are cancelled and stay in the journal: the
        next owner answers them.
        """
        if self._state in (GatewayState.STOPPED, GatewayState.DRAINING):
            return 0
        self._state, self._accepting = GatewayState.DRAINING, False
        timeout = self.profile.drain_timeout if drain_timeout is None else drain_timeout
        log.info("gateway stopping: draining up to %.0fs", timeout)
        try:
            await in_own_thread(self.feishu.stop)  # bounded; not on the pool it may be healing
        except Exception as exc:
            log.error("closing the Feishu connection failed: %s", exc)
        await asyncio.sleep(0)  # let hand-overs already scheduled by the SDK thread run
        unfinished = await self.pipeline.drain(timeout) if self.pipeline else 0
        if unfinished:
            log.warning(
                "%d answers unfinished at the %.0fs drain deadline: handed on to the next owner (kept in the journal)",
                unfinished,
                timeout,
            )
        for task in (self._supervisor, self._identity):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.control:
            await self.control.stop()
        await self.llm.aclose()
        await self.feishu_http.aclose()
        self.executor.shutdown(wait=False)
        if self._loop is not None:
            self.executor.forget(self._loop)
        log.info("gateway stopped")
        self._release()
        return unfinished

    def _release(self) -> None:
        self._state = GatewayState.STOPPED
        self._stop_reporting_task_errors()
        if self.journal is not None:
            self.journal.close()  # before the lock: the next owner must find it closed
        self.app_lock.release()  # before the profile's: whoever takes the profile next finds the app free
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
            self.feishu.restart(cause)  # quick: abandons the old attempt, starts a new thread
        return True

    def rebuild_executor(self, cause: str = "operator request") -> None:
        self.executor.rebuild(cause)

    def access_request(self, op: str, argument: str | None = None) -> dict[str, Any]:
        """`gatewatch access …` and the console's approve/deny, on the gateway's loop (AccessError if bad)."""
        if self.journal is None:
            raise RuntimeError("the gateway is not serving")
        return perform(self.journal, self.profile.access, op, argument)

    def request_stop(self, cause: str) -> None:
        """Ask the gateway's owner (headless runner or console) to stop it cleanly."""
        log.info("stop requested: %s", cause)
        self.stop_requested.set()

    async def wait_connected(self, timeout: float) -> bool:
        """True once Feishu is connected; False at the deadline or if the connection failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.feishu.state
            if state == FeishuState.CONNECTED:
                return True
            if state == FeishuState.FAILED:
                return False
            await asyncio.sleep(0.05)  # polling a thread-owned state; bounded by the deadline
        return False

    def status_line(self) -> str:
        """`/status` in a chat: the gateway's verdict in one line (no secrets, no ids)."""
        snap = self.snapshot()
        verdict = snap.health.one_line() if snap.health is not None else "unknown"
        return (
            f"gatewatch {snap.profile}: {verdict} · model {snap.models.active}"
            f" · {snap.pipeline.pending} pending · up {snap.uptime / 60:.0f} min"
        )

    @property
    def journal_failure(self) -> str | None:
        """Why the journal can no longer be written, or None; the owner must then stop."""
        return self._journal_failure or (self.pipeline.journal_failure if self.pipeline else None)

    def snapshot(self) -> GatewaySnapshot:
        """A copy of every part's state; safe from any thread (the console reads it from its own).

        Each part copies under its own lock (executor, Feishu, models, the pipeline's shown rows,
        the journal); the rest are single counters and references, read as they are.
        """
        return GatewaySnapshot(
            profile=self.profile.name,
            state=self._state,
            owner=self.lock.info,
            uptime=time.time() - self._started_at if self._state != GatewayState.STOPPED else 0.0,
            executor=self.executor.snapshot(),
            feishu=self.feishu.snapshot(),
            models=self.llm.snapshot(),
            pipeline=self.pipeline.snapshot() if self.pipeline else PipelineSnapshot.empty(),
            replies=self.replier.stats(),
        )

    @property
    def state(self) -> str:
        return self._state

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the gateway serves on (None before start): its coroutines run there only.

        Snapshots, `log_since` and plain attributes may be read from any thread; everything else
        (operations, `stop()`, the pipeline) belongs to this loop.
        """
        return self._loop

    # -- internals -----------------------------------------------------------------------------

    def _on_feishu_message(self, message: IncomingMessage) -> None:
        """Called on the SDK's thread: journal the message durably, hand it to our loop, return.

        The SDK acks when this returns, so the journal write comes first; if it fails this raises,
        the SDK acks with 500 and Feishu redelivers (to us or to the next owner).
        """
        loop, pipeline, journal = self._loop, self.pipeline, self.journal
        if not self._accepting or loop is None or loop.is_closed() or pipeline is None or journal is None:
            raise GatewayDraining("gateway is stopping; Feishu will redeliver")
        if not message.message_id:
            log.warning("event %s has no message id; nothing to answer", message.event_id)
            return
        try:
            new = journal.record_inbound(message)
        except JournalError as exc:
            self._journal_failure = self._journal_failure or str(exc)
            log.error("%s; not acking, Feishu will redeliver", exc)
            raise
        loop.call_soon_threadsafe(pipeline.accept if new else pipeline.note_duplicate, message)

    def _report_task_errors_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Log the errors nobody awaits on this loop: a task we created, a callback the SDK thread scheduled.

        asyncio's default handler prints them to stderr: under the console nobody sees that, under
        launchd it lands outside the gateway's log, and either way unredacted. Here they become one
        ERROR record with the traceback, through the redacting handlers (the console's log pane, the
        log file, the control socket's stream). Installed for as long as the gateway serves.
        """
        self._previous_exception_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)

    def _stop_reporting_task_errors(self) -> None:
        if self._loop is not None and self._loop.get_exception_handler() == self._on_loop_exception:
            self._loop.set_exception_handler(self._previous_exception_handler)
        self._previous_exception_handler = None

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        what = context.get("message") or "unhandled error"
        error = context.get("exception")
        if isinstance(error, BaseException):
            log.error("error in a gateway task (%s): %s: %s", what, type(error).__name__, error, exc_info=error)
        else:
            log.error("error in a gateway task: %s", what)

    async def _learn_bot_identity(self) -> None:
        """Ask Feishu who the bot is (its open_id tells its own @-mention) until it answers.

        Each attempt has the Feishu HTTP client's deadline; between failures the wait doubles up to a minute.
        Until it is known, group messages with mentions wait (then are held, never guessed).
        """
        delay = IDENTITY_RETRY_FIRST
        while True:
            try:
                identity = await self.feishu_http.bot_identity()
            except FeishuRefused as exc:
                log.warning("bot identity not known yet (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)  # back-off between attempts, each under its own deadline
                delay = min(delay * 2, IDENTITY_RETRY_MAX)
                continue
            log.info("bot identity: %s (%s)", identity.open_id, escape_untrusted(identity.app_name, 60))
            if self.pipeline is not None:
                self.pipeline.learn_bot_identity(identity.open_id)
            return

    async def _supervise(self) -> None:
        # Two watches in one task: a slow executor probe (up to its deadline) must not delay
        # replacing a deaf Feishu connection, which has its own 2 x ping interval + 10 s budget.
        await asyncio.gather(self._probe_executor(), self._watch_feishu())

    async def _probe_executor(self) -> None:
        interval = self.profile.executor.probe_interval
        while True:
            try:
                await self.executor.probe()
                if self.journal_failure and not self.stop_requested.is_set():
                    # Never serve without durability: the owner (headless or console) stops us.
                    self.request_stop(f"the journal cannot be written: {self.journal_failure}")
                if self.journal is not None and self.pipeline is not None:
                    self.pipeline.redeliver_due(self.journal.unfinished)
                if self.journal is not None and time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_INTERVAL
                    self.journal.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor check failed; continuing")
            await asyncio.sleep(interval)  # the probe period itself

    async def _watch_feishu(self) -> None:
        interval = min(FEISHU_CHECK_PERIOD, self.profile.executor.probe_interval)
        while True:
            try:
                reason = self.feishu.check_liveness()
                if reason and not self._restart_lock.locked():
                    await self.restart_feishu(reason)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Feishu liveness check failed; continuing")
            await asyncio.sleep(interval)  # a cheap look at timestamps, never a network call


FEISHU_CHECK_PERIOD = 1.0


def chat_rules(profile: Profile) -> ChatRules:
    """The profile's settings for how chats are answered (issue 13)."""
    return ChatRules(
        reply_mode=profile.feishu.reply_mode,
        group_policy=profile.feishu.group_policy,
        chat_policies=dict(profile.feishu.chat_policies),
        per_user_history=profile.llm.history_per_user_in_groups,
        admins=frozenset(profile.admins),
    )
