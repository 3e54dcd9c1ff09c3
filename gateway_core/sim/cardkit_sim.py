"""CardKit streaming cards, bot info and richer message events for the Feishu simulator.

Why: a streaming reply is a protocol of its own (create a card entity, send it, push the growing
text with strictly increasing sequences, turn streaming off), and the gateway's exactly-once
promise must hold across it. Mixed into `FeishuSimulator`, this serves, like Feishu does
(documents "Create card entity", "Update card element content" (流式更新文本), "Update card
settings", "Streaming updates OpenAPI overview", "Obtain bot info"):

* ``POST  /open-apis/cardkit/v1/cards`` - a card entity from a JSON 2.0 card (``type=card_json``);
* ``PUT   /open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content`` - the full text so
  far; ``sequence`` must exceed every earlier operation's on the card (else 300317); streaming
  must be on (else 300309); an optional ``uuid`` makes a repeat a no-op;
* ``PATCH /open-apis/cardkit/v1/cards/{card_id}/settings`` - e.g. ``{"config":{"streaming_mode":false}}``;
* every card operation counts against 10 operations/s per card, and each CardKit API (create,
  content, settings) against its per-app limit of 50 calls/s and 1000/min (over either: HTTP 429,
  code 99991400, nothing done);
* without the ``cardkit:card:write`` scope (`deny_scope`) every CardKit call answers Feishu's
  missing-scope error, HTTP 400 code 99991672;
* ``GET /open-apis/bot/v3/info`` - the bot's open_id and app name (answered at top level, "bot");
* sending ``msg_type=interactive`` with ``{"type":"card","data":{"card_id":...}}`` needs an existing
  card entity, sent at most once.

Card text is untrusted: it is parsed as JSON, recorded and compared, never interpreted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from aiohttp import web

from .background import ThreadSafeState
from .platform import INVALID_TOKEN, TENANT_KEY, InjectedEvent, SentMessage, SlidingWindow, json_object, message_id

CARDKIT_SCOPE = "cardkit:card:write"
MISSING_SCOPE_CODE = 99991672
RATE_LIMITED_CODE = 99991400
SEQUENCE_NOT_INCREASING = 300317
STREAMING_CLOSED = 300309
CARD_NOT_FOUND = 200740
UPDATE_MULTI_FALSE = 300302
INVALID_PARAMETER = 10002
CARD_SEND_FAILED = 230099  # Feishu's "failed to create card content" for a bad card message
CARD_TOO_LARGE = 230099  # the same code when the card's JSON is over the limit (OpenClaw #91159)
STREAMING_TIMEOUT = 200850  # Feishu ended streaming: ~10 min after it was turned on
CARD_JSON_LIMIT = 30 * 1024  # bytes of a card's JSON ("Card JSON 2.0 structure": 30 KB)
STREAMING_WINDOW = 600.0  # seconds streaming mode lasts after it was turned on


@dataclass(frozen=True)
class CardOperation:
    """One accepted CardKit operation on a card."""

    kind: str  # "content" | "settings"
    sequence: int
    element_id: str | None
    content: str | None  # the full element text for "content", the settings JSON for "settings"
    at: float


@dataclass(frozen=True)
class CardRecord:
    """A card entity as the simulator holds it (a snapshot; see `FeishuSimulator.cards`)."""

    card_id: str
    card: dict[str, Any] = field(repr=False)
    streaming_mode: bool
    texts: dict[str, str]  # element_id -> current content
    operations: tuple[CardOperation, ...] = ()
    rejected: tuple[tuple[int, int | None], ...] = ()  # (error code, sequence) of refused operations
    message_ids: tuple[str, ...] = ()  # messages that carry this card (at most one)
    created_at: float = 0.0
    streaming_since: float = 0.0  # monotonic time streaming mode was last turned on
    closed_by_feishu: bool = False  # streaming ended by Feishu (its window, or `end_streaming_after`)
    deleted: bool = False  # recalled/deleted: every later operation finds no card (200740)

    @property
    def sequences(self) -> list[int]:
        return [op.sequence for op in self.operations]

    @property
    def content_updates(self) -> list[CardOperation]:
        return [op for op in self.operations if op.kind == "content"]

    def text(self, element_id: str | None = None) -> str:
        """The element's current text (the only markdown/plain_text element when not named)."""
        if element_id is None:
            if len(self.texts) != 1:
                raise KeyError(f"card {self.card_id} has elements {sorted(self.texts)}: name one")
            element_id = next(iter(self.texts))
        return self.texts[element_id]


