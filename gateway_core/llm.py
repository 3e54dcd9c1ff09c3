"""The LLM client: OpenAI-compatible chat completions, runtime model switching, failover.

HTTP client: `httpx`, used synchronously on the held executor. It is already a dependency of
lark-oapi, has separate connect/read timeouts and a thread-safe connection pool. Running it on the
held executor (instead of asyncio sockets) keeps every network call of the gateway on the one pool
that is watched — and a DNS lookup there does not depend on the loop's default executor.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import httpx

from .config import LlmConfig
from .logs import escape_untrusted

log = logging.getLogger("gatewatch.llm")

RunBlocking = Callable[..., Awaitable]


class UnknownModel(ValueError):
    """switch_model was given a name that is not in the profile's list."""


class AllModelsFailed(Exception):
    """Every model in the failover order failed for one request."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{model}: {error}" for model, error in errors))


class ModelError(Exception):
    """One attempt on one model failed (timeout, connection, HTTP error, bad body)."""


@dataclass(frozen=True)
class LlmAnswer:
    text: str
    model: str
    latency: float
    attempts: int


@dataclass(frozen=True)
class ModelHealth:
    name: str
    breaker: str  # closed | open
    open_for: float  # seconds left while open
    requests: int
    errors: int
    last_latency: float | None
    avg_latency: float | None
    last_error: str | None


@dataclass(frozen=True)
class ModelsSnapshot:
    active: str
    models: tuple[ModelHealth, ...]


@dataclass
class _Stats:
    requests: int = 0
    errors: int = 0
    last_latency: float | None = None
    avg_latency: float | None = None
    last_error: str | None = None
    open_until: float = 0.0


class LlmClient:
    def __init__(self, config: LlmConfig, run_blocking: RunBlocking):
        self.config = config
        self._run_blocking = run_blocking
        self._guard = threading.Lock()
        self._active = config.models[0]
        self._stats = {name: _Stats() for name in config.models}
        self._http = httpx.Client(
            base_url=config.base_url,
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=httpx.Timeout(config.request_timeout, connect=min(10.0, config.request_timeout)),
            trust_env=False,  # a proxy from the environment must not see our API key by accident
        )

    @property
    def active_model(self) -> str:
        return self._active

    def switch_model(self, name: str) -> str:
        """Make `name` the model the next request starts with; in-flight requests are not touched."""
        if name not in self._stats:
            raise UnknownModel(f"unknown model {name!r}; configured: {', '.join(self.config.models)}")
        with self._guard:
            previous, self._active = self._active, name
            self._stats[name].open_until = 0.0  # an operator's explicit choice overrides the breaker
        log.info("model switched: %s -> %s", previous, name)
        return previous

    def failover_order(self) -> list[str]:
        """Active model first, then the configured order; models with an open breaker go last."""
        with self._guard:
            order = [self._active] + [m for m in self.config.models if m != self._active]
            now = time.monotonic()
            return [m for m in order if self._stats[m].open_until <= now] + [
                m for m in order if self._stats[m].open_until > now
            ]

    async def complete(self, messages: Sequence[dict[str, str]]) -> LlmAnswer:
        """Ask the models in failover order until one answers; raise AllModelsFailed otherwise."""
        errors: list[tuple[str, str]] = []
        for attempt, model in enumerate(self.failover_order(), start=1):
            started = time.monotonic()
            try:
                text = await self._run_blocking(self._post, model, list(messages))
            except ModelError as exc:
                self._record_failure(model, str(exc))
                errors.append((model, str(exc)))
                log.warning("model %s failed (%s); trying the next one", model, exc)
                continue
            latency = time.monotonic() - started
            self._record_success(model, latency)
            return LlmAnswer(text=text, model=model, latency=latency, attempts=attempt)
        raise AllModelsFailed(errors)

    def _post(self, model: str, messages: list[dict[str, str]]) -> str:
        """One blocking request (runs on the held executor)."""
        with self._guard:
            self._stats[model].requests += 1
        try:
            response = self._http.post("/chat/completions", json={"model": model, "messages": messages})
        except httpx.TimeoutException:
            raise ModelError(f"timed out after {self.config.request_timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise ModelError(f"connection error: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ModelError(f"HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError("response is not an OpenAI chat completion") from None
        if not isinstance(content, str) or not content.strip():
            raise ModelError("empty answer")
        return content

    def _record_success(self, model: str, latency: float) -> None:
        with self._guard:
            stats = self._stats[model]
            stats.last_latency = latency
            stats.avg_latency = latency if stats.avg_latency is None else 0.8 * stats.avg_latency + 0.2 * latency
            stats.open_until = 0.0

    def _record_failure(self, model: str, error: str) -> None:
        # A short circuit breaker: a model that just failed is tried last for a while, so one dead
        # model does not add its timeout to every message.
        with self._guard:
            stats = self._stats[model]
            stats.errors += 1
            stats.last_error = escape_untrusted(error)
            stats.open_until = time.monotonic() + self.config.breaker_cooldown

    def snapshot(self) -> ModelsSnapshot:
        now = time.monotonic()
        with self._guard:
            models = tuple(
                ModelHealth(
                    name=name,
                    breaker="open" if s.open_until > now else "closed",
                    open_for=max(0.0, s.open_until - now),
                    requests=s.requests,
                    errors=s.errors,
                    last_latency=s.last_latency,
                    avg_latency=s.avg_latency,
                    last_error=s.last_error,
                )
                for name, s in self._stats.items()
            )
            return ModelsSnapshot(active=self._active, models=models)

    def close(self) -> None:
        self._http.close()
