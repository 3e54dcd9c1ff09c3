"""Message resources and reactions for the Feishu simulator.

Why: the media step (images, files, voice notes) and the typing sign must be tested against the
wire, with Feishu's token check, its refusals and a download that hangs. Mixed into
`FeishuSimulator`, this serves, like Feishu does ("Obtain resource files in messages", "Add a
reaction", "Delete a reaction"):

* ``GET /open-apis/im/v1/messages/{message_id}/resources/{file_key}?type=image|file`` - the bytes a
  test registered (`put_resource`, or `inject_image/inject_file/inject_audio(data=...)`), with the
  registered content type; an unknown message or key answers HTTP 404 with a JSON code;
  `hold_resources` parks downloads (a gateway killed mid-download, a download that outlives its
  deadline);
* ``POST /open-apis/im/v1/messages/{message_id}/reactions`` - ``{"reaction_type": {"emoji_type"}}``,
  answering a ``reaction_id``; ``GET …/reactions?reaction_type=`` lists the ones still there (all
  made by the app); ``DELETE …/reactions/{reaction_id}`` removes one; `refuse_reactions` answers
  a refusal code to POSTs instead.

Resource bytes are test data: recorded by size, never logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from aiohttp import web

from .background import ThreadSafeState
from .platform import INVALID_TOKEN, InjectedEvent, json_object, message_id

RESOURCE_NOT_FOUND = {"code": 234003, "msg": "File not in msg."}
REACTION_NOT_FOUND = {"code": 231003, "msg": "The reaction does not exist."}


@dataclass(frozen=True)
class Reaction:
    """One reaction added through the API (a snapshot)."""

    reaction_id: str
    message_id: str
    emoji_type: str
    added_at: float
    removed_at: float | None = None


class MediaSimulation(ThreadSafeState):
    """Mixin for FeishuSimulator: message resources and reactions, under the host's lock."""

    _tag: str
    app_id: str
    _ids: Iterator[int]
    _tokens: set[str]
    _chat_of: dict[str, str]
    _failed_posts: int
    _runner: web.AppRunner | None
    inject_text: Callable[..., InjectedEvent]

    def _init_media(self) -> None:
        self._resources: dict[str, tuple[bytes, str]] = {}  # key -> (bytes, content type)
        self._downloads: list[tuple[str, str, str, int]] = []  # (message id, key, type, status)
        self._hold_resources = False
        self._held_resources = 0
        self._resources_released: asyncio.Event | None = None
        self._reactions: dict[str, Reaction] = {}
        self._reaction_refusal: tuple[int, dict[str, Any]] | None = None

    def _add_media_routes(self, app: web.Application) -> None:
        self._resources_released = asyncio.Event()
        app.router.add_get("/open-apis/im/v1/messages/{message_id}/resources/{file_key}", self._handle_resource)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reactions", self._handle_reaction_add)
        app.router.add_get("/open-apis/im/v1/messages/{message_id}/reactions", self._handle_reaction_list)
        app.router.add_delete(
            "/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}", self._handle_reaction_delete
        )

    def _token_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in self._tokens

    # ------------------------------------------------------------------ resources

    async def _handle_resource(self, request: web.Request) -> web.StreamResponse:

        message_id, key = request.match_info["message_id"], request.match_info["file_key"]
        kind = request.query.get("type", "")
        with self._cond:
            if not self._token_ok(request):
                self._failed_posts += 1
                return web.json_response(INVALID_TOKEN, status=400)
            found = self._resources.get(key) if message_id in self._chat_of and kind in ("image", "file") else None
            self._downloads.append((message_id, key, kind, 200 if found else 404))
            self._notify()
            hold = self._hold_resources
        if found is None:
            return web.json_response(RESOURCE_NOT_FOUND, status=404)
        if hold:
            await self._park_download()
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def _park_download(self) -> None:
        with self._cond:
            self._held_resources += 1
            self._notify()
        try:
            while True:
                released = self._resources_released
                with self._cond:
                    if not self._hold_resources or self._runner is None or released is None:
                        return
                await released.wait()
        finally:
            with self._cond:
                self._held_resources -= 1
                self._notify()

    def _wake_downloads(self) -> None:
        if self._resources_released is not None:
            self._resources_released.set()
        self._resources_released = asyncio.Event()

    def put_resource(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Serve `data` for `key` (to the messages the bot received)."""
        with self._cond:
            self._resources[key] = (bytes(data), content_type)

    def hold_resources(self, on: bool = True) -> None:
        """While on, downloads are received and parked unanswered; off answers them."""
        with self._cond:
            self._hold_resources = on
            self._notify()
        if not on and self._runner is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake_downloads)

    def wait_held_resources(self, count: int = 1, timeout: float = 10) -> None:
        self.wait_for(
            lambda: self._held_resources >= count or None,
            timeout,
            lambda: f"wanted {count} held downloads, have {self._held_resources}",
        )

    @property
    def downloads(self) -> list[tuple[str, str, str, int]]:
        """Every resource GET with a valid token: (message id, key, type, HTTP status)."""
        with self._cond:
            return list(self._downloads)

    # ------------------------------------------------------------------ reactions

    async def _handle_reaction_add(self, request: web.Request) -> web.Response:

        body = json_object(await request.read())
        message_id = request.match_info["message_id"]
        with self._cond:
            if not self._token_ok(request):
                self._failed_posts += 1
                return web.json_response(INVALID_TOKEN, status=400)
            if self._reaction_refusal is not None:
                status, answer = self._reaction_refusal
                return web.json_response(answer, status=status)
            reaction_type = body.get("reaction_type")
            emoji = reaction_type.get("emoji_type") if isinstance(reaction_type, dict) else None
            if message_id not in self._chat_of or not isinstance(emoji, str) or not emoji:
                return web.json_response({"code": 231001, "msg": "invalid message or reaction type"}, status=400)
            reaction = Reaction(f"rc_{self._tag}_{next(self._ids)}", message_id, emoji, time.time())
            self._reactions[reaction.reaction_id] = reaction
            self._notify()
        data = {
            "reaction_id": reaction.reaction_id,
            "operator": {"operator_id": "cli_sim", "operator_type": "app"},
            "action_time": str(int(reaction.added_at * 1000)),
            "reaction_type": {"emoji_type": emoji},
        }
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _handle_reaction_list(self, request: web.Request) -> web.Response:

        message_id, emoji = request.match_info["message_id"], request.query.get("reaction_type")
        with self._cond:
            if not self._token_ok(request):
                self._failed_posts += 1
                return web.json_response(INVALID_TOKEN, status=400)
            items = [
                {
                    "reaction_id": r.reaction_id,
                    "operator": {"operator_id": self.app_id, "operator_type": "app"},
                    "action_time": str(int(r.added_at * 1000)),
                    "reaction_type": {"emoji_type": r.emoji_type},
                }
                for r in self._reactions.values()
                if r.message_id == message_id and r.removed_at is None and emoji in (None, r.emoji_type)
            ]
        return web.json_response({"code": 0, "msg": "success", "data": {"items": items, "has_more": False}})

    async def _handle_reaction_delete(self, request: web.Request) -> web.Response:

        message_id, reaction_id = request.match_info["message_id"], request.match_info["reaction_id"]
        with self._cond:
            if not self._token_ok(request):
                self._failed_posts += 1
                return web.json_response(INVALID_TOKEN, status=400)
            reaction = self._reactions.get(reaction_id)
            if reaction is None or reaction.message_id != message_id or reaction.removed_at is not None:
                return web.json_response(REACTION_NOT_FOUND, status=400)
            removed = Reaction(**{**reaction.__dict__, "removed_at": time.time()})
            self._reactions[reaction_id] = removed
            self._notify()
        return web.json_response({"code": 0, "msg": "success", "data": {"reaction_id": reaction_id}})

    def refuse_reactions(self, code: int | None = 99991672, status: int = 400) -> None:
        """Answer every reaction POST with Feishu `code` (default: the scope is missing); None stops."""
        with self._cond:
            self._reaction_refusal = None if code is None else (status, {"code": code, "msg": "refused (simulated)"})

    def reactions_on(self, message: InjectedEvent | str) -> list[Reaction]:

        mid = message_id(message)
        with self._cond:
            return [r for r in self._reactions.values() if r.message_id == mid]

    # ------------------------------------------------------------------ events with resources

    def inject_audio(
        self,
        data: bytes | None = None,
        duration_ms: int = 2000,
        chat_type: str = "p2p",
        chat_id: str = "oc_chat1",
        sender_open_id: str = "ou_user1",
        content_type: str = "audio/ogg",
    ) -> InjectedEvent:
        """A voice message (Opus; content carries the file key and duration), its bytes served if given."""
        return self.inject_resource_message(
            "audio", "file_key", {"duration": duration_ms}, data, content_type, chat_type, chat_id, sender_open_id
        )

    def inject_resource_message(
        self,
        message_type: str,
        key_field: str,
        fields: dict[str, Any],
        data: bytes | None,
        content_type: str,
        chat_type: str,
        chat_id: str,
        sender_open_id: str,
    ) -> InjectedEvent:
        """A message whose content names a resource (`key_field`: its new key, plus `fields`);
        `data`, if given, is what the resource serves. Images, files and voice notes are this."""
        prefix = "img_v3" if key_field == "image_key" else "file_v3"
        key = f"{prefix}_{self._tag}_{next(self._ids)}"
        if data is not None:
            self.put_resource(key, data, content_type)
        return self.inject_text(
            "",
            chat_id=chat_id,
            sender_open_id=sender_open_id,
            chat_type=chat_type,
            message_type=message_type,
            content=json.dumps({key_field: key, **fields}, ensure_ascii=False),
        )