def _card_text_elements(node: Any, found: dict[str, str]) -> None:
    """Collect element_id -> content of every text-bearing element with an element_id."""
    if isinstance(node, dict):
        if isinstance(node.get("element_id"), str) and node.get("tag") in ("markdown", "plain_text", "div"):
            content = node.get("content")
            if not isinstance(content, str) and isinstance(node.get("text"), dict):
                content = node["text"].get("content")
            found[node["element_id"]] = content if isinstance(content, str) else ""
        for value in node.values():
            _card_text_elements(value, found)
    elif isinstance(node, list):
        for value in node:
            _card_text_elements(value, found)


class CardKitSimulation(ThreadSafeState):
    """Mixin for FeishuSimulator: CardKit routes, bot info, scopes and event helpers.

    Uses the host's lock (`_cond`), token set, id counter and tag; all state is read and changed
    under that lock, so controls and observations are thread-safe like the rest of the simulator.
    """

    # What the host simulator (FeishuSimulator) provides, declared so each use here is checked.
    _tag: str  # per-instance id tag
    _ids: Iterator[int]  # id counter shared with the host's messages
    _tokens: set[str]  # tenant tokens issued
    _sent: list[SentMessage]  # every message sent through the API
    _failed_posts: int  # API calls refused
    inject_text: Callable[..., InjectedEvent]  # the host's one way to queue a user message
    inject_resource_message: Callable[..., InjectedEvent]  # the media mixin's: a message naming a resource

    def _init_cardkit(self, bot_name: str = "gatewatch-sim") -> None:
        self.bot_name = bot_name
        self.bot_open_id = f"ou_bot_{self._tag}"
        self._cards: dict[str, CardRecord] = {}
        self._card_ops_at: dict[str, SlidingWindow] = {}
        self._card_uuids: dict[tuple[str, str], dict[str, Any]] = {}  # (card_id, uuid) -> first answer
        self._denied_scopes: set[str] = set()
        self._card_limit = (10, 1.0)  # operations per window (s) per card
        self._api_limits: tuple[tuple[int, float], ...] = ((50, 1.0), (1000, 60.0))  # per API, per app
        self._api_calls_at: dict[str, SlidingWindow] = {}  # CardKit API -> its accepted calls
        self._bot_info_requests = 0
        self._bot_info_down = False
        self.card_json_limit = CARD_JSON_LIMIT
        self.streaming_window = STREAMING_WINDOW  # shorten it in tests
        self._end_streaming_after: int | None = None  # content updates a card takes before Feishu ends it

    def _add_cardkit_routes(self, app: web.Application) -> None:
        app.router.add_post("/open-apis/cardkit/v1/cards", self._handle_card_create)
        app.router.add_put(
            "/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content", self._handle_card_content
        )
        app.router.add_patch("/open-apis/cardkit/v1/cards/{card_id}/settings", self._handle_card_settings)
        app.router.add_get("/open-apis/bot/v3/info", self._handle_bot_info)

    # ------------------------------------------------------------------ HTTP handlers

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in self._tokens

    def _refusal(self, request: web.Request, scope: str | None) -> web.Response | None:
        """Bad token or missing scope, answered as Feishu does (lock held); None when allowed."""

        if not self._authorised(request):
            self._failed_posts += 1
            return web.json_response(INVALID_TOKEN, status=400)
        if scope is not None and scope in self._denied_scopes:
            self._failed_posts += 1
            return web.json_response(
                {
                    "code": MISSING_SCOPE_CODE,
                    "msg": f"Access denied. One of the following scopes is required: [{scope}].",
                    "error": {"permission_violations": [{"type": "action_scope_required", "subject": scope}]},
                },
                status=400,
            )
        return None

    async def _handle_card_create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        with self._cond:
            refused = self._refusal(request, CARDKIT_SCOPE)
            if refused is not None:
                return refused
            try:
                if body.get("type") != "card_json" or not isinstance(body.get("data"), str):
                    raise ValueError
                card = json.loads(body["data"])
                if not isinstance(card, dict) or card.get("schema") != "2.0":
                    raise ValueError
            except ValueError:
                return self._card_error(INVALID_PARAMETER, "card_json data must be a JSON 2.0 card")
            config: dict[str, Any] = card["config"] if isinstance(card.get("config"), dict) else {}
            if config.get("update_multi") is False:
                return self._card_error(UPDATE_MULTI_FALSE, "update_multi property is false")
            if self._over_api_limit("create", time.monotonic()):
                self._failed_posts += 1
                return web.json_response(
                    {"code": RATE_LIMITED_CODE, "msg": "request trigger frequency limit"}, status=429
                )
            if len(body["data"].encode()) > self.card_json_limit:
                return self._card_error(CARD_TOO_LARGE, "card content exceeds the size limit")
            texts: dict[str, str] = {}
            _card_text_elements(card.get("body", {}), texts)
            card_id = f"7{next(self._ids):018d}"  # Feishu's card ids are ≤20 digits
            self._cards[card_id] = CardRecord(
                card_id,
                card,
                bool(config.get("streaming_mode")),
                texts,
                created_at=time.time(),
                streaming_since=time.monotonic(),
            )
            self._notify()
        return web.json_response({"code": 0, "msg": "success", "data": {"card_id": card_id}})

    async def _handle_card_content(self, request: web.Request) -> web.Response:
        card_id, element_id = request.match_info["card_id"], request.match_info["element_id"]
        body = await _json_body(request)
        content = body.get("content")
        with self._cond:
            refused = self._operation_refusal(request, card_id, body, "content")
            if refused is not None:
                return refused
            sequence: int = body["sequence"]  # an int32 above 0: _operation_refusal checked it
            card = self._cards[card_id]
            if not isinstance(content, str) or not 1 <= len(content) <= 100_000:
                return self._card_error(INVALID_PARAMETER, "content must be 1..100000 characters", card_id, sequence)
            if element_id not in card.texts:
                return self._card_error(INVALID_PARAMETER, f"no text element {element_id!r}", card_id, sequence)
            if not card.streaming_mode:
                return self._card_error(STREAMING_CLOSED, "Card streaming closed", card_id, sequence)
            if self._streaming_over(card):
                self._cards[card_id] = replace(card, streaming_mode=False, closed_by_feishu=True)
                return self._card_error(STREAMING_TIMEOUT, "card streaming timeout", card_id, sequence)
            if len(_json_with(card.card, element_id, content).encode()) > self.card_json_limit:
                return self._card_error(CARD_TOO_LARGE, "card content exceeds the size limit", card_id, sequence)
            operation = CardOperation("content", sequence, element_id, content, time.time())
            self._cards[card_id] = replace(
                card, texts={**card.texts, element_id: content}, operations=card.operations + (operation,)
            )
            return self._card_ok(card_id, body)

    async def _handle_card_settings(self, request: web.Request) -> web.Response:
        card_id = request.match_info["card_id"]
        body = await _json_body(request)
        with self._cond:
            refused = self._operation_refusal(request, card_id, body, "settings")
            if refused is not None:
                return refused
            card = self._cards[card_id]
            try:
                settings = json.loads(body.get("settings") or "")
                config = settings.get("config", {})
                if not isinstance(config, dict):
                    raise ValueError
            except (ValueError, AttributeError):
                return self._card_error(
                    INVALID_PARAMETER, "settings must be a JSON object", card_id, body.get("sequence")
                )
            streaming = bool(config["streaming_mode"]) if "streaming_mode" in config else card.streaming_mode
            since = time.monotonic() if streaming and not card.streaming_mode else card.streaming_since
            operation = CardOperation("settings", body["sequence"], None, body["settings"], time.time())
            self._cards[card_id] = replace(
                card, streaming_mode=streaming, streaming_since=since, operations=card.operations + (operation,)
            )
            return self._card_ok(card_id, body)

    def _operation_refusal(
        self, request: web.Request, card_id: str, body: dict[str, Any], api: str
    ) -> web.Response | None:
        """Checks shared by every card operation (lock held): auth, scope, card, uuid, sequence, rates."""
        refused = self._refusal(request, CARDKIT_SCOPE)
        if refused is not None:
            return refused
        card = self._cards.get(card_id)
        sequence = body.get("sequence")
        if card is None or card.deleted:
            return self._card_error(
                CARD_NOT_FOUND, "The card entity does not exist", card_id if card else None, sequence
            )
        op_uuid = body.get("uuid")
        if isinstance(op_uuid, str) and (card_id, op_uuid) in self._card_uuids:
            return web.json_response(self._card_uuids[(card_id, op_uuid)])  # done once already
        if not isinstance(sequence, int) or isinstance(sequence, bool) or not 1 <= sequence <= 2**31 - 1:
            return self._card_error(INVALID_PARAMETER, "sequence must be an int32 above 0", card_id, None)
        if card.operations and sequence <= card.operations[-1].sequence:
            return self._card_error(
                SEQUENCE_NOT_INCREASING,
                "The sequence number for operating on the card did not increment consecutively",
                card_id,
                sequence,
            )
        now = time.monotonic()
        recent = self._card_ops_at.setdefault(card_id, SlidingWindow())
        if recent.full([self._card_limit], now) or self._over_api_limit(api, now):
            self._reject(card_id, RATE_LIMITED_CODE, sequence)
            return web.json_response({"code": RATE_LIMITED_CODE, "msg": "request trigger frequency limit"}, status=429)
        recent.record(now)
        return None

    def _streaming_over(self, card: CardRecord) -> bool:
        """Lock held: Feishu ends streaming when its window has passed (or after N updates, if told)."""
        if time.monotonic() - card.streaming_since > self.streaming_window:
            return True
        limit = self._end_streaming_after
        return limit is not None and len(card.content_updates) >= limit

    def _over_api_limit(self, api: str, now: float) -> bool:
        """Lock held: True if one more call to CardKit's `api` now exceeds a per-app limit; else count it."""
        calls = self._api_calls_at.setdefault(api, SlidingWindow())
        if calls.full(self._api_limits, now):
            return True
        calls.record(now)
        return False

    def _card_ok(self, card_id: str, body: dict[str, Any]) -> web.Response:
        answer = {"code": 0, "msg": "success", "data": {}}
        if isinstance(body.get("uuid"), str):
            self._card_uuids[(card_id, body["uuid"])] = answer
        self._notify()
        return web.json_response(answer)

    def _card_error(self, code: int, msg: str, card_id: str | None = None, sequence: Any = None) -> web.Response:
        if card_id is not None:
            self._reject(card_id, code, sequence if isinstance(sequence, int) else None)
        self._failed_posts += 1
        self._notify()
        return web.json_response({"code": code, "msg": msg}, status=400)

    def _reject(self, card_id: str, code: int, sequence: int | None) -> None:
        card = self._cards[card_id]
        self._cards[card_id] = replace(card, rejected=card.rejected + ((code, sequence),))
        self._notify()

    async def _handle_bot_info(self, request: web.Request) -> web.Response:
        with self._cond:
            self._bot_info_requests += 1
            refused = self._refusal(request, None)
            if refused is not None:
                return refused
            if self._bot_info_down:
                return web.json_response({"code": 1, "msg": "system busy (simulated)"}, status=500)
        return web.json_response(
            {
                "code": 0,
                "msg": "ok",
                "bot": {
                    "activate_status": 2,
                    "app_name": self.bot_name,
                    "avatar_url": "",
                    "ip_white_list": [],
                    "open_id": self.bot_open_id,
                },
            }
        )

    # ------------------------------------------------------------------ hooks for message sends

    def _card_send_error(self, msg_type: str, content: Any) -> dict[str, Any] | None:
        """Why an interactive message referencing a card entity cannot be sent (lock held), or None."""
        if msg_type != "interactive" or not isinstance(content, dict) or content.get("type") != "card":
            return None
        data = content.get("data")
        card_id = data.get("card_id") if isinstance(data, dict) else None
        card = self._cards.get(card_id) if isinstance(card_id, str) else None
        if card is None:
            return {"code": CARD_NOT_FOUND, "msg": "The card entity does not exist"}
        if card.message_ids:
            return {"code": CARD_SEND_FAILED, "msg": "a card entity can only be sent once"}
        return None

    def _card_sent(self, msg_type: str, content: Any, message_id: str) -> None:
        """Link a sent card entity to its message (lock held)."""
        if msg_type == "interactive" and isinstance(content, dict) and content.get("type") == "card":
            card = self._cards[content["data"]["card_id"]]
            if message_id not in card.message_ids:
                self._cards[card.card_id] = replace(card, message_ids=card.message_ids + (message_id,))

    # ------------------------------------------------------------------ controls

    def deny_scope(self, scope: str = CARDKIT_SCOPE, denied: bool = True) -> None:
        """Simulate an app without `scope` (by default CardKit's `cardkit:card:write`)."""
        with self._cond:
            (self._denied_scopes.add if denied else self._denied_scopes.discard)(scope)

    def fail_bot_info(self, on: bool = True) -> None:
        """Answer `bot/v3/info` with a server error (the bot cannot learn its open_id) while on."""
        with self._cond:
            self._bot_info_down = on
        self._notify()

    def delete_card(self, card_id: str) -> None:
        """The card's message is recalled and the card gone: later operations answer 200740."""
        with self._cond:
            self._cards[card_id] = replace(self._cards[card_id], deleted=True)
            self._notify()

    def end_streaming_after(self, updates: int | None) -> None:
        """Feishu ends a card's streaming (200850, then 300309) at its next content update once it
        took `updates` of them, as it does when its ~10 minute window runs out (None: only then)."""
        with self._cond:
            self._end_streaming_after = updates

    def limit_card_operations(self, count: int, per_seconds: float) -> None:
        """Change the per-card rate limit (Feishu: 10 per 1 s); a long window makes tests exact."""
        with self._cond:
            self._card_limit = (count, per_seconds)

    def limit_cardkit_apis(self, *limits: tuple[int, float]) -> None:
        """Change each CardKit API's per-app limits, (count, window seconds) pairs (Feishu: (50, 1),
        (1000, 60)); none at all: unlimited, for benchmarks that measure our overhead."""
        with self._cond:
            self._api_limits = tuple(limits)
            self._api_calls_at.clear()

    def bot_mention(self, key: str = "@_user_1") -> dict[str, Any]:
        """A `message.mentions[]` entry for the bot itself, to pass to `inject_text(mentions=...)`."""
        return self.user_mention(key, self.bot_open_id, self.bot_name)

    @staticmethod
    def user_mention(key: str, open_id: str, name: str) -> dict[str, Any]:
        """A `message.mentions[]` entry for a user, shaped as Feishu sends it."""

        return {
            "key": key,
            "id": {"open_id": open_id, "union_id": f"on_{open_id}", "user_id": ""},
            "name": name,
            "tenant_key": TENANT_KEY,
        }

    def inject_group_text(
        self,
        text: str,
        mentions: list[dict[str, Any]] | None = None,
        chat_id: str = "oc_group1",
        sender_open_id: str = "ou_user1",
    ) -> InjectedEvent:
        """A group text message; put `@_user_N` / `@_all` keys in `text` and their entries in `mentions`."""
        return self.inject_text(
            text, chat_id=chat_id, sender_open_id=sender_open_id, chat_type="group", mentions=mentions
        )

    def inject_post(
        self,
        post: dict[str, Any],
        chat_type: str = "p2p",
        chat_id: str = "oc_chat1",
        mentions: list[dict[str, Any]] | None = None,
        sender_open_id: str = "ou_user1",
    ) -> InjectedEvent:
        """A rich-text message; `post` is `{"title", "content": [[elements...]]}` as events carry it."""
        return self.inject_text(
            "",
            chat_id=chat_id,
            sender_open_id=sender_open_id,
            chat_type=chat_type,
            message_type="post",
            content=json.dumps(post, ensure_ascii=False),
            mentions=mentions,
        )

    def inject_image(
        self,
        chat_type: str = "p2p",
        chat_id: str = "oc_chat1",
        sender_open_id: str = "ou_user1",
        data: bytes | None = None,
        content_type: str = "image/png",
    ) -> InjectedEvent:
        """An image message (content carries only the image key); `data`: the bytes it serves."""
        return self.inject_resource_message(
            "image", "image_key", {}, data, content_type, chat_type, chat_id, sender_open_id
        )

    def inject_file(
        self,
        name: str = "report.pdf",
        chat_type: str = "p2p",
        chat_id: str = "oc_chat1",
        sender_open_id: str = "ou_user1",
        data: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> InjectedEvent:
        """A file message (content carries the file key and name); `data`: the bytes it serves."""
        return self.inject_resource_message(
            "file", "file_key", {"file_name": name}, data, content_type, chat_type, chat_id, sender_open_id
        )

    # ------------------------------------------------------------------ observations

    @property
    def cards(self) -> list[CardRecord]:
        """Every card entity created, in order."""
        with self._cond:
            return list(self._cards.values())

    def card(self, card_id: str) -> CardRecord:
        with self._cond:
            return self._cards[card_id]

    def cards_replied_to(self, message: Any) -> list[CardRecord]:
        """Card entities sent as replies to one inbound message (exactly-once: at most one)."""
        mid = message_id(message)
        with self._cond:
            sent_ids = {m.message_id for m in self._sent if m.kind == "reply" and m.in_reply_to == mid}
            return [c for c in self._cards.values() if sent_ids.intersection(c.message_ids)]

    def wait_card_finished(self, message: Any, timeout: float = 10) -> CardRecord:
        """Wait until a card replied to `message` has streaming turned off; return it."""

        def finished() -> CardRecord | None:
            done = [c for c in self.cards_replied_to(message) if not c.streaming_mode and c.operations]
            return done[-1] if done else None

        def seen() -> str:
            return (
                f"cards replied: {[(c.card_id, c.streaming_mode, c.sequences) for c in self.cards_replied_to(message)]}"
            )

        return self.wait_for(finished, timeout, seen)

    @property
    def bot_info_requests(self) -> int:
        with self._cond:
            return self._bot_info_requests


def _json_with(card: dict[str, Any], element_id: str, content: str) -> str:
    """The card's JSON with one element's content replaced: what Feishu measures against its limit."""

    def replaced(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("element_id") == element_id and "content" in node:
                return {**node, "content": content}
            return {key: replaced(value) for key, value in node.items()}
        if isinstance(node, list):
            return [replaced(value) for value in node]
        return node

    return json.dumps(replaced(card), ensure_ascii=False, separators=(",", ":"))


async def _json_body(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())
