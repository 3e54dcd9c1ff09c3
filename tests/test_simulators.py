"""The simulators speak the real protocols: proven by driving the real lark-oapi SDK and httpx.

If these pass, a gateway test that passes against the simulators exercises the same frames,
acks, reconnects and HTTP calls it will meet in production. Every wait is an event or condition
with a timeout; nothing sleeps.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import threading
import time
from typing import Any, Callable, Iterator

import httpx
import pytest
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.ws.exception import ClientException

from gateway_core.sim import Simulators
from gateway_core.sim.platform import SlidingWindow

from .feishu_only import SECRET, http_client
from .sim.bare_sdk import BareSdkClient
from .support import wait_until


@pytest.fixture(autouse=True)
def no_proxy_no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep requests/httpx off any proxy, and fail a test that leaves a thread running."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def sims(feishu_only_sims: Simulators) -> Simulators:
    return feishu_only_sims  # this module's tests use Feishu alone: the SDK's own clients, no LLM


@pytest.fixture
def sdk_client(sims: Simulators, app_id: str) -> Iterator[Callable[..., BareSdkClient]]:
    """Factory for SDK ws clients against the simulator; all are stopped before the simulator."""
    clients: list[BareSdkClient] = []

    def make(handler: Callable[[Any], None], secret: str = SECRET) -> BareSdkClient:
        for earlier in clients:  # one ws.Client per process at a time
            earlier.stop()
        client = BareSdkClient(sims.feishu.domain, app_id, secret, handler).start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()


def test_sdk_receives_event_acks_and_pings(sims: Simulators, sdk_client: Callable[..., BareSdkClient]) -> None:
    feishu = sims.feishu
    received: queue.Queue[Any] = queue.Queue()
    sdk_client(lambda data: received.put(data.event.message))
    feishu.wait_for_connection(1, timeout=5)

    event = feishu.inject_text('hello 世界 "quoted"', chat_id="oc_x")
    message = received.get(timeout=5)
    assert (message.message_id, message.chat_id, message.message_type) == (event.message_id, "oc_x", "text")
    assert json.loads(message.content) == {"text": 'hello 世界 "quoted"'}
    feishu.wait_acked(event, timeout=5)
    assert feishu.ack_codes(event) == [200] and feishu.deliveries(event) == 1
    feishu.wait_for(lambda: feishu.pings >= 1, timeout=5)  # the SDK pings right after connecting

    feishu.redeliver(event)  # Feishu may redeliver an acked event; the SDK passes it on again
    assert received.get(timeout=5).message_id == event.message_id
    feishu.wait_for(lambda: feishu.ack_codes(event) == [200, 200], timeout=5)
    assert feishu.deliveries(event) == 2


def test_sdk_reply_create_uuid_idempotency_and_failures(sims: Simulators, app_id: str) -> None:
    feishu = sims.feishu
    client = http_client(feishu, app_id)
    event = feishu.inject_text("question")

    def reply(send_uuid: str) -> Any:
        body = (
            ReplyMessageRequestBody.builder()
            .content(json.dumps({"text": "hi"}))
            .msg_type("text")
            .uuid(send_uuid)
            .build()
        )
        return client.im.v1.message.reply(
            ReplyMessageRequest.builder().message_id(event.message_id).request_body(body).build()
        )

    first, again = reply("u1"), reply("u1")
    assert first.success() and again.success(), (first.msg, again.msg)
    sent = feishu.replies_to(event)
    assert [(m.kind, m.text, m.uuid, m.duplicate) for m in sent] == [
        ("reply", "hi", "u1", False),
        ("reply", "hi", "u1", True),
    ]
    assert first.data.message_id == again.data.message_id == sent[0].message_id
    assert feishu.token_requests == 1  # the SDK fetched one token and reused it

    feishu.fail_replies(1)
    failed, retried = reply("u2"), reply("u2")
    assert not failed.success() and retried.success()
    assert [m.duplicate for m in feishu.wait_for_replies(event, count=3, timeout=1)] == [False, True, False]
    assert feishu.failed_posts == 1

    body = (
        CreateMessageRequestBody.builder()
        .receive_id("oc_chat9")
        .msg_type("text")
        .content(json.dumps({"text": "news"}))
        .uuid("u3")
        .build()
    )
    created = client.im.v1.message.create(
        CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
    )
    assert created.success(), created.msg
    last = feishu.sent[-1]
    assert (last.kind, last.in_reply_to, last.text, last.duplicate) == ("create", "oc_chat9", "news", False)


def test_refused_tokens_fail_the_sdks_sends_the_way_feishu_does(sims: Simulators, app_id: str) -> None:
    """The reply-token fault, proven with the real SDK: its token goes invalid (99991663) and a new
    one is refused (10014), while the long connection is left alone."""
    feishu = sims.feishu
    client = http_client(feishu, app_id)
    event = feishu.inject_text("question")
    body = ReplyMessageRequestBody.builder().content(json.dumps({"text": "hi"})).msg_type("text").build()
    request = ReplyMessageRequest.builder().message_id(event.message_id).request_body(body).build()
    assert client.im.v1.message.reply(request).success()

    feishu.refuse_tokens()
    stale = client.im.v1.message.reply(request)  # the SDK's cached token is no longer accepted
    assert (stale.success(), stale.code) == (False, 99991663)
    fresh = http_client(feishu, app_id)
    lark_oapi_token_cache_clear(app_id)
    with pytest.raises(ObtainAccessTokenException) as refused:  # a new token is asked for and refused
        fresh.im.v1.message.reply(request)
    assert refused.value.code == 10014

    feishu.refuse_tokens(False)
    lark_oapi_token_cache_clear(app_id)
    assert client.im.v1.message.reply(request).success()


def lark_oapi_token_cache_clear(app_id: str) -> None:
    """lark-oapi caches tenant tokens per app id for the whole process; drop this app's."""
    from lark_oapi.core.token.manager import TokenManager

    TokenManager.cache.cache.pop(f"self_tenant_token:{app_id}", None)


