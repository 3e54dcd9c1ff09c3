"""An OpenAI-compatible chat-completions server on 127.0.0.1 whose behaviour tests steer per model.

Why: the gateway must stay responsive when a model is slow, failing, unknown or silent, and tests
must observe a request *while it is in flight*. Real providers can do none of this on demand.
Serves ``POST /v1/chat/completions`` (plain JSON, or SSE when ``"stream": true``, one chunk per
word like OpenAI) and ``GET /v1/models`` (the catalogue plus every model given a behaviour, minus
the ``unknown`` ones, as a provider lists what it serves). Behaviours: ``echo`` (default),
``error`` (500), ``hang`` (no answer until the behaviour changes or the simulator stops),
``unknown`` (404 model_not_found) and ``drip`` (200 and headers at once, then one byte of
keep-alive whitespace a second and never an answer, like some OpenAI-compatible proxies; when the
behaviour changes the answer follows); ``hold``/``release`` park requests. ``pace`` spaces a
streamed answer's word chunks like a model that writes as it thinks, and ``pause_stream`` stops a
stream after N words until ``resume_stream`` (a crash mid-answer, observable).
Messages may carry OpenAI content parts (text and ``image_url``): they are recorded as sent, so a
test reads an image's data URL back (`LlmRequest.image_urls`), and the echo answers their text.
``POST /v1/audio/transcriptions`` (multipart ``file`` + ``model``) answers ``{"text": ...}``: the
transcript set with `transcribe_as`, recorded as a `Transcription` (model, file name, the bytes).
Parking is an asyncio wait woken by every control change, never a long sleep, so stopping is
immediate. Message text is untrusted and only echoed back. Thread-safe like `ThreadSafeState`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import BodyPartReader, web

from .background import ThreadSafeState, serve_on_loopback

log = logging.getLogger(__name__)

BEHAVIOURS = ("echo", "error", "hang", "unknown", "drip")
DRIP_INTERVAL = 1.0  # seconds between the keep-alive bytes of a dripping model
# The model names the tests and the demo use; a test can pass its own catalogue.
CATALOGUE = ("alpha", "beta", "gamma", "demo-fast", "demo-smart")
CLIENT_GONE = 499  # answered_status of a request whose client disconnected before the answer


@dataclass
class LlmRequest:
    """One chat-completions request as received."""

    model: str
    messages: list[Any]
    at: float
    stream: bool = False
    answered_status: int | None = None  # None while in flight
    dripped: int = 0  # keep-alive bytes sent before the answer (drip behaviour)

    @property
    def image_urls(self) -> list[str]:
        """The `image_url` URLs of every message's content parts, in order."""
        return [
            part["image_url"]["url"]
            for message in self.messages
            if isinstance(message, dict) and isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, dict) and part.get("type") == "image_url" and isinstance(part.get("image_url"), dict)
        ]


@dataclass(frozen=True)
class Transcription:
    """One `/v1/audio/transcriptions` request as received."""

    model: str
    filename: str
    content_type: str
    data: bytes
    at: float


@dataclass(frozen=True)
class _Behaviour:
    kind: str = "echo"
    latency: float = 0.0


def _error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "code": code}}, status=status)


