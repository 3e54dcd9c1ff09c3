"""The Feishu side: the SDK's WebSocket long connection, owned and watched (HTTP: feishu_http.py).

The SDK is loaded lean and its client subclassed in `_lark_compat.py`, the one module that reaches
into lark-oapi. What lark-oapi 1.7.5's `ws.Client` does that shapes this class (read from its source):
- it schedules its tasks on a *module-level* event loop, `start()` blocks forever and there is
  no `stop()`; so each connection attempt runs in a thread of ours with a loop of its own, and
  the subclass below makes the SDK use the loop it runs on, never the global one;
- its endpoint discovery is a `requests.post` without a timeout and its handshake has no
  deadline of ours: the subclass gives every phase a deadline (`PhaseDeadlines`);
- its reconnect waits follow the server's ClientConfig (120 s by default); we cap them;
- after giving up reconnecting, its receive task dies but `start()` keeps blocking with no
  connection — the "empty shell"; we observe connect/disconnect/frames/pings through the
  subclass, so the state machine below always tells the truth.

Each attempt is a *generation*. `restart()` abandons the current one, whatever it is blocked in,
and starts a fresh one at once; every callback carries its generation and a stale one is ignored,
so an abandoned attempt that wakes up later can neither deliver events nor change the state.

Liveness comes from the protocol: the SDK pings every `PingInterval` (set by the server) and
Feishu answers each ping with a pong. One unanswered ping makes the connection *suspect*
(reported unhealthy at once); two make it *deaf* and it is replaced.

The SDK calls our event handler synchronously on its loop thread and acks when it returns: the
handler only parses the event into the gateway's record of it (`messages.IncomingMessage`) and
hands that over.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ._lark_compat import (
    MessageEvents,
    StaleAttempt,
    is_client_exception,
    load_ws_client,
    observed_client_class,
    sdk_error_text,
)
from .config import FeishuConfig
from .executor import HeldExecutor
from .logs import escape_untrusted
from .messages import IncomingMessage, incoming_from_event
from .states import FeishuState

log = logging.getLogger("gatewatch.feishu")

DEFAULT_PING_INTERVAL = 120.0  # the SDK's and Feishu's default, until the server says otherwise


@dataclass(frozen=True)
class PhaseDeadlines:
    """How long each phase of a connection attempt may take before the attempt counts as stuck."""

    endpoint: float = 10.0  # endpoint discovery POST (connect and read, each)
    handshake: float = 10.0  # WebSocket opening handshake
    close: float = 5.0  # closing handshake when an attempt is torn down
    stop_wait: float = 3.0  # how long stop() waits for the clean close before abandoning
    sdk_import: float = 60.0  # first (lean) load of the SDK's WebSocket side (~0.3 s; more on a loaded machine)
    slack: float = 5.0  # added to every phase budget before the watchdog replaces the attempt


def liveness_grace(ping_interval: float) -> float:
    """How late a pong may be: covers the round trip and a busy loop, never a missed ping."""
    return min(5.0, max(1.0, ping_interval / 2))


def derived_liveness_timeout(ping_interval: float) -> float:
    """Silence after which a connection is deaf: two pings in a row went unanswered."""
    return 2 * ping_interval + liveness_grace(ping_interval)


@dataclass(frozen=True)
class FeishuSnapshot:
    state: str
    since: float
    detail: str
    conn_id: str
    last_frame_at: float | None
    connects: int
    reconnects: int
    restarts: int
    last_error: str | None
    last_error_at: float | None = None
    next_attempt_at: float | None = None  # when the next connect attempt starts, if one is scheduled
    ping_interval: float | None = None  # server-set, seconds
    last_pong_at: float | None = None
    missed_pongs: int = 0  # pings sent since the last frame from the server
    liveness_timeout: float | None = None  # effective: silence after which the link is replaced
    suspect: bool = False  # connected, but the server stopped answering: not healthy
    suspect_reason: str | None = None
    generation: int = 0  # connection attempts started (each restart starts a new one)


@dataclass(eq=False)
class _Attempt:
    """One connection attempt: its thread, its loop and its SDK client, never shared."""

    generation: int
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    client: Any = None
    abandoned: bool = False


class FeishuConnection:
    """One WebSocket long connection at a time, in its own thread, with an honest state."""

    def __init__(
        self,
        config: FeishuConfig,
        on_message: Callable[[IncomingMessage], None],
        executor: HeldExecutor | None = None,
        deadlines: PhaseDeadlines | None = None,
    ):
        self.config = config
        self.deadlines = deadlines or PhaseDeadlines()
        self._on_message = on_message
        self._executor = executor
        self._guard = threading.RLock()
        self._state, self._since, self._detail = FeishuState.IDLE, time.time(), ""
        self._phase_started = time.monotonic()
        self._phase_budget: float | None = None  # None: no deadline (connected, stopped, idle)
        self._conn_id = ""
        self._connected_at: float | None = None
        self._last_frame_at: float | None = None
        self._last_pong_at: float | None = None
        self._pings_unanswered = 0
        self._ping_interval = DEFAULT_PING_INTERVAL
        self._ping_interval_known = False
        self._clamp_warned: tuple[float, float] | None = None
        self._connects = self._restarts = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._next_attempt_at: float | None = None
        self._retryable = False
        self._generation = 0
        self._attempt: _Attempt | None = None
        self._stopping = False
        self._watchdog_backoff = 1.0

    # -- public operations (quick: nothing here waits on the network) --------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once. A live attempt is kept."""
        with self._guard:
            current = self._attempt
            if current is not None and not current.abandoned and current.thread and current.thread.is_alive():
                return
            self._stopping = False
            self._launch()

    def stop(self, timeout: float | None = None) -> None:
        """Close the connection cleanly if that is quick; otherwise abandon it. Bounded."""
        timeout = self.deadlines.stop_wait if timeout is None else timeout
        with self._guard:
            self._stopping = True
            attempt = self._attempt
            self._next_attempt_at = None
            self._abandon(attempt)
        thread = attempt.thread if attempt else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the Feishu attempt did not close within %.0fs; abandoned (it cannot deliver)", timeout)
        with self._guard:
            if self._state != FeishuState.FAILED or attempt is None:
                self._set_state(FeishuState.STOPPED)

    def restart(self, cause: str) -> None:
        """Abandon the current attempt (whatever it is blocked in) and start a fresh one now."""
        log.warning("restarting the Feishu connection: %s", cause)
        with self._guard:
            self._restarts += 1
            self._stopping = False
            self._abandon(self._attempt)
            self._launch()

    def check_liveness(self) -> str | None:
        """Why the connection needs a restart now, or None. Called by the gateway's supervisor.

        Every state but `failed` (credentials refused) and a deliberate stop has a timed way
        back to `connecting`: a silent link, a phase past its deadline, a dead thread, a
        retryable failure after its back-off.
        """
        now, mono = time.time(), time.monotonic()
        with self._guard:
            if self._stopping or self._attempt is None:
                return None
            state, thread = self._state, self._attempt.thread
            if state == FeishuState.CONNECTED:
                silent, timeout = self._silence(now), self._effective_liveness_timeout()
                if silent is not None and silent > timeout:
                    return (
                        f"no frame for {silent:.0f}s ({self._pings_unanswered} pings unanswered; "
                        f"liveness timeout {timeout:g}s from the {self._ping_interval:g}s ping interval)"
                    )
            if (
                state in (FeishuState.CONNECTING, FeishuState.CONNECTED, FeishuState.RECONNECTING)
                and thread is not None
                and not thread.is_alive()
            ):
                return "the SDK thread ended unexpectedly"
            if state in (FeishuState.CONNECTING, FeishuState.RECONNECTING) and self._phase_budget is not None:
                stuck = mono - self._phase_started
                if stuck > self._phase_budget + self.deadlines.slack:
                    return f"attempt stuck in '{self._detail}' for {stuck:.0f}s"
            if (
                state == FeishuState.FAILED
                and self._retryable
                and self._next_attempt_at is not None
                and now >= self._next_attempt_at
            ):
                return f"retrying after: {self._last_error}"
        return None

    def snapshot(self) -> FeishuSnapshot:
        now = time.time()
        with self._guard:
            suspect = self._suspect_reason(now)
            return FeishuSnapshot(
                state=self._state,
                since=self._since,
                detail=self._detail,
                conn_id=self._conn_id,
                last_frame_at=self._last_frame_at,
                connects=self._connects,
                reconnects=max(0, self._connects - 1),
                restarts=self._restarts,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                next_attempt_at=self._next_attempt_at,
                ping_interval=self._ping_interval if self._ping_interval_known else None,
                last_pong_at=self._last_pong_at,
                missed_pongs=self._pings_unanswered,
                liveness_timeout=self._effective_liveness_timeout(),
                suspect=suspect is not None,
                suspect_reason=suspect,
                generation=self._generation,
            )

    @property
    def state(self) -> str:
        return self._state

    def failed_for_good(self) -> bool:
        """True when the connection failed in a way only a person can fix (credentials refused)."""
        with self._guard:
            return self._state == FeishuState.FAILED and not self._retryable

    # -- generations ----------------------------------------------------------------------------

    def _launch(self) -> None:
        """Start a new attempt in a new thread (guard held)."""
        self._generation += 1
        attempt = _Attempt(self._generation)
        self._attempt = attempt
        self._next_attempt_at = None
        self._connected_at = None
        self._pings_unanswered = 0
        self._enter_phase(FeishuState.CONNECTING, "loading SDK", self.deadlines.sdk_import)
        attempt.thread = threading.Thread(
            target=self._run, args=(attempt,), name=f"gw-feishu-ws-{attempt.generation}", daemon=True
        )
        attempt.thread.start()

    def _abandon(self, attempt: _Attempt | None) -> None:
        """Detach an attempt (guard held): from now on its callbacks are ignored; ask its loop to stop.

        Nobody waits for it: if its loop is blocked, it stops and closes its socket when it wakes.
        """
        if attempt is None or attempt.abandoned:
            return
        attempt.abandoned = True
        loop = attempt.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # closed between the check and the call: already ending

    def _current(self, generation: int) -> bool:
        """True while `generation` is the live attempt (guard held by the caller or not)."""
        attempt = self._attempt
        return attempt is not None and attempt.generation == generation and not attempt.abandoned

    # -- the connection thread ----------------------------------------------------------------

    def _run(self, attempt: _Attempt) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        generation = attempt.generation
        client = None
        try:
            ws_client_module = load_ws_client()
            # The SDK's own start() schedules on this module global; ours never reads it, but an
            # SDK path we did not override would, so it points at the newest attempt's loop.
            ws_client_module.loop = loop
            if self._executor is not None:
                self._executor.install_on(loop)
            client = observed_client_class(ws_client_module)(
                owner=self,
                generation=generation,
                deadlines=self.deadlines,
                max_interval=self.config.max_reconnect_interval,
                app_id=self.config.app_id,
                app_secret=self.config.app_secret,
                event_handler=MessageEvents(lambda event: self._on_sdk_event(generation, event)),
                domain=self.config.domain,
            )
            with self._guard:
                if attempt.abandoned:
                    return
                attempt.loop, attempt.client = loop, client
            client.start_on(loop)
        except RuntimeError as exc:
            # loop.stop() from stop()/restart() surfaces here as RuntimeError
            if self._current(generation) and not self._stopping:
                self._fail(generation, f"SDK loop ended: {exc}", retryable=True)
        except Exception as exc:
            if not self._current(generation):
                log.debug("abandoned Feishu attempt %d ended: %s", generation, exc)
            elif is_client_exception(exc):
                self._fail(generation, sdk_error_text(exc), retryable=False)
            else:
                self._fail(generation, f"{type(exc).__name__}: {sdk_error_text(exc)}", retryable=True)
        finally:
            self._close_loop(loop, client)

    def _close_loop(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        """Cancel what the SDK left running and close the socket (close code 1000), bounded."""
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:  # gathered, so an abandoned attempt's StaleAttempt is not reported as lost
                gathered = asyncio.gather(*pending, return_exceptions=True)
                loop.run_until_complete(asyncio.wait_for(gathered, self.deadlines.close))
            if client is not None:
                loop.run_until_complete(asyncio.wait_for(client._disconnect(), self.deadlines.close))
        except Exception as exc:  # teardown must not raise out of the thread
            log.debug("SDK teardown: %s", exc)
        finally:
            if self._executor is not None:
                self._executor.forget(loop)
            loop.close()

    def _on_sdk_event(self, generation: int, data: Any) -> None:
        """SDK handler, on the SDK's loop thread: convert, hand over, return (the SDK then acks).

        If the hand-over raises, the SDK acks with code 500 and Feishu redelivers the event: so
        does an abandoned attempt, whose events belong to the live connection.
        """
        if not self._current(generation):
            raise StaleAttempt(f"attempt {generation} was abandoned; Feishu will redeliver")
        # Only parsed here: the bot's own mention is told apart by the pipeline, once it knows its open_id.
        message = incoming_from_event(data, bot_open_id=None)
        if not message.message_id:
            # Nothing to reply to (Feishu sends such events, e.g. for recalled messages): ack and drop.
            log.warning(
                "Feishu event %s has no message id; dropped unanswered",
                escape_untrusted(message.event_id or "(no event id)", limit=80),
            )
            return
        self._on_message(message)

    # -- callbacks from the observed SDK client (its attempt's thread) -------------------------

    def _on_phase(self, generation: int, detail: str, budget: float | None) -> None:
        with self._guard:
            if not self._current(generation) or self._stopping:
                return
            state = FeishuState.CONNECTING if self._state == FeishuState.CONNECTING else FeishuState.RECONNECTING
            self._next_attempt_at = None
            self._enter_phase(state, detail, budget)

    def _on_connected(self, generation: int, conn_id: str) -> bool:
        """False when the attempt was abandoned meanwhile: its socket must be closed, unused."""
        now = time.time()
        with self._guard:
            if not self._current(generation) or self._stopping:
                return False
            self._connects += 1
            self._conn_id = conn_id
            self._connected_at = self._last_frame_at = now
            self._pings_unanswered = 0
            self._retryable = False
            self._watchdog_backoff = 1.0
            self._next_attempt_at = None
            self._enter_phase(FeishuState.CONNECTED, "", None)
            self._conn_id = conn_id
        log.info("Feishu connected (conn_id %s)", conn_id)
        return True

    def _on_disconnected(self, generation: int) -> None:
        with self._guard:
            if not self._current(generation) or self._stopping:
                return
            self._enter_phase(FeishuState.RECONNECTING, "connection lost", self._wait_budget())
        log.warning("Feishu connection lost; reconnecting")

    def _on_frame(self, generation: int, is_pong: bool) -> None:
        now = time.time()
        with self._guard:
            if not self._current(generation):
                return
            self._last_frame_at = now
            self._pings_unanswered = 0
            if is_pong:
                self._last_pong_at = now

    def _on_ping_sent(self, generation: int) -> None:
        with self._guard:
            if self._current(generation) and self._state == FeishuState.CONNECTED:
                self._pings_unanswered += 1

    def _on_configured(self, generation: int, ping_interval: Any) -> None:
        if not isinstance(ping_interval, (int, float)) or ping_interval <= 0:
            return
        with self._guard:
            if not self._current(generation):
                return
            self._ping_interval, self._ping_interval_known = float(ping_interval), True
            configured = self.config.liveness_timeout
            derived = derived_liveness_timeout(self._ping_interval)
            if configured is not None and configured < derived and self._clamp_warned != (configured, derived):
                self._clamp_warned = (configured, derived)
                log.warning(
                    "feishu.liveness_timeout %gs is below 2 pings (server ping interval %gs); using %gs",
                    configured,
                    self._ping_interval,
                    derived,
                )

    def _on_attempt_failed(self, generation: int, exc: BaseException, retry_in: float | None) -> None:
        text = escape_untrusted(f"{type(exc).__name__}: {sdk_error_text(exc)}", limit=200)
        with self._guard:
            if not self._current(generation) or self._stopping:
                return
            self._last_error, self._last_error_at = text, time.time()
            if retry_in is not None:
                self._next_attempt_at = time.time() + retry_in
                state = FeishuState.CONNECTING if self._state == FeishuState.CONNECTING else FeishuState.RECONNECTING
                self._enter_phase(state, "waiting to retry", retry_in + self._wait_budget())

    def _on_reconnecting(self, generation: int) -> None:
        with self._guard:
            if self._current(generation) and not self._stopping:
                self._enter_phase(FeishuState.RECONNECTING, "SDK reconnecting", self._wait_budget())

    def _on_gave_up(self, generation: int, exc: BaseException) -> None:
        if not self._current(generation) or self._stopping:
            return
        if is_client_exception(exc):
            self._fail(generation, sdk_error_text(exc), retryable=False)
        else:
            self._fail(generation, f"SDK gave up reconnecting: {sdk_error_text(exc)}", retryable=True)

    # -- state ----------------------------------------------------------------------------------

    def _fail(self, generation: int, reason: str, retryable: bool) -> None:
        reason = escape_untrusted(reason, limit=200)
        with self._guard:
            if not self._current(generation):
                return
            self._last_error, self._last_error_at = reason, time.time()
            self._retryable = retryable
            if retryable:
                # Bounded: each automatic retry of a given-up connection waits twice as long.
                self._next_attempt_at = time.time() + self._watchdog_backoff
                self._watchdog_backoff = min(60.0, self._watchdog_backoff * 2)
            else:
                self._next_attempt_at = None
            self._enter_phase(FeishuState.FAILED, reason, None)
        log.error("Feishu connection failed: %s%s", reason, "" if retryable else " (not retried: fix and restart)")

    def _enter_phase(self, state: FeishuState, detail: str, budget: float | None) -> None:
        """Record the state and how long it may last before the watchdog steps in (guard held)."""
        with self._guard:
            if state != self._state:
                self._since = time.time()
            self._state, self._detail = state, detail
            self._phase_started, self._phase_budget = time.monotonic(), budget
            if state != FeishuState.CONNECTED:
                self._conn_id = ""

    def _set_state(self, state: FeishuState, detail: str = "") -> None:
        self._enter_phase(state, detail, None)

    def _wait_budget(self) -> float:
        """Longest a reconnect may go without news: the capped wait, then endpoint and handshake."""
        d = self.deadlines
        return self.config.max_reconnect_interval + d.endpoint + 1 + d.handshake

    def _effective_liveness_timeout(self) -> float:
        derived = derived_liveness_timeout(self._ping_interval)
        configured = self.config.liveness_timeout
        return derived if configured is None else max(configured, derived)

    def _silence(self, now: float) -> float | None:
        since = self._last_frame_at if self._last_frame_at is not None else self._connected_at
        return None if since is None else now - since

    def _suspect_reason(self, now: float) -> str | None:
        """Why a `connected` link is doubtful right now: a ping went unanswered (guard held)."""
        if self._state != FeishuState.CONNECTED or self._stopping:
            return None
        silent = self._silence(now)
        if silent is None or silent <= self._ping_interval + liveness_grace(self._ping_interval):
            return None
        return f"no pong for {silent:.0f}s (ping interval {self._ping_interval:g}s)"
