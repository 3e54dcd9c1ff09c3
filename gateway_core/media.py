"""The media step: a message's images, file or voice note turned into what a model reads.

Between judging a message and asking the model (see /work/shared/design.md): an `image` (or the
images of a `post`) becomes OpenAI content parts `{"type": "image_url", "image_url": {"url":
"data:<mime>;base64,…"}}` after the text, for a vision model; a `file` that is text (by its
extension and by its content) or a PDF (its text, read with pypdf) becomes a fenced block headed by
the file name in the user's turn; an `audio` voice note becomes its transcript
(`LlmClient.transcribe`). Whatever cannot be read — no vision model, no transcribe model, a type or
size we do not read, a download Feishu refused or did not finish within its deadline — is a
`MediaRefused` carrying a polite reply and the reason the journal records.

Resources come from `GET /open-apis/im/v1/messages/{message_id}/resources/{key}?type=image|file`
(audio uses `type=file`; scope `im:resource`) through the one Feishu HTTP client, with its token and
deadline and a size cap that stops reading past it. Bytes and transcripts are held in memory for
one answer only: never journaled (a re-drive downloads again), never logged (sizes and types only).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .config import LlmConfig
from .feishu_http import FeishuHttp, FeishuRefused, ResourceTooLarge
from .llm import LlmClient, ModelError
from .logs import escape_untrusted
from .messages import IncomingMessage

log = logging.getLogger("gatewatch.media")

MEDIA_TYPES = ("image", "file", "audio")
PDF_DEADLINE = 20.0  # seconds to take the text out of a PDF (on a worker thread)
TEXT_EXTENSIONS = frozenset(
    "txt text md markdown rst csv tsv json jsonl ndjson yaml yml toml ini cfg conf log xml html htm css"
    " py pyi js mjs cjs ts tsx jsx java kt kts go rs c h cc cpp hpp cs rb php swift m scala sh bash zsh"
    " ps1 bat sql r lua pl dart vue svelte gradle properties env dockerfile makefile tf proto graphql diff"
    " patch".split()
)
READABLE = "text files (txt, md, csv, json, yaml, toml, log, source code) up to {text_cap} and PDFs up to {media_cap}"


class MediaRefused(Exception):
    """The message's media cannot be given to a model: `reply` says so politely, `reason` is journaled."""

    def __init__(self, reply: str, reason: str):
        super().__init__(reason)
        self.reply, self.reason = reply, reason


@dataclass(frozen=True)
class MediaRef:
    """One resource a message refers to: what it is, its key, and a file's name."""

    kind: str  # "image" | "file" | "audio"
    key: str
    name: str = ""


@dataclass(frozen=True)
class ModelInput:
    """What the model reads for a message with media, and what stays of it.

    `content` is the user turn's content for this answer (a string, or content parts with images);
    `text` is that turn as the chat's history keeps it and the console shows it (images as
    "[image]", a file's text in full, a voice note's transcript); `vision` says a vision model is
    needed; `facts` is the one line the console's detail shows (name, size, type).
    """

    content: str | list[dict[str, Any]]
    text: str
    vision: bool
    facts: str


def media_of(message: IncomingMessage) -> tuple[MediaRef, ...]:
    """The resources of an image, file or audio message, or the images of a post (in order)."""
    try:
        content = json.loads(message.raw_content) if message.raw_content else None
    except ValueError:
        return ()
    if not isinstance(content, dict):
        return ()
    kind = message.message_type
    if kind == "image" and isinstance(content.get("image_key"), str) and content["image_key"]:
        return (MediaRef("image", content["image_key"]),)
    if kind in ("file", "audio") and isinstance(content.get("file_key"), str) and content["file_key"]:
        name = content.get("file_name")
        return (MediaRef(kind, content["file_key"], name if isinstance(name, str) else ""),)
    if kind == "post":
        body = content if "content" in content else next((v for v in content.values() if isinstance(v, dict)), {})
        refs = []
        for paragraph in body.get("content") or ():
            for element in paragraph if isinstance(paragraph, list) else ():
                if isinstance(element, dict) and element.get("tag") == "img":
                    key = element.get("image_key")
                    if isinstance(key, str) and key:
                        refs.append(MediaRef("image", key))
        return tuple(refs)
    return ()


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