def _text_of(content: Any) -> str:
    """Plain text of a message content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


class LlmSimulator(ThreadSafeState):
    """OpenAI-style ``/v1/chat/completions`` with per-model behaviours, holds and request records."""

    def __init__(self, api_key: str | None = "sim-key", models: tuple[str, ...] = CATALOGUE) -> None:
        super().__init__()
        self._api_key = api_key  # None: no Authorization check
        self._catalogue = tuple(models)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._behaviours: dict[str, _Behaviour] = {}
        self._held: set[str] = set()
        self._pace: dict[str, float] = {}  # model -> seconds between streamed word chunks
        self._scripted: dict[str, str] = {}  # model -> the answer it gives instead of the echo
        self._pause_after: dict[str, int] = {}  # model -> words streamed before a pause
        self._paused: int = 0  # streams parked by pause_stream right now
        self._requests: list[LlmRequest] = []
        self._transcriptions: list[Transcription] = []
        self._transcript = "transcribed voice note"
        self._ids = itertools.count(1)
        self._stopping = False
        self._changed = asyncio.Event()  # replaced on every wake (and on start); loop thread only

    async def start(self) -> None:
        """Bind the server on a free 127.0.0.1 port."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/audio/transcriptions", self._handle_transcription)
        # handler_cancellation: a client that gives up cancels its handler, so in_flight() drops
        self._runner, self._port = await serve_on_loopback(app, handler_cancellation=True)
        log.info("llm simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        """Answer parked requests with 503 and close the server."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        with self._cond:
            self._stopping = True
        self._wake()
        await runner.cleanup()
        log.info("llm simulator stopped")

    @property
    def base_url(self) -> str:
        """The OpenAI base URL ("http://127.0.0.1:PORT/v1")."""
        if self._port is None:
            raise RuntimeError("LlmSimulator is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    # ------------------------------------------------------------------ server

    def _wake(self) -> None:
        """Loop thread: release every parked request so it re-reads the controls."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _poke(self) -> None:
        """Any thread: schedule `_wake` after a control change."""
        self._notify()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        if self._api_key is not None and request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not (
            isinstance(body, dict) and isinstance(body.get("model"), str) and isinstance(body.get("messages"), list)
        ):
            return _error(400, "'model' (string) and 'messages' (list) are required", "invalid_request_error", None)
        record = LlmRequest(body["model"], body["messages"], time.time(), bool(body.get("stream")))
        with self._cond:
            self._requests.append(record)
            self._notify()
        status = CLIENT_GONE  # stays so if the handler is cancelled
        try:
            response = await self._answer(request, record)
            status = response.status
            return response
        finally:
            with self._cond:
                record.answered_status = status
                self._notify()

    async def _handle_transcription(self, request: web.Request) -> web.Response:
        if self._api_key is not None and request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        fields: dict[str, Any] = {}
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name:
                    data = await part.read()
                    fields[part.name] = (part.filename or "", part.headers.get("Content-Type", ""), data)
        except (ValueError, AssertionError):
            return _error(400, "expected multipart/form-data", "invalid_request_error", None)
        if "file" not in fields or "model" not in fields:
            return _error(400, "'file' and 'model' are required", "invalid_request_error", None)
        filename, content_type, data = fields["file"]
        model = fields["model"][2].decode("utf-8", "replace")
        with self._cond:
            self._transcriptions.append(Transcription(model, filename, content_type, bytes(data), time.time()))
            transcript = self._transcript
            behaviour = self._behaviours.get(model, _Behaviour())
            self._notify()
        if behaviour.kind == "error":
            return _error(500, "The server had an error processing your request (simulated).", "server_error", None)
        return web.json_response({"text": transcript})

    def transcribe_as(self, text: str) -> None:
        """Every transcription from now on answers `text`."""
        with self._cond:
            self._transcript = text

    @property
    def transcriptions(self) -> list[Transcription]:
        with self._cond:
            return list(self._transcriptions)

    async def _handle_models(self, request: web.Request) -> web.Response:
        if self._api_key is not None and request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "simulator"}
                    for name in self.listed_models()
                ],
            }
        )

    def listed_models(self) -> list[str]:
        """What `GET /v1/models` lists: the catalogue and every model with a behaviour, minus `unknown`."""
        with self._cond:
            names = dict.fromkeys([*self._catalogue, *self._behaviours])
            return [n for n in names if self._behaviours.get(n, _Behaviour()).kind != "unknown"]

    async def _await_turn(self, model: str) -> _Behaviour | None:
        """Park while the model is held or hanging; the behaviour to apply, or None when stopping."""
        while True:
            changed = self._changed
            with self._cond:
                if self._stopping:
                    return None
                behaviour = self._behaviours.get(model, _Behaviour())
                if model not in self._held and behaviour.kind != "hang":
                    return behaviour
            await changed.wait()

    async def _answer(self, request: web.Request, record: LlmRequest) -> web.StreamResponse:
        model = record.model
        behaviour = await self._await_turn(model)
        if behaviour is None:
            return _error(503, "simulator stopping", "server_error", None)
        if behaviour.latency > 0:
            await asyncio.sleep(behaviour.latency)
        if behaviour.kind == "drip":
            return await self._drip(request, record)
        if behaviour.kind == "error":
            return _error(500, "The server had an error processing your request (simulated).", "server_error", None)
        if behaviour.kind == "unknown":
            return _error(404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
        return await self._complete(request, record)

    async def _complete(
        self, request: web.Request, record: LlmRequest, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """The echo answer, as SSE or one JSON body (written to `response` if already started)."""
        model = record.model
        with self._cond:
            scripted = self._scripted.get(model)
        content = scripted if scripted is not None else f"[{model}] {_last_user_text(record.messages)}"
        images = len(record.image_urls)
        if scripted is None and images:  # what a vision model would say it was shown
            content = f"{content.rstrip()} (I see {images} image{'s' if images > 1 else ''})"
        completion_id = f"chatcmpl-sim{next(self._ids)}"
        created = int(time.time())
        if record.stream:
            return await self._stream(request, completion_id, created, model, content, response)
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in record.messages if isinstance(m, dict))
        completion_tokens = len(content.split())
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if response is None:
            return web.json_response(body)
        await response.write(json.dumps(body, ensure_ascii=False).encode())
        await response.write_eof()
        return response

    async def _drip(self, request: web.Request, record: LlmRequest) -> web.StreamResponse:
        """Status and headers now, then a newline every DRIP_INTERVAL s until the behaviour changes.

        A newline is whitespace in a JSON body and an empty line in an event stream, so the answer
        that follows a change of behaviour is still well-formed either way.
        """
        content_type = "text/event-stream" if record.stream else "application/json"
        response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await response.prepare(request)
        while True:
            changed = self._changed
            with self._cond:
                if self._stopping:
                    break
                dripping = self._behaviours.get(record.model, _Behaviour()).kind == "drip"
            if not dripping:
                return await self._complete(request, record, response)
            await response.write(b"\n")
            with self._cond:
                record.dripped += 1
                self._notify()
            try:
                await asyncio.wait_for(changed.wait(), DRIP_INTERVAL)
            except asyncio.TimeoutError:
                pass  # time for the next byte
        await response.write_eof()
        return response

    async def _stream(
        self,
        request: web.Request,
        cid: str,
        created: int,
        model: str,
        content: str,
        response: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        """Server-sent events like OpenAI's: the role, one content delta per word, a finish chunk,
        then [DONE]."""
        if response is None:
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        words = re.findall(r"\S+\s*|\s+", content) or [""]
        deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
        deltas += [({"content": word}, None) for word in words]
        deltas.append(({}, "stop"))
        with self._cond:
            pace = self._pace.get(model, 0.0)
        for index, (delta, finish) in enumerate(deltas):
            if index > 1:
                await self._between_chunks(model, index - 1, pace)
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _between_chunks(self, model: str, sent: int, pace: float) -> None:
        """Wait before the next word: the pace, and while the model's stream is paused here."""
        if pace > 0:
            await asyncio.sleep(pace)  # the simulated model's writing speed
        parked = False
        while True:
            changed = self._changed
            with self._cond:
                limit = self._pause_after.get(model)
                if self._stopping or limit is None or sent < limit:
                    if parked:
                        self._paused -= 1
                        self._notify()
                    return
                if not parked:
                    parked = True
                    self._paused += 1
                    self._notify()
            await changed.wait()  # woken by every control change

    # ------------------------------------------------------------------ controls

    def pace(self, model: str, seconds_per_chunk: float) -> None:
        """Stream `model`'s answers one word every `seconds_per_chunk` (0: all at once)."""
        with self._cond:
            self._pace[model] = seconds_per_chunk
        self._poke()

    def answer_with(self, model: str, text: str | None) -> None:
        """`model` answers every request with `text` (a long answer, say) instead of the echo (None: echo)."""
        with self._cond:
            if text is None:
                self._scripted.pop(model, None)
            else:
                self._scripted[model] = text
        self._poke()

    def pause_stream(self, model: str, after_words: int) -> None:
        """Streams of `model` stop after `after_words` words until `resume_stream(model)`."""
        with self._cond:
            self._pause_after[model] = after_words
        self._poke()

    def resume_stream(self, model: str) -> None:
        with self._cond:
            self._pause_after.pop(model, None)
        self._poke()

    def wait_stream_paused(self, count: int = 1, timeout: float = 10) -> int:
        """Wait until `count` streams are parked by `pause_stream`."""
        return self.wait_for(
            lambda: self._paused if self._paused >= count else None, timeout, lambda: f"{self._paused} streams paused"
        )

    def set_behaviour(self, model: str, behaviour: str, latency: float = 0.0) -> None:
        """Set how `model` answers from now on ("echo", "error", "hang", "unknown", "drip"), after
        `latency` s."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
        with self._cond:
            self._behaviours[model] = _Behaviour(behaviour, latency)
        self._poke()

    def hold(self, model: str) -> None:
        """Park requests for `model` (received, not answered) until `release(model)`."""
        with self._cond:
            self._held.add(model)
        self._poke()

    def release(self, model: str) -> None:
        """Let parked and future requests for `model` be answered."""
        with self._cond:
            self._held.discard(model)
        self._poke()

    # ------------------------------------------------------------------ observations

    @property
    def requests(self) -> list[LlmRequest]:
        """Snapshots of every well-formed, authorised request, in arrival order."""
        with self._cond:
            return [replace(r) for r in self._requests]

    def requests_for(self, model: str) -> list[LlmRequest]:
        """Snapshots of the requests for one model."""
        return [r for r in self.requests if r.model == model]

    def in_flight(self, model: str | None = None) -> int:
        """Requests received but not yet answered (optionally for one model)."""
        with self._cond:
            return sum(1 for r in self._requests if r.answered_status is None and model in (None, r.model))

    def wait_for_requests(self, count: int, model: str | None = None, timeout: float = 10) -> list[LlmRequest]:
        """Wait until `count` requests (for `model`, or any) arrived; return them."""

        def enough() -> list[LlmRequest] | None:
            found = self.requests if model is None else self.requests_for(model)
            return found if len(found) >= count else None

        def seen() -> str:
            return (
                f"wanted {count} requests for {model or 'any model'}, saw "
                f"{[(r.model, r.answered_status) for r in self.requests]}"
            )

        return self.wait_for(enough, timeout, seen)

    def wait_in_flight(self, model: str | None = None, count: int = 1, timeout: float = 10) -> int:
        """Wait until at least `count` requests (for `model`, or any) are in flight; return how many."""

        def enough() -> int | None:
            n = self.in_flight(model)
            return n if n >= count else None

        return self.wait_for(
            enough,
            timeout,
            lambda: f"wanted {count} in flight for {model or 'any model'}, have {self.in_flight(model)}",
        )
