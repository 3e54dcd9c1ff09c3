"""The simulator's CardKit, bot info and rich events, proven with the real SDK's request shapes.

Every request here is built with lark-oapi's own builders and sent by its own client, and every
event travels the real WebSocket to a bare SDK client: what passes here is what the gateway meets.
"""

from __future__ import annotations

import json
import queue
from typing import Any

import pytest
from lark_oapi.api.cardkit.v1 import (
    ContentCardElementRequest,
    ContentCardElementRequestBody,
    CreateCardRequest,
    CreateCardRequestBody,
    SettingsCardRequest,
    SettingsCardRequestBody,
)
from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

from gateway_core.messages import incoming_from_event, should_answer
from gateway_core.sim import Simulators
from gateway_core.sim.cardkit_sim import (
    CARD_NOT_FOUND,
    CARD_SEND_FAILED,
    MISSING_SCOPE_CODE,
    RATE_LIMITED_CODE,
    SEQUENCE_NOT_INCREASING,
    STREAMING_CLOSED,
)

from .feishu_only import SECRET, http_client
from .sim.bare_sdk import BareSdkClient
from .support import present


@pytest.fixture
def sims(feishu_only_sims: Simulators) -> Simulators:
    return feishu_only_sims  # this module's tests use Feishu alone: the SDK's own clients, no LLM


@pytest.fixture
def client(sims: Simulators, app_id: str) -> Any:
    return http_client(sims.feishu, app_id)


def streaming_card_json(text: str = "…") -> str:
    return json.dumps(
        {
            "schema": "2.0",
            "config": {"streaming_mode": True, "update_multi": True},
            "body": {"elements": [{"tag": "markdown", "element_id": "md_1", "content": text}]},
        }
    )


def create_card(client: Any, data: str | None = None) -> Any:
    body = CreateCardRequestBody.builder().type("card_json").data(data or streaming_card_json()).build()
    return client.cardkit.v1.card.create(CreateCardRequest.builder().request_body(body).build())


def put_content(
    client: Any, card_id: str, text: str, sequence: int, op_uuid: str | None = None, element_id: str = "md_1"
) -> Any:
    builder = ContentCardElementRequestBody.builder().content(text).sequence(sequence)
    if op_uuid:
        builder = builder.uuid(op_uuid)
    request = (
        ContentCardElementRequest.builder()
        .card_id(card_id)
        .element_id(element_id)
        .request_body(builder.build())
        .build()
    )
    return client.cardkit.v1.card_element.content(request)


def set_streaming(client: Any, card_id: str, on: bool, sequence: int) -> Any:
    body = (
        SettingsCardRequestBody.builder()
        .settings(json.dumps({"config": {"streaming_mode": on}}))
        .sequence(sequence)
        .build()
    )
    return client.cardkit.v1.card.settings(SettingsCardRequest.builder().card_id(card_id).request_body(body).build())


def reply_card(client: Any, message_id: str, card_id: str, send_uuid: str) -> Any:
    body = (
        ReplyMessageRequestBody.builder()
        .msg_type("interactive")
        .uuid(send_uuid)
        .content(json.dumps({"type": "card", "data": {"card_id": card_id}}))
        .build()
    )
    return client.im.v1.message.reply(ReplyMessageRequest.builder().message_id(message_id).request_body(body).build())


def test_card_stream_create_reply_content_sequences_and_settings(sims: Simulators, client: Any) -> None:
    feishu = sims.feishu
    question = feishu.inject_text("tell me")
    created = create_card(client)
    assert created.success(), created.msg
    card_id = created.data.card_id
    assert 1 <= len(card_id) <= 20

    sent = reply_card(client, question.message_id, card_id, "u-card-1")
    assert sent.success(), sent.msg
    again = reply_card(client, question.message_id, card_id, "u-card-1")  # retried: same uuid
    assert again.success() and again.data.message_id == sent.data.message_id

    assert put_content(client, card_id, "Hel", 1).success()
    assert put_content(client, card_id, "Hello", 3).success()
    stale = put_content(client, card_id, "He", 3)  # a repeated sequence
    assert (stale.success(), stale.code) == (False, SEQUENCE_NOT_INCREASING)
    assert put_content(client, card_id, "Hello, world", 7, op_uuid="op-1").success()
    assert put_content(client, card_id, "Hello, world", 7, op_uuid="op-1").success()  # uuid: done once
    assert set_streaming(client, card_id, False, 8).success()
    closed = put_content(client, card_id, "Hello, world!", 9)
    assert (closed.success(), closed.code) == (False, STREAMING_CLOSED)

    card = feishu.wait_card_finished(question, timeout=5)
    assert card.card_id == card_id and card.text() == "Hello, world" and not card.streaming_mode
    assert card.sequences == [1, 3, 7, 8]
    assert [op.content for op in card.content_updates] == ["Hel", "Hello", "Hello, world"]
    assert card.rejected == ((SEQUENCE_NOT_INCREASING, 3), (STREAMING_CLOSED, 9))
    assert feishu.cards_replied_to(question) == [card]
    replies = feishu.replies_to(question)
    assert [(m.msg_type, m.duplicate) for m in replies] == [("interactive", False), ("interactive", True)]


