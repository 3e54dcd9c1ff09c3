"""The LLM client: OpenAI-compatible chat completions, runtime model switching, failover.

HTTP client: one pooled `aiohttp.ClientSession` on the gateway's loop, so hundreds of answers
can wait on models at once without holding a thread each (real models take 2–30 s). Every request
streams (`"stream": true`, server-sent events) so partial answers can be shown as they arrive, and
every attempt has two limits:
- a total deadline, `llm.request_timeout`: connect, headers and the whole body. A model that
  keeps the connection busy without finishing (some OpenAI-compatible proxies send keep-alive
  whitespace, one byte a second) is cut off there and the next model is tried;
- an idle limit, `llm.idle_timeout`: no byte at all for that long ends the attempt sooner.
A server that ignores `stream` and answers with one JSON body is accepted too. DNS goes through
the loop's default executor, which is the held pool (aiohttp's threaded resolver).

Why aiohttp and not `httpx.AsyncClient`: measured here against the LLM simulator, an httpx 0.28
async request costs ~4.5 ms of CPU (httpcore retries a failing `import sniffio` on every request
and rescans its whole pool for each one) against ~0.3 ms for aiohttp and ~0.7 ms for a blocking
httpx call on a thread. aiohttp is already a dependency (the simulators).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    # aiohttp is imported inside the methods that call out, not here: the console imports this module
    # for its snapshot types before its first frame, and aiohttp is the gateway's heaviest import. The
    # gateway pays for it once, on its loop thread, when it first opens a session.
    import aiohttp

from .config import LlmConfig
from .logs import escape_untrusted

log = logging.getLogger("gatewatch.llm")

OnText = Callable[[str], None]


class UnknownModel(ValueError):
    """switch_model was given a name that is not in the profile's list."""