class MediaReader:
    """Turns a message with media into `ModelInput`, on the gateway's loop."""

    def __init__(self, http: FeishuHttp, llm: LlmClient, config: LlmConfig):
        self._http, self._llm, self._config = http, llm, config

    async def read(self, message: IncomingMessage, refs: tuple[MediaRef, ...]) -> ModelInput:
        """The model's input for `message` (whose media are `refs`); MediaRefused when it cannot be read."""
        if refs[0].kind == "image":
            return await self._images(message, refs)
        if refs[0].kind == "file":
            return await self._file(message, refs[0])
        return await self._voice(message, refs[0])

    async def _download(self, message: IncomingMessage, ref: MediaRef, max_bytes: int) -> tuple[bytes, str]:
        what = {"image": "an image", "file": "a file", "audio": "a voice message"}[ref.kind]
        path = (
            f"/open-apis/im/v1/messages/{quote(message.message_id, safe='')}/resources/{quote(ref.key, safe='')}"
            f"?type={'image' if ref.kind == 'image' else 'file'}"
        )
        try:
            data, content_type = await self._http.download(f"{ref.kind} download", path, max_bytes)
        except ResourceTooLarge:
            raise MediaRefused(
                f"That is {what} larger than I can take ({size_text(max_bytes)}). Could you send a smaller one,"
                " or paste the part that matters?",
                f"{ref.kind} over {max_bytes} bytes",
            ) from None
        except FeishuRefused as exc:
            log.warning("%s of %s not downloaded: %s", ref.kind, message.message_id, exc.detail)
            raise MediaRefused(
                f"Sorry — I could not fetch {what} from Feishu just now. Please send it again in a moment.",
                f"{ref.kind} download failed: {exc.detail}",
            ) from None
        log.info(
            "%s of %s downloaded: %d bytes, %s", ref.kind, message.message_id, len(data), escape_untrusted(content_type)
        )
        return data, content_type

    # -- images ----------------------------------------------------------------------------------

    async def _images(self, message: IncomingMessage, refs: tuple[MediaRef, ...]) -> ModelInput:
        if not self._config.vision_models:
            raise MediaRefused(
                "I got an image, but none of the models here can look at images. An operator can name one"
                " in llm.vision_models; until then, could you describe it in words?",
                "no llm.vision_models",
            )
        parts: list[dict[str, Any]] = []
        facts = []
        text = message.text or ""
        if text:
            parts.append({"type": "text", "text": text})
        for ref in refs:
            data, content_type = await self._download(message, ref, self._config.max_image_bytes)
            mime = content_type if content_type.startswith("image/") else _image_mime(data)
            url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
            facts.append(f"image, {size_text(len(data))}, {mime}")
        shown = text if message.message_type == "post" else "[image]"
        return ModelInput(parts, shown, True, "; ".join(facts))

    # -- files -----------------------------------------------------------------------------------

    async def _file(self, message: IncomingMessage, ref: MediaRef) -> ModelInput:
        name = ref.name or "file"
        stem, extension = os.path.splitext(name.lower())
        kind = extension.lstrip(".") or stem  # "Makefile", "Dockerfile": the name is the type
        text_cap, media_cap = self._config.max_file_bytes, self._config.max_image_bytes
        readable = READABLE.format(text_cap=size_text(text_cap), media_cap=size_text(media_cap))
        cannot = MediaRefused(
            f"I got the file {name}, but I can only read {readable}. Could you paste the part that matters?",
            f"file type not read: {kind or 'unknown'}",
        )
        if kind == "pdf":
            data, content_type = await self._download(message, ref, media_cap)
            body = await self._pdf_text(message, name, data)
            what = "PDF text"
        elif kind in TEXT_EXTENSIONS:
            data, content_type = await self._download(message, ref, text_cap)
            if b"\x00" in data:
                raise cannot
            try:
                body = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise cannot from None
            what = "text"
        else:
            raise cannot
        if len(body.encode()) > text_cap:
            raise MediaRefused(
                f"{name} has more text than I can read at once ({size_text(text_cap)}). Could you send the part"
                " that matters?",
                f"file text over {text_cap} bytes",
            )
        fence = "````" if "```" in body else "```"
        caption = message.text or ""
        turn = f"File: {name}\n{fence}{'' if kind == 'pdf' else _language(kind)}\n{body.rstrip()}\n{fence}"
        if caption:
            turn = f"{caption}\n\n{turn}"
        facts = f"{name}, {size_text(len(data))}, {content_type or 'unknown type'} ({what})"
        return ModelInput(turn, turn, False, facts)

    async def _pdf_text(self, message: IncomingMessage, name: str, data: bytes) -> str:
        try:
            async with asyncio.timeout(PDF_DEADLINE):
                text = await asyncio.to_thread(_extract_pdf_text, data)
        except TimeoutError:
            raise MediaRefused(
                f"Reading {name} took too long. Could you paste the part that matters?", "PDF text: deadline"
            ) from None
        except Exception as exc:  # pypdf raises many kinds for a damaged file
            log.warning("PDF of %s not read: %s", message.message_id, type(exc).__name__)
            raise MediaRefused(
                f"I could not read the text of {name} (the PDF looks damaged). Could you paste the part that matters?",
                f"PDF not read: {type(exc).__name__}",
            ) from None
        if not text.strip():
            raise MediaRefused(
                f"{name} has no text I can read (perhaps it is scanned images). Could you paste the part that matters?",
                "PDF without text",
            )
        return text

    # -- voice -----------------------------------------------------------------------------------

    async def _voice(self, message: IncomingMessage, ref: MediaRef) -> ModelInput:
        if not self._config.transcribe_model:
            raise MediaRefused(
                "I got a voice message, but voice is not set up here (llm.transcribe_model). Could you type it?",
                "no llm.transcribe_model",
            )
        data, content_type = await self._download(message, ref, self._config.max_image_bytes)
        mime = content_type if content_type.startswith("audio/") else "audio/ogg"  # Feishu's voice notes: Opus
        try:
            transcript = (await self._llm.transcribe(data, "voice.opus", mime)).strip()
        except ModelError as exc:
            log.warning("voice message %s not transcribed: %s", message.message_id, exc)
            raise MediaRefused(
                "Sorry — I could not transcribe that voice message just now. Could you type it, or try again?",
                f"transcription failed: {exc}",
            ) from None
        if not transcript:
            raise MediaRefused("I could not make out any words in that voice message. Could you type it?", "empty")
        log.info(
            "voice message %s transcribed: %d bytes of audio, %d characters",
            message.message_id,
            len(data),
            len(transcript),
        )
        return ModelInput(transcript, transcript, False, f"voice message, {size_text(len(data))}, {mime}")


def _extract_pdf_text(data: bytes) -> str:
    """The text of every page (blocking: runs on a worker thread)."""
    from pypdf import PdfReader  # imported on first use: most gateways never see a PDF

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()


def _image_mime(data: bytes) -> str:
    """An image's type from its first bytes, when Feishu's answer did not say."""
    for magic, mime in (
        (b"\x89PNG", "image/png"),
        (b"\xff\xd8", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"RIFF", "image/webp"),
    ):
        if data.startswith(magic):
            return mime
    return "image/png"


def _language(kind: str) -> str:
    return {"md": "markdown", "py": "python", "yml": "yaml", "txt": "", "log": ""}.get(kind, kind)