def test_sdk_reconnects_after_drop_and_gets_unacked_redelivered(
    sims: Simulators, sdk_client: Callable[..., BareSdkClient]
) -> None:
    feishu = sims.feishu
    received: queue.Queue[str] = queue.Queue()
    failed_once: set[str] = set()

    def handler(data: Any) -> None:
        message = data.event.message
        received.put(message.message_id)
        if "boom" in message.content and message.message_id not in failed_once:
            failed_once.add(message.message_id)
            raise RuntimeError("handler failure (expected by the test)")  # the SDK acks {"code": 500}

    sdk_client(handler)
    first_conn = feishu.wait_for_connection(1, timeout=5)
    boom = feishu.inject_text("boom")
    assert received.get(timeout=5) == boom.message_id
    feishu.wait_for(lambda: feishu.ack_codes(boom) == [500], timeout=5)

    assert feishu.drop_connection()
    after = feishu.inject_text("after the drop")
    second_conn = feishu.wait_for_connection(2, timeout=5)
    assert second_conn != first_conn
    assert {received.get(timeout=5), received.get(timeout=5)} == {boom.message_id, after.message_id}
    feishu.wait_acked(boom, timeout=5)
    feishu.wait_acked(after, timeout=5)
    assert (feishu.deliveries(boom), feishu.deliveries(after)) == (2, 1)
    assert feishu.endpoint_requests == 2 and feishu.live_connections == 1


def test_sdk_retries_busy_endpoint_but_auth_rejection_is_fatal(
    sims: Simulators, sdk_client: Callable[..., BareSdkClient]
) -> None:
    feishu = sims.feishu
    sdk_client(lambda data: None)
    feishu.wait_for_connection(1, timeout=5)
    # 503 "system busy" is retryable: after ReconnectInterval (1 s) the SDK tries again. (Refused
    # before the first connect, the SDK would wait with its defaults: up to 30 s + 120 s.)
    feishu.refuse_reconnects(0.3)
    feishu.drop_connection()
    feishu.wait_for_connection(2, timeout=5)
    assert feishu.endpoint_requests >= 3

    feishu.reject_auth(True)
    client = sdk_client(lambda data: None)  # stops the first client
    assert client.finished.wait(5), "start() should raise, not block"
    assert isinstance(client.error, ClientException) and client.error.code == 10003
    assert feishu.connections_total == 2


