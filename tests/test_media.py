"""Issue 20 end to end: images to a vision model, files read, voice transcribed, a typing sign —
the real SDK and real HTTP to the simulators; a real process for the kill -9."""

import base64
import json
import signal
import sqlite3
from typing import Any

import pytest

from gateway_core.config import Home
from gateway_core.gateway import Gateway
from gateway_core.journal import Journal
from gateway_core.sim import Simulators
from gateway_core.sim.llm_sim import LlmRequest
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.states import MessageState

from .support import HeadlessProcess, gateway_on_profile, in_own_thread, present, until, write_profile

PNG = base64.b64decode(  # a 1x1 PNG, and a few bytes no text could contain
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
VISION = 'vision_models = ["beta"]'


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF showing `text` (Helvetica), with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def reason_of(home: Home, message_id: str) -> str | None:
    """The journal's recorded reason for a message (read as a second connection, like an operator)."""
    db = sqlite3.connect(home.state_file("p"))
    try:
        reason: str | None = db.execute("SELECT reason FROM inbox WHERE message_id = ?", (message_id,)).fetchone()[0]
        return reason
    finally:
        db.close()


async def reply_to(gateway: Gateway, sims: Simulators, event: InjectedEvent) -> SentMessage:
    (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
    assert gateway.pipeline is not None
    assert await gateway.pipeline.drain(10) == 0
    return reply


def user_content(request: LlmRequest) -> Any:
    return request.messages[-1]["content"]


# ----------------------------------------------------------------------------- images


async def test_an_image_reaches_the_first_vision_model_as_a_data_url_of_the_served_bytes(
    home: Home, sims: Simulators
) -> None:
    async with gateway_on_profile(home, sims, models=("alpha", "beta", "gamma"), llm_extra=VISION) as gateway:
        event = sims.feishu.inject_image(data=PNG, content_type="image/png")
        reply = await reply_to(gateway, sims, event)
        (request,) = sims.llm.requests
        assert request.model == "beta"  # alpha leads the failover order but cannot see
        (url,) = request.image_urls
        prefix = "data:image/png;base64,"
        assert url.startswith(prefix) and base64.b64decode(url[len(prefix) :]) == PNG
        assert reply.text == "[beta] (I see 1 image)"
        assert gateway.journal is not None
        assert gateway.journal.state_of(event.message_id) == "answered"
        (activity,) = gateway.snapshot().pipeline.activity
        assert activity.media == "image, 70 B, image/png" and activity.text == "[image]"
        # the next text question goes back to the usual order, and the history holds no bytes
        follow = sims.feishu.inject_text("and now?")
        assert (await reply_to(gateway, sims, follow)).text == "[alpha] and now?"
        history = json.dumps(sims.llm.requests[-1].messages)
        assert "base64" not in history and "[image]" in history


async def test_without_vision_models_an_image_gets_the_polite_reply_and_no_model_call(
    home: Home, sims: Simulators
) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_image(data=PNG)
        reply = await reply_to(gateway, sims, event)
        assert "llm.vision_models" in present(reply.text)
        assert sims.llm.requests == [] and sims.feishu.downloads == []
        assert present(gateway.journal).state_of(event.message_id) == MessageState.ANSWERED_LOCALLY


async def test_an_image_in_a_post_goes_to_the_model_with_its_text(home: Home, sims: Simulators) -> None:
    sims.feishu.put_resource("img_post_1", PNG, "image/png")
    post = {
        "title": "",
        "content": [
            [{"tag": "text", "text": "what is wrong in this screenshot?"}],
            [{"tag": "img", "image_key": "img_post_1"}],
        ],
    }
    async with gateway_on_profile(home, sims, llm_extra=VISION) as gateway:
        event = sims.feishu.inject_post(post)
        reply = await reply_to(gateway, sims, event)
        (request,) = sims.llm.requests
        parts = user_content(request)
        assert parts[0] == {"type": "text", "text": "what is wrong in this screenshot?\n[image]"}
        assert base64.b64decode(request.image_urls[0].split(",", 1)[1]) == PNG
        assert reply.text == "[beta] what is wrong in this screenshot?\n[image] (I see 1 image)"


async def test_an_image_over_the_cap_or_missing_gets_a_polite_reply_recorded_with_the_reason(
    home: Home, sims: Simulators
) -> None:
    extra = VISION + "\nmax_image_bytes = 1024"
    async with gateway_on_profile(home, sims, llm_extra=extra) as gateway:
        large = sims.feishu.inject_image(data=b"\x89PNG" + b"\x00" * 4096)
        assert "larger than I can take" in present((await reply_to(gateway, sims, large)).text)
        missing = sims.feishu.inject_image()  # no bytes registered: Feishu answers 404
        assert "could not fetch an image" in present((await reply_to(gateway, sims, missing)).text)
        assert sims.llm.requests == []
        for event, reason in ((large, "image over 1024 bytes"), (missing, "image download failed: HTTP 404")):
            assert present(gateway.journal).state_of(event.message_id) == MessageState.ANSWERED_LOCALLY
            assert reason in present(reason_of(home, event.message_id))


# ----------------------------------------------------------------------------- files


async def test_a_markdown_file_reaches_the_model_and_stays_in_the_history(home: Home, sims: Simulators) -> None:
    notes = "# Release notes\n\n- fixed the **login** bug\n"
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_file("notes.md", data=notes.encode(), content_type="text/markdown")
        await reply_to(gateway, sims, event)
        (request,) = sims.llm.requests
        assert user_content(request) == f"File: notes.md\n```markdown\n{notes.rstrip()}\n```"
        (activity,) = gateway.snapshot().pipeline.activity
        assert activity.media == f"notes.md, {len(notes.encode())} B, text/markdown (text)"
        follow = sims.feishu.inject_text("which bug?")
        await reply_to(gateway, sims, follow)
        assert any("fixed the **login** bug" in m["content"] for m in sims.llm.requests[-1].messages[:-1])


async def test_a_pdfs_text_reaches_the_model(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        pdf = tiny_pdf("Quarterly revenue grew 12 percent")
        event = sims.feishu.inject_file("q3.pdf", data=pdf, content_type="application/pdf")
        await reply_to(gateway, sims, event)
        (request,) = sims.llm.requests
        assert "File: q3.pdf\n```\nQuarterly revenue grew 12 percent\n```" == user_content(request)


async def test_a_binary_file_gets_the_polite_reply_saying_what_can_be_read(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        zipped = sims.feishu.inject_file("backup.zip", data=b"PK\x03\x04" + b"\x00" * 64)
        assert "I can only read text files" in present((await reply_to(gateway, sims, zipped)).text)
        disguised = sims.feishu.inject_file("data.txt", data=b"\x00\x01\x02binary")
        assert "I can only read text files" in present((await reply_to(gateway, sims, disguised)).text)
        assert sims.llm.requests == []
        assert [d[1] for d in sims.feishu.downloads] == [json.loads(disguised.content)["file_key"]]


# ----------------------------------------------------------------------------- voice


async def test_a_voice_message_is_transcribed_and_answered_from_the_transcript(home: Home, sims: Simulators) -> None:
    opus = b"OggS\x00\x02" + bytes(range(200))
    sims.llm.transcribe_as("what is the weather tomorrow")
    async with gateway_on_profile(home, sims, llm_extra='transcribe_model = "whisper-sim"') as gateway:
        event = sims.feishu.inject_audio(opus)
        reply = await reply_to(gateway, sims, event)
        (transcription,) = sims.llm.transcriptions
        assert (transcription.model, transcription.data) == ("whisper-sim", opus)
        assert reply.text == "[alpha] what is the weather tomorrow"
        (activity,) = gateway.snapshot().pipeline.activity
        assert activity.text == "what is the weather tomorrow"  # the console shows the transcript
        assert activity.media.startswith("voice message, 206 B")


async def test_without_a_transcribe_model_a_voice_message_gets_the_polite_reply(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        event = sims.feishu.inject_audio(b"OggS")
        assert "llm.transcribe_model" in present((await reply_to(gateway, sims, event)).text)
        assert sims.llm.requests == [] and sims.llm.transcriptions == []


async def test_no_image_file_or_transcript_content_reaches_the_log(home: Home, sims: Simulators) -> None:
    secret_words = "zebra-marmalade-7734"
    sims.llm.transcribe_as(f"say {secret_words} please")
    extra = VISION + '\ntranscribe_model = "whisper-sim"'
    async with gateway_on_profile(home, sims, llm_extra=extra) as gateway:
        events = [
            sims.feishu.inject_image(data=PNG),
            sims.feishu.inject_file("secret.txt", data=f"the code is {secret_words}".encode()),
            sims.feishu.inject_audio(b"OggS" + secret_words.encode()),
        ]
        for event in events:
            await reply_to(gateway, sims, event)
        logged = "\n".join(line.message for line in present(gateway.logging).ring.since(0))
        assert "downloaded" in logged and "transcribed" in logged  # sizes and types are logged
        assert secret_words not in logged
        assert base64.b64encode(PNG).decode()[:20] not in logged
    on_disk = home.log_file("p").read_text(encoding="utf-8") if home.log_file("p").exists() else ""
    assert secret_words not in on_disk


# ----------------------------------------------------------------------------- the typing sign


async def test_the_typing_reaction_is_added_while_answering_and_removed_after_the_reply(
    home: Home, sims: Simulators
) -> None:
    async with gateway_on_profile(home, sims) as gateway:
        sims.llm.hold("alpha")
        event = sims.feishu.inject_text("think about it")
        (reaction,) = await until(lambda: sims.feishu.reactions_on(event), 10, "typing reaction added")
        assert reaction.emoji_type == "Typing" and reaction.removed_at is None
        assert sims.feishu.replies_to(event) == []
        sims.llm.release("alpha")
        await reply_to(gateway, sims, event)
        (reaction,) = await until(
            lambda: [r for r in sims.feishu.reactions_on(event) if r.removed_at is not None], 10, "removed"
        )
        assert reaction.removed_at is not None and reaction.removed_at >= sims.feishu.replies_to(event)[0].at


async def test_a_refused_reaction_does_not_hold_up_the_answer_and_is_logged_once(home: Home, sims: Simulators) -> None:
    sims.feishu.refuse_reactions(99991672)
    async with gateway_on_profile(home, sims) as gateway:
        for n in range(3):
            event = sims.feishu.inject_text(f"question {n}")
            assert (await reply_to(gateway, sims, event)).text == f"[alpha] question {n}"
        logged = [
            line.message for line in present(gateway.logging).ring.since(0) if "typing reaction refused" in line.message
        ]
        assert len(logged) == 1
        assert gateway.pipeline is not None
        assert gateway.pipeline.typing is not None
        assert gateway.pipeline.typing.refused == 1  # left off after the first refusal


async def test_no_typing_reaction_when_it_is_switched_off(home: Home, sims: Simulators) -> None:
    async with gateway_on_profile(home, sims, feishu_extra="typing_indicator = false") as gateway:
        event = sims.feishu.inject_text("quietly")
        await reply_to(gateway, sims, event)
        assert gateway.pipeline is not None
        assert sims.feishu.reactions_on(event) == [] and gateway.pipeline.typing is None


# ----------------------------------------------------------------------------- durability


@pytest.mark.process
def test_kill_9_while_downloading_the_next_owner_downloads_again_answers_once_and_clears_the_sign(
    home: Home, sims: Simulators
) -> None:
    notes = "line one\nline two\n"
    write_profile(home, "p", sims)
    with HeadlessProcess.start(home, "p") as gateway:
        gateway.wait_for_line("Feishu connected")
        sims.feishu.hold_resources(True)
        event = sims.feishu.inject_file("notes.txt", data=notes.encode(), content_type="text/plain")
        sims.feishu.wait_held_resources(1)
        sims.feishu.wait_for(lambda: sims.feishu.reactions_on(event), 10)  # the typing sign is up
        gateway.process.send_signal(signal.SIGKILL)
        assert gateway.process.wait(10) == -signal.SIGKILL
    sims.feishu.hold_resources(False)
    with HeadlessProcess.start(home, "p") as successor:
        successor.wait_for_line("Feishu connected")
        sims.feishu.wait_for_replies(event, 1, 20)
        # the predecessor's sign died with its reaction id: the successor lists and removes it
        sims.feishu.wait_for(lambda: all(r.removed_at for r in sims.feishu.reactions_on(event)), 10)
        assert successor.terminate_and_wait() == 0
    (reply,) = [r for r in sims.feishu.replies_to(event) if not r.duplicate]
    assert reply.text == f"[alpha] File: notes.txt\n```\n{notes.rstrip()}\n```"
    assert len(sims.llm.requests) == 1 and len(sims.feishu.downloads) == 2
    journal = Journal(home.state_file("p"))
    try:
        assert journal.state_of(event.message_id) == "answered" and journal.unfinished() == []
    finally:
        journal.close()