def test_a_card_is_sent_once_and_must_exist(sims: Simulators, client: Any) -> None:
    feishu = sims.feishu
    first, second = feishu.inject_text("one"), feishu.inject_text("two")
    card_id = create_card(client).data.card_id
    assert reply_card(client, first.message_id, card_id, "u-a").success()
    resent = reply_card(client, second.message_id, card_id, "u-b")
    assert (resent.success(), resent.code) == (False, CARD_SEND_FAILED)
    ghost = reply_card(client, second.message_id, "7999", "u-c")
    assert (ghost.success(), ghost.code) == (False, CARD_NOT_FOUND)
    assert feishu.cards_replied_to(second) == []


def test_card_operations_are_rate_limited_per_card(sims: Simulators, client: Any) -> None:
    feishu = sims.feishu
    feishu.limit_card_operations(3, per_seconds=60)  # a long window keeps the test exact
    busy, calm = create_card(client).data.card_id, create_card(client).data.card_id
    answers = [put_content(client, busy, "x" * n, n) for n in range(1, 6)]
    assert [a.code for a in answers] == [0, 0, 0, RATE_LIMITED_CODE, RATE_LIMITED_CODE]
    assert answers[3].raw.status_code == 429
    assert put_content(client, calm, "fine", 1).success()  # another card has its own budget
    assert feishu.card(busy).sequences == [1, 2, 3]


def test_each_cardkit_api_has_a_per_app_limit(sims: Simulators, client: Any) -> None:
    feishu = sims.feishu
    feishu.limit_cardkit_apis((3, 60.0))  # Feishu: (50, 1 s) and (1000, 60 s); a long window keeps it exact
    created = [create_card(client) for _ in range(4)]
    assert [c.code for c in created] == [0, 0, 0, RATE_LIMITED_CODE]
    assert created[3].raw.status_code == 429 and len(feishu.cards) == 3
    one, two, three = (c.data.card_id for c in created[:3])
    answers = [put_content(client, card, "x", seq) for card, seq in ((one, 1), (two, 1), (three, 1), (one, 2))]
    assert [a.code for a in answers] == [0, 0, 0, RATE_LIMITED_CODE]  # content has its own budget
    assert set_streaming(client, one, False, 3).success()  # and so do settings
    assert feishu.card(one).sequences == [1, 3]


def test_missing_cardkit_scope_is_refused_like_feishu(sims: Simulators, client: Any) -> None:
    feishu = sims.feishu
    card_id = create_card(client).data.card_id
    feishu.deny_scope()
    for response in (
        create_card(client),
        put_content(client, card_id, "x", 1),
        set_streaming(client, card_id, False, 2),
    ):
        assert (response.success(), response.code, response.raw.status_code) == (False, MISSING_SCOPE_CODE, 400)
        assert "cardkit:card:write" in response.msg
    feishu.deny_scope(denied=False)
    assert put_content(client, card_id, "x", 1).success()


def test_bot_info_through_the_sdk_generic_request(sims: Simulators, client: Any) -> None:
    from lark_oapi import AccessTokenType, BaseRequest, HttpMethod

    request = (
        BaseRequest.builder()
        .http_method(HttpMethod.GET)
        .uri("/open-apis/bot/v3/info")
        .token_types({AccessTokenType.TENANT})
        .build()
    )
    response = client.request(request)
    assert response.success(), response.msg
    bot = json.loads(response.raw.content)["bot"]
    assert (bot["open_id"], bot["app_name"]) == (sims.feishu.bot_open_id, sims.feishu.bot_name)
    assert sims.feishu.bot_info_requests == 1


def test_group_mentions_posts_and_images_reach_the_sdk_as_feishu_sends_them(sims: Simulators, app_id: str) -> None:
    feishu = sims.feishu
    received: queue.Queue[Any] = queue.Queue()
    sdk = BareSdkClient(feishu.domain, app_id, SECRET, received.put).start()
    try:
        feishu.wait_for_connection(1, timeout=5)
        alice = feishu.user_mention("@_user_2", "ou_alice", "Alice")
        injected = [
            feishu.inject_group_text("@_user_1 what is up @_user_2", [feishu.bot_mention(), alice]),
            feishu.inject_group_text("@_all standup in 5"),
            feishu.inject_group_text("chatter"),
            feishu.inject_post(
                {
                    "title": "",
                    "content": [
                        [
                            {"tag": "at", "user_id": "@_user_1", "user_name": feishu.bot_name},
                            {"tag": "text", "text": " fix this"},
                        ],
                        [{"tag": "code_block", "language": "Python", "text": "print(1)"}],
                    ],
                },
                chat_type="group",
                chat_id="oc_group1",
                mentions=[feishu.bot_mention()],
            ),
            feishu.inject_image(),
            feishu.inject_file("plan.pdf"),
        ]
        events = {}
        for _ in injected:
            data = received.get(timeout=5)
            events[data.event.message.message_id] = data
        for event in injected:
            feishu.wait_acked(event, timeout=5)
    finally:
        sdk.stop()
    seen = [incoming_from_event(events[e.message_id], feishu.bot_open_id) for e in injected]
    assert [(m.message_type, m.chat_type) for m in seen] == [
        ("text", "group"),
        ("text", "group"),
        ("text", "group"),
        ("post", "group"),
        ("image", "p2p"),
        ("file", "p2p"),
    ]
    assert (seen[0].text, seen[0].mentions_bot) == ("what is up @Alice", True)
    assert (seen[1].mentions_all, seen[1].mentions_bot) == (True, False)
    assert [should_answer(m)[0] for m in seen] == [True, False, False, True, True, True]
    assert seen[3].text == "fix this\n```python\nprint(1)\n```"
    assert seen[4].text is None and "an image" in present(seen[4].unreadable_reply)
    assert seen[5].text is None and "a file" in present(seen[5].unreadable_reply)