def test_deafened_link_stays_open_but_answers_no_ping_and_no_close(
    sims: Simulators, sdk_client: Callable[..., BareSdkClient]
) -> None:
    """A half-open link: the SDK's socket stays up, yet nothing it sends is ever answered."""
    import asyncio

    feishu = sims.feishu
    received: queue.Queue[str] = queue.Queue()
    client = sdk_client(lambda data: received.put(data.event.message.message_id))
    first = feishu.wait_for_connection(1, timeout=5)

    async def holds_its_connection(sdk: Any) -> bool:
        return sdk._conn is not None

    # The server sees the connection a moment before the SDK stores it (slow on a busy machine).
    wait_until(lambda: client.call(holds_its_connection), 5, "the SDK holds its connection")
    assert feishu.deafen_connection() == first
    lost = feishu.inject_text("into the void")  # sent to the deaf link: lost on the way

    async def ping_then_close(sdk: Any) -> tuple[bool, object, int, bool]:
        # The simulator counts the link once its handshake is done, a moment before the SDK
        # stores the socket: wait (bounded) for the SDK's side too.
        async with asyncio.timeout(5):
            while sdk._conn is None:
                await asyncio.sleep(0.02)
        conn = sdk._conn
        pong = await conn.ping()
        try:
            await asyncio.wait_for(asyncio.shield(pong), 1.0)
            answered = True
        except TimeoutError:
            answered = False
        # Read before the close: once closed, the SDK reconnects and the redelivery may arrive.
        nothing_arrived = received.empty()
        conn.close_timeout = 0.5
        await conn.close()  # the SDK's receive loop sees it closed and reconnects
        return answered, conn.protocol.close_rcvd, feishu.live_connections, nothing_arrived

    answered, close_answer, live, nothing_arrived = client.call(ping_then_close)
    assert not answered, "a deaf link answered a WebSocket ping"
    assert close_answer is None, "a deaf link answered the close handshake"
    assert live >= 1 and first in feishu.conn_ids  # the server never noticed: TCP is still open
    assert nothing_arrived  # the event went to the deaf link and never arrived
    # Only that link is deaf: the SDK reconnects and gets the un-acked event redelivered.
    assert feishu.wait_for_connection(2, timeout=5) != first
    assert received.get(timeout=5) == lost.message_id
    feishu.wait_acked(lost, timeout=5)


def test_hanging_endpoint_holds_discovery_until_released(
    sims: Simulators, sdk_client: Callable[..., BareSdkClient]
) -> None:
    """The SDK's endpoint POST has no timeout: a held one blocks it until the server answers."""
    feishu = sims.feishu
    feishu.hang_endpoint()
    sdk_client(lambda data: None)
    feishu.wait_for(lambda: feishu.endpoints_hanging == 1, timeout=5)
    assert feishu.connections_total == 0
    feishu.hang_endpoint(False)
    feishu.wait_for_connection(1, timeout=5)
    # The very POST that hung was answered on release; the SDK never retried on its own.
    assert feishu.endpoint_requests == 1 and feishu.endpoints_hanging == 0


@pytest.mark.slow
def test_pongs_carry_the_client_config_and_set_the_ping_interval(
    sims: Simulators, sdk_client: Callable[..., BareSdkClient]
) -> None:
    feishu = sims.feishu
    feishu.ping_interval = 1  # told at discovery: the client pings every second
    client = sdk_client(lambda data: None)
    feishu.wait_for_connection(1, timeout=5)
    feishu.wait_for(lambda: feishu.pings >= 3, timeout=10)
    feishu.ping_interval = 2  # told in the next pong
    feishu.wait_for(lambda: client.sdk._ping_interval == 2, timeout=5)
    assert client.sdk._reconnect_interval == feishu.reconnect_interval


def test_llm_echo_auth_errors_and_unknown_model(sims: Simulators) -> None:
    llm = sims.llm
    llm.set_behaviour("broken", "error")
    llm.set_behaviour("ghost", "unknown")
    with httpx.Client(base_url=llm.base_url, headers={"Authorization": "Bearer sim-key"}, timeout=5) as http:

        def ask(model: str) -> httpx.Response:
            return http.post(
                "/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ping"}],
                },
            )

        answer = ask("m1")
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"] == {"role": "assistant", "content": "[m1] ping"}
        assert ask("broken").status_code == 500
        assert ask("ghost").json()["error"]["code"] == "model_not_found"
        unauthorised = http.post(
            "/chat/completions", headers={"Authorization": "Bearer wrong"}, json={"model": "m1", "messages": []}
        )
        assert unauthorised.status_code == 401
    answered = [(r.model, r.answered_status) for r in llm.requests]
    assert answered == [("m1", 200), ("broken", 500), ("ghost", 404)]


