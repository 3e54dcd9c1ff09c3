"""The gateway's one Feishu HTTP client against the simulator: one token, one deadline, one error mapping."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from gateway_core.cardkit import CardKitClient, CardKitFailed
from gateway_core.config import FeishuConfig
from gateway_core.feishu_http import FeishuHttp, FeishuRefused, ResourceTooLarge, TokenRefused
from gateway_core.replies import ReplySender
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent
from gateway_core.threads import in_own_thread

from .support import FEISHU_SECRET


@pytest.fixture
async def http(sims: Simulators) -> AsyncIterator[FeishuHttp]:
    client = FeishuHttp(FeishuConfig(sims.feishu.app_id, FEISHU_SECRET, sims.feishu.domain), request_timeout=5)
    yield client
    await client.aclose()


async def test_replies_cards_and_bot_info_share_one_tenant_token(sims: Simulators, http: FeishuHttp) -> None:
    feishu = sims.feishu
    replies = ReplySender(http)
    assert (await http.bot_identity()).open_id == feishu.bot_open_id
    plain, streamed = feishu.inject_text("plain"), feishu.inject_text("streamed")
    assert await replies.reply_text(plain.message_id, "hello", plain.chat_id)
    stream = await CardKitClient(http, replies).open_stream(streamed.message_id, chat_id=streamed.chat_id)
    await stream.finish("a card")
    await in_own_thread(feishu.wait_card_finished, streamed, 5)
    assert feishu.token_requests == 1  # one cache for every call, not one per client
    assert replies.stats().sent == 2  # the card's message counted as a reply too


async def test_a_call_feishu_does_not_answer_ends_at_its_deadline(sims: Simulators) -> None:
    feishu = sims.feishu
    http = FeishuHttp(FeishuConfig(feishu.app_id, FEISHU_SECRET, feishu.domain), request_timeout=0.5)
    replies = ReplySender(http)
    question = feishu.inject_text("anyone?")
    feishu.hold_send_responses(True)  # Feishu takes the reply and never answers
    try:
        with pytest.raises(FeishuRefused) as refused:
            await replies.reply_text(question.message_id, "here", question.chat_id)
    finally:
        feishu.hold_send_responses(False)
        await http.aclose()
    assert refused.value.code is None and refused.value.detail == "no answer from Feishu within 0.5s"
    stats = replies.stats()
    assert (stats.failures_in_a_row, stats.last_error, stats.token_refused) == (1, refused.value.detail, False)


async def test_a_refused_token_is_one_typed_refusal_for_replies_and_cards(sims: Simulators, http: FeishuHttp) -> None:
    feishu = sims.feishu
    replies = ReplySender(http)
    question = feishu.inject_text("hi")
    feishu.refuse_tokens()
    with pytest.raises(TokenRefused) as refused:
        await replies.reply_text(question.message_id, "hello", question.chat_id)
    assert refused.value.code == 10014 and refused.value.detail.startswith("tenant token refused: code 10014")
    assert FEISHU_SECRET not in str(refused.value)
    stats = replies.stats()
    assert stats.token_refused and stats.last_error == refused.value.detail
    with pytest.raises(CardKitFailed) as card_failed:
        await CardKitClient(http, replies).open_stream(question.message_id, chat_id=question.chat_id)
    assert card_failed.value.code == 10014 and not card_failed.value.retryable
    assert feishu.sent == [] and feishu.cards == []


async def test_a_non_zero_code_is_a_refusal_carrying_it(sims: Simulators, http: FeishuHttp) -> None:
    sims.feishu.fail_bot_info()
    with pytest.raises(FeishuRefused) as refused:
        await http.bot_identity()
    assert refused.value.code == 1 and str(refused.value) == "bot info failed: code 1: system busy (simulated)"


# ----------------------------------------------------------------------------- resources (issue 20)


def resource_path(event: InjectedEvent, key: str, kind: str = "file") -> str:
    return f"/open-apis/im/v1/messages/{event.message_id}/resources/{key}?type={kind}"


async def test_a_download_returns_the_served_bytes_and_stops_reading_past_its_cap(
    sims: Simulators, http: FeishuHttp
) -> None:
    feishu = sims.feishu
    event = feishu.inject_text("has a file")
    feishu.put_resource("file_small", b"hello bytes", "text/plain")
    feishu.put_resource("file_big", b"x" * 300_000, "application/octet-stream")
    assert await http.download("file", resource_path(event, "file_small"), 1024) == (b"hello bytes", "text/plain")
    with pytest.raises(ResourceTooLarge):
        await http.download("file", resource_path(event, "file_big"), 100_000)
    with pytest.raises(FeishuRefused) as missing:
        await http.download("file", resource_path(event, "no_such_key"), 1024)
    assert missing.value.code == 234003 and missing.value.detail.startswith("HTTP 404")


async def test_a_json_file_is_a_download_not_a_refusal(sims: Simulators, http: FeishuHttp) -> None:
    event = sims.feishu.inject_text("has json")
    sims.feishu.put_resource("file_json", b'{"code": 0, "items": [1, 2]}', "application/json")
    data, _ = await http.download("file", resource_path(event, "file_json"), 1024)
    assert data == b'{"code": 0, "items": [1, 2]}'


async def test_a_download_feishu_does_not_finish_ends_at_its_deadline(sims: Simulators) -> None:
    feishu = sims.feishu
    http = FeishuHttp(FeishuConfig(feishu.app_id, FEISHU_SECRET, feishu.domain), request_timeout=0.5)
    event = feishu.inject_text("slow file")
    feishu.put_resource("file_slow", b"late", "text/plain")
    feishu.hold_resources(True)
    try:
        with pytest.raises(FeishuRefused) as refused:
            await http.download("file", resource_path(event, "file_slow"), 1024)
    finally:
        feishu.hold_resources(False)
        await http.aclose()
    assert refused.value.detail == "no answer from Feishu within 0.5s"
