"""`gatewatch profile check`: before serving, can this profile reach Feishu and its LLM at all?

Each check is one HTTP request with a deadline and prints one line: `ok` or `FAIL` and what to
do. The checks are the ones whose failure the gateway otherwise only shows later, message by
message: Feishu refusing the app credentials (token and long-connection endpoint), the LLM API
unreachable or refusing the key, and a configured model the provider does not offer.
Nothing here prints a secret: answers are summarised by their code and escaped message.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import httpx

from .config import Profile
from .logs import escape_untrusted

CHECK_DEADLINE = 5.0  # seconds per request: a check that hangs is a failed check


class CheckFailed(Exception):
    """One check failed; the message says why and what to do."""


def check_profile(profile: Profile, say: Callable[[str], None], deadline: float = CHECK_DEADLINE) -> int:
    """Run every check, print one line each; 0 when all passed, 1 otherwise."""
    failures = 0
    with httpx.Client(timeout=deadline, trust_env=False) as client:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("Feishu tenant token", lambda: _feishu_token(client, profile)),
            ("Feishu long-connection endpoint", lambda: _feishu_endpoint(client, profile)),
        ]
        offered: list[str] = []
        checks.append(("LLM API", lambda: _llm_models(client, profile, offered)))
        for model in profile.llm.models:
            checks.append((f"model {model}", functools.partial(_model_offered, model, offered, profile)))
        for name, check in checks:
            try:
                detail = check()
            except CheckFailed as failed:
                failures += 1
                say(f"FAIL  {name}: {failed}")
            except httpx.TimeoutException:
                failures += 1
                say(f"FAIL  {name}: no answer within {deadline:g}s; is the host reachable from here?")
            except httpx.HTTPError as exc:
                failures += 1
                say(f"FAIL  {name}: {type(exc).__name__}: {escape_untrusted(str(exc), 120)}")
            else:
                say(f"ok    {name}: {detail}")
    return 1 if failures else 0


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {response.status_code}, not JSON; is the URL right?") from None
    if not isinstance(body, dict):
        raise CheckFailed(f"HTTP {response.status_code}, unexpected answer")
    return body


def _feishu_token(client: httpx.Client, profile: Profile) -> str:
    url = f"{profile.feishu.domain}/open-apis/auth/v3/tenant_access_token/internal"
    body = _json(client.post(url, json={"app_id": profile.feishu.app_id, "app_secret": profile.feishu.app_secret}))
    if body.get("code") != 0 or not body.get("tenant_access_token"):
        raise CheckFailed(
            f"refused (code {body.get('code')}: {escape_untrusted(str(body.get('msg', '')), 80)}); "
            f"check feishu.app_id and the app secret in {profile.path}"
        )
    return f"issued by {profile.feishu.domain}"


def _feishu_endpoint(client: httpx.Client, profile: Profile) -> str:
    url = f"{profile.feishu.domain}/callback/ws/endpoint"
    response = client.post(url, json={"AppID": profile.feishu.app_id, "AppSecret": profile.feishu.app_secret})
    body = _json(response)
    if body.get("code") != 0 or not (body.get("data") or {}).get("URL"):
        raise CheckFailed(
            f"refused (HTTP {response.status_code}, code {body.get('code')}: "
            f"{escape_untrusted(str(body.get('msg', '')), 80)}); is long connection (WebSocket) "
            "event delivery enabled for the app, and are the credentials right?"
        )
    return "a WebSocket URL was offered"


def _llm_models(client: httpx.Client, profile: Profile, offered: list[str]) -> str:
    response = client.get(f"{profile.llm.base_url}/models", headers={"Authorization": f"Bearer {profile.llm.api_key}"})
    if response.status_code in (401, 403):
        raise CheckFailed(f"HTTP {response.status_code}: the API key is refused; check llm.api_key in {profile.path}")
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code} from {profile.llm.base_url}/models; is llm.base_url right?")
    data = _json(response).get("data")
    if not isinstance(data, list):
        raise CheckFailed(f"{profile.llm.base_url}/models did not list models; is it an OpenAI-compatible API?")
    offered.extend(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))
    return f"{profile.llm.base_url} answers, {len(offered)} models offered"


def _model_offered(model: str, offered: list[str], profile: Profile) -> str:
    if not offered:
        raise CheckFailed("not checked: the LLM API did not list its models")
    if model not in offered:
        shown = ", ".join(escape_untrusted(m, 40) for m in offered[:8]) + (" …" if len(offered) > 8 else "")
        raise CheckFailed(
            f"not offered by {profile.llm.base_url} (it offers: {shown}); fix llm.models in {profile.path}"
        )
    return "offered"
