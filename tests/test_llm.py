"""The LLM client over real HTTP against the LLM simulator: streaming, deadlines, failover."""

from gateway_core.config import LlmConfig
from gateway_core.llm import LlmClient
from gateway_core.sim import Simulators

from .support import LLM_KEY, in_own_thread

PROMPT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me more"}]


def client_for(sims: Simulators, request_timeout: float = 2.0, idle_timeout: float = 30.0) -> LlmClient:
    return LlmClient(
        LlmConfig(
            base_url=sims.llm.base_url,
            api_key=LLM_KEY,
            models=("alpha", "beta"),
            request_timeout=request_timeout,
            idle_timeout=idle_timeout,
            breaker_cooldown=30,
        )
    )


async def test_answer_streams_and_reports_the_text_so_far(sims: Simulators) -> None:
    llm = client_for(sims)
    seen: list[str] = []
    try:
        answer = await llm.complete(PROMPT, on_text=seen.append)
    finally:
        await llm.aclose()
    assert (answer.text, answer.model, answer.attempts) == ("[alpha] tell me more", "alpha", 1)
    assert seen == ["[alpha] ", "[alpha] tell ", "[alpha] tell me ", "[alpha] tell me more"]
    # The simulator records its status once the handler returns, just after the client has read
    # the last byte: wait for that instead of racing it.
    (request,) = sims.llm.wait_for(
        lambda: sims.llm.requests if sims.llm.in_flight() == 0 else None, 5, lambda: "request still in flight"
    )
    assert request.stream and request.answered_status == 200


async def test_dripping_model_fails_over_within_request_timeout(sims: Simulators) -> None:
    """One keep-alive byte a second resets any read timeout; the total deadline still holds."""
    sims.llm.set_behaviour("alpha", "drip")
    llm = client_for(sims, request_timeout=2.0)
    try:
        answer = await llm.complete(PROMPT)
    finally:
        await llm.aclose()
    assert (answer.text, answer.model, answer.attempts) == ("[beta] tell me more", "beta", 2)
    alpha, beta = sims.llm.requests
    assert alpha.dripped >= 2  # it really was dripping, not silent
    assert beta.at - alpha.at < 2.0 + 1.0  # failed over at the deadline, not after the drip
    await in_own_thread(sims.llm.wait_for, lambda: sims.llm.in_flight("alpha") == 0, 5)
    (alpha_health,) = [m for m in llm.snapshot().models if m.name == "alpha"]
    assert alpha_health.breaker == "open" and alpha_health.last_error == "no complete answer within 2s"


async def test_silent_model_fails_over_at_the_idle_limit(sims: Simulators) -> None:
    sims.llm.set_behaviour("alpha", "hang")  # not a byte: not even the headers
    llm = client_for(sims, request_timeout=30.0, idle_timeout=0.3)
    try:
        answer = await llm.complete(PROMPT)
    finally:
        await llm.aclose()
    assert answer.model == "beta"
    (alpha_health,) = [m for m in llm.snapshot().models if m.name == "alpha"]
    assert alpha_health.last_error == "no data for 0.3s"


async def test_a_failing_display_callback_does_not_lose_the_answer(sims: Simulators) -> None:
    llm = client_for(sims)

    def broken(text: str) -> None:
        raise RuntimeError("display broke")

    try:
        answer = await llm.complete(PROMPT, on_text=broken)
    finally:
        await llm.aclose()
    assert answer.text == "[alpha] tell me more" and answer.attempts == 1


async def test_vision_requests_go_only_to_vision_models_and_fail_over_among_them(sims: Simulators) -> None:
    llm = LlmClient(
        LlmConfig(
            base_url=sims.llm.base_url,
            api_key=LLM_KEY,
            models=("alpha", "beta", "gamma"),
            request_timeout=2.0,
            vision_models=("beta", "gamma"),
        )
    )
    sims.llm.set_behaviour("beta", "error")
    try:
        assert llm.failover_order(vision=True) == ["beta", "gamma"]
        answer = await llm.complete(PROMPT, vision=True)
        assert (answer.model, answer.attempts) == ("gamma", 2)
        assert [r.model for r in sims.llm.requests] == ["beta", "gamma"]  # alpha never asked
    finally:
        await llm.aclose()


async def test_a_transcription_sends_the_audio_and_the_transcribe_model(sims: Simulators) -> None:
    llm = LlmClient(
        LlmConfig(base_url=sims.llm.base_url, api_key=LLM_KEY, models=("alpha",), transcribe_model="whisper-sim")
    )
    sims.llm.transcribe_as("hello there")
    try:
        assert await llm.transcribe(b"OggS-audio", "voice.opus", "audio/ogg") == "hello there"
    finally:
        await llm.aclose()
    (seen,) = sims.llm.transcriptions
    assert (seen.model, seen.filename, seen.content_type, seen.data) == (
        "whisper-sim",
        "voice.opus",
        "audio/ogg",
        b"OggS-audio",
    )