class AllModelsFailed(Exception):
    """Every model in the failover order failed for one request."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{model}: {error}" for model, error in errors))


class ModelError(Exception):
    """One attempt on one model failed (timeout, connection, HTTP error, bad body)."""


class ModelNotFound(ModelError):
    """The provider says the model does not exist (404 model_not_found): a profile to fix."""


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
    unknown: bool = False  # the provider said it has no such model (until it answers again)


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
    unknown: bool = False


class LlmClient:
    """Asks models in failover order; one instance per gateway, used on the gateway's loop."""

    def __init__(self, config: LlmConfig):
        self.config = config
        self._guard = threading.Lock()  # snapshots are read from other threads (console, control)
        self._active = config.models[0]
        self._stats = {name: _Stats() for name in config.models}
        self._http: aiohttp.ClientSession | None = None
        self._url = f"{config.base_url}/chat/completions"

    @property
    def idle_timeout(self) -> float:
        return min(self.config.idle_timeout, self.config.request_timeout)

    def _client(self) -> aiohttp.ClientSession:
        """The pooled HTTP client, made on first use: it belongs to the loop that uses it."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.config.api_key}"},
                # sock_read: the idle limit (no byte for that long); the total deadline is ours
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=min(10.0, self.config.request_timeout), sock_read=self.idle_timeout
                ),
                # the scheduler bounds answers in flight; the pool must not queue them again
                connector=aiohttp.TCPConnector(limit=0, resolver=aiohttp.ThreadedResolver()),
                read_bufsize=2**18,  # one event line of a long answer fits
                trust_env=False,  # a proxy from the environment must not see our API key by accident
            )
        return self._http

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

    def failover_order(self, first: str | None = None, vision: bool = False) -> list[str]:
        """Active model (or `first`, a chat's own choice) first, then the configured order;
        models with an open breaker go last. `vision`: only the models of `llm.vision_models`,
        in that same order (the first of them in the failover order leads)."""
        with self._guard:
            lead = first if first in self._stats else self._active
            order = [lead] + [m for m in self.config.models if m != lead]
            if vision:
                order = [m for m in order if m in self.config.vision_models]
            now = time.monotonic()
            return [m for m in order if self._stats[m].open_until <= now] + [
                m for m in order if self._stats[m].open_until > now
            ]

    async def complete(
        self,
        messages: Sequence[dict[str, Any]],
        on_text: OnText | None = None,
        model: str | None = None,
        *,
        vision: bool = False,
    ) -> LlmAnswer:
        """Ask the models in failover order until one answers; raise AllModelsFailed otherwise.

        `on_text`, if given, is called on the loop with the whole text of the current attempt so
        far, each time a streamed piece arrives (not the delta: a card showing it can replace its
        content each time). When an attempt fails and the next model is tried, the text starts
        over from that model's first piece. The callback must not block; its errors are logged
        and otherwise ignored. `model` (a chat's `/model` choice) is tried first when given.
        `vision`: the messages carry images (OpenAI content parts), so only the models listed in
        `llm.vision_models` are asked, in failover order; none listed raises AllModelsFailed.
        """
        errors: list[tuple[str, str]] = []
        order = self.failover_order(model, vision=vision)
        if not order:
            raise AllModelsFailed([("(vision)", "no model in llm.vision_models")])
        for attempt, model in enumerate(order, start=1):  # noqa: B020 (the choice only orders)
            started = time.monotonic()
            try:
                text = await self._attempt(model, list(messages), on_text)
            except ModelError as exc:
                self._record_failure(model, str(exc), unknown=isinstance(exc, ModelNotFound))
                errors.append((model, str(exc)))
                log.warning("model %s failed (%s); trying the next one", model, exc)
                continue
            latency = time.monotonic() - started
            self._record_success(model, latency)
            return LlmAnswer(text=text, model=model, latency=latency, attempts=attempt)
        raise AllModelsFailed(errors)

    async def transcribe(self, audio: bytes, filename: str, content_type: str) -> str:
        """A voice note's text: `POST {base_url}/audio/transcriptions` (multipart `file` and
        `model` = `llm.transcribe_model`), within `llm.request_timeout`; ModelError on any failure.
        The audio and the transcript are never logged."""
        import aiohttp

        model = self.config.transcribe_model
        if not model:
            raise ModelError("no llm.transcribe_model")
        form = aiohttp.FormData()
        form.add_field("model", model)
        form.add_field("file", audio, filename=filename, content_type=content_type)
        try:
            async with asyncio.timeout(self.config.request_timeout):
                async with self._client().post(f"{self.config.base_url}/audio/transcriptions", data=form) as response:
                    if response.status != 200:
                        raise ModelError(f"transcription: HTTP {response.status}")
                    raw = await response.read()
        except TimeoutError:
            raise ModelError(f"no transcript within {self.config.request_timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ModelError(f"transcription: connection error: {type(exc).__name__}") from None
        try:
            text = json.loads(raw)["text"]
        except (ValueError, KeyError, TypeError):
            raise ModelError('transcription: the answer is not {"text": ...}') from None
        if not isinstance(text, str):
            raise ModelError('transcription: the answer is not {"text": ...}')
        return text

    async def _attempt(self, model: str, messages: list[dict[str, Any]], on_text: OnText | None) -> str:
        """One streamed request to one model, within the total deadline; ModelError on any failure."""
        import aiohttp

        with self._guard:
            self._stats[model].requests += 1
        body = {"model": model, "messages": messages, "stream": True}
        try:
            async with asyncio.timeout(self.config.request_timeout):
                try:
                    async with self._client().post(self._url, json=body) as response:
                        if response.status == 404 and _says_model_not_found(await response.read()):
                            raise ModelNotFound("HTTP 404 model_not_found")
                        if response.status != 200:
                            raise ModelError(f"HTTP {response.status}")
                        if response.content_type == "text/event-stream":
                            content = await _read_event_stream(response, _guarded(on_text))
                        else:  # a server that ignores "stream": one plain completion
                            content = _plain_completion(await response.read())
                # aiohttp's own timeouts are TimeoutErrors too: name them before the deadline's
                except aiohttp.ConnectionTimeoutError:
                    raise ModelError("could not connect in time") from None
                except aiohttp.ServerTimeoutError:
                    raise ModelError(f"no data for {self.idle_timeout:g}s") from None
        except TimeoutError:
            raise ModelError(f"no complete answer within {self.config.request_timeout:g}s") from None
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: an event line too long
            raise ModelError(f"connection error: {type(exc).__name__}") from None
        if not content.strip():
            raise ModelError("empty answer")
        return content

    def _record_success(self, model: str, latency: float) -> None:
        with self._guard:
            stats = self._stats[model]
            stats.last_latency = latency
            stats.avg_latency = latency if stats.avg_latency is None else 0.8 * stats.avg_latency + 0.2 * latency
            stats.open_until = 0.0
            stats.unknown = False

    def _record_failure(self, model: str, error: str, unknown: bool = False) -> None:
        # A short circuit breaker: a model that just failed is tried last for a while, so one dead
        # model does not add its timeout to every message.
        with self._guard:
            stats = self._stats[model]
            stats.errors += 1
            stats.last_error = escape_untrusted(error)
            stats.open_until = time.monotonic() + self.config.breaker_cooldown
            stats.unknown = unknown

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
                    unknown=s.unknown,
                )
                for name, s in self._stats.items()
            )
            return ModelsSnapshot(active=self._active, models=models)

    async def aclose(self) -> None:
        """Close the connection pool (on the loop that used it)."""
        http, self._http = self._http, None
        if http is not None:
            await http.close()


async def _read_event_stream(response: aiohttp.ClientResponse, on_text: OnText | None) -> str:
    """The text of an OpenAI chat-completion event stream, reporting it as it grows."""
    text = ""
    async for raw in response.content:  # one line at a time
        if not raw.startswith(b"data:"):
            continue  # blank keep-alives, comments (": ping"), event names
        data = raw[5:].strip()
        if data == b"[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ModelError("stream chunk is not JSON") from None
        if not isinstance(chunk, dict):
            raise ModelError("stream chunk is not an object")
        if "error" in chunk:
            raise ModelError(f"error in stream: {escape_untrusted(str(chunk['error']), limit=200)}")
        try:
            choices = chunk.get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            piece = delta.get("content")
        except (AttributeError, TypeError):
            raise ModelError("stream chunk is not an OpenAI chat completion chunk") from None
        if isinstance(piece, str) and piece:
            text += piece
            if on_text is not None:
                on_text(text)
    return text


def _says_model_not_found(raw: bytes) -> bool:
    """An OpenAI-style error body naming the model as missing (`error.code` model_not_found)."""
    try:
        error = json.loads(raw).get("error") or {}
        return error.get("code") == "model_not_found"
    except (ValueError, AttributeError):
        return False


def _plain_completion(raw: bytes) -> str:
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ModelError("response is not an OpenAI chat completion") from None
    if not isinstance(content, str):
        raise ModelError("response is not an OpenAI chat completion")
    return content


def _guarded(on_text: OnText | None) -> OnText | None:
    """The caller's callback, its failures logged: a display problem must not lose the answer."""
    if on_text is None:
        return None

    def call(text: str) -> None:
        try:
            on_text(text)
        except Exception:
            log.exception("on_text callback failed; the answer continues")

    return call