def test_llm_hold_in_flight_release_and_hang(sims: Simulators) -> None:
    llm = sims.llm
    llm.hold("slow")
    llm.set_behaviour("stuck", "hang")
    url = f"{llm.base_url}/chat/completions"

    def ask(model: str) -> httpx.Response:
        return httpx.post(
            url,
            headers={"Authorization": "Bearer sim-key"},
            timeout=5,
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow, stuck = pool.submit(ask, "slow"), pool.submit(ask, "stuck")
        assert llm.wait_in_flight("slow", timeout=5) == 1
        llm.wait_in_flight("stuck", timeout=5)
        assert not slow.done()
        llm.release("slow")
        assert slow.result(5).json()["choices"][0]["message"]["content"] == "[slow] hi"
        assert llm.in_flight("stuck") == 1
        llm.set_behaviour("stuck", "echo")  # a hang ends when its behaviour changes
        assert stuck.result(5).status_code == 200
    assert llm.in_flight() == 0


def test_llm_streams_one_chunk_per_word_and_drips_when_told(sims: Simulators) -> None:
    """SSE shaped like OpenAI's (role, a delta per word, finish, [DONE]); `drip` keeps the
    connection busy with a newline a second and never answers until its behaviour changes."""
    llm = sims.llm
    headers = {"Authorization": "Bearer sim-key"}
    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "three small words"}]}
    with httpx.Client(base_url=llm.base_url, headers=headers, timeout=5) as http:
        with http.stream("POST", "/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            data = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d)["choices"][0] for d in data[:-1]]
        assert chunks[0]["delta"] == {"role": "assistant", "content": ""}
        pieces = [c["delta"]["content"] for c in chunks[1:-1]]
        assert pieces == ["[m1] ", "three ", "small ", "words"]
        assert chunks[-1] == {"index": 0, "delta": {}, "finish_reason": "stop"}

        llm.set_behaviour("m1", "drip")
        with http.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200  # headers at once, like a proxy keeping alive
            received = response.iter_bytes()
            assert next(received).strip() == b""  # whitespace only
            llm.wait_for(lambda: llm.requests[-1].dripped >= 2, timeout=5)
            llm.set_behaviour("m1", "echo")  # the answer follows the whitespace
            rest = b"".join(received)
        assert b'"content": "words"' in rest and rest.rstrip().endswith(b"data: [DONE]")
    # The simulator records the status once its handler returns, which may be just after the
    # client has read the last byte.
    llm.wait_for(lambda: [r.answered_status for r in llm.requests] == [200, 200], timeout=5)


def test_feishu_limits_sends_per_chat_and_per_app_like_feishu(app_id: str) -> None:
    """The SDK's own reply and create requests: over 5/s to one chat or over the app's limit,
    HTTP 400 with code 230020 and nothing sent; after the window the same request goes out."""
    with Simulators(feishu={"app_id": app_id, "app_secret": SECRET, "app_rate_limit": 8}) as sims:
        feishu = sims.feishu
        client = http_client(feishu, app_id)
        event = feishu.inject_text("question", chat_id="oc_busy")

        def reply(n: int) -> Any:
            body = (
                ReplyMessageRequestBody.builder()
                .content(json.dumps({"text": f"r{n}"}))
                .msg_type("text")
                .uuid(f"r{n}")
                .build()
            )
            return client.im.v1.message.reply(
                ReplyMessageRequest.builder().message_id(event.message_id).request_body(body).build()
            )

        def create(chat: str) -> Any:
            body = (
                CreateMessageRequestBody.builder()
                .receive_id(chat)
                .msg_type("text")
                .content(json.dumps({"text": "news"}))
                .build()
            )
            return client.im.v1.message.create(
                CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
            )

        answers = [reply(n) for n in range(6)]  # well within one second
        refused = [a for a in answers if not a.success()]
        assert [(a.code, a.raw.status_code) for a in refused] == [(230020, 400)]
        assert [m.text for m in feishu.replies_to(event)] == ["r0", "r1", "r2", "r3", "r4"]
        assert feishu.rate_limited[0][:2] == ("reply", event.message_id)

        # Three other chats: the app's 8 per second are used up after three more sends.
        others = [create(chat) for chat in ("oc_a", "oc_b", "oc_c", "oc_d")]
        assert [a.success() for a in others] == [True, True, True, False]
        assert others[-1].code == 230020 and len(feishu.rate_limited) == 2

        # The limit is per second of wall time: once a second has passed since the last accepted
        # send, the refused request goes through.
        time.sleep(max(0.0, feishu.sent[-1].at + 1.05 - time.time()))
        again = reply(5)
        assert again.success(), again.msg
        assert [m.text for m in feishu.replies_to(event)][-1] == "r5"


def test_sliding_window_counts_each_limit_over_its_own_window() -> None:
    """The one window the simulators count Feishu's rate limits in: 2 per second and 3 per 10 s."""
    window, limits = SlidingWindow(), [(2, 1.0), (3, 10.0), (None, 0.5)]
    for at in (0.0, 0.1):
        assert not window.full(limits, at)
        window.record(at)
    assert window.full(limits, 0.5)  # the third call within one second
    assert not window.full(limits, 1.05)  # the first has left the 1 s window...
    window.record(1.05)
    assert window.full(limits, 2.5)  # ...but 3 in 10 s is reached
    assert not window.full(limits, 10.2)  # two have left the 10 s window
