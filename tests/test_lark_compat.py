"""lark-oapi's internals are used in one module only (gateway_core/_lark_compat.py), each one still
exists with the shape relied on, and the gateway loads only the SDK's WebSocket side (issue 22)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway_core._lark_compat import LARK_OAPI_CHECKED, MESSAGE_RECEIVED, SDK_INTERNALS, MessageEvents

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "gateway_core" / "_lark_compat.py"
COROUTINES = {"_connect", "_disconnect", "_reconnect", "_receive_message_loop", "_handle_message"}
COROUTINES |= {"_handle_data_frame", "_write_message"}


def lark_imports(source: str) -> list[str]:
    """Each import of lark_oapi in `source`, as 'line: what' (lazy imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lark_oapi":
            found.append(f"{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "lark_oapi"]
    return found


def test_lark_oapi_is_imported_by_the_compat_module_only() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in (ROOT / "gateway_core").rglob("*.py")
        if path != COMPAT and (uses := lark_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    ["import lark_oapi\n", "from lark_oapi.ws.client import Client\n", "def f():\n    import lark_oapi.ws as ws\n"],
)
def test_the_check_catches_each_kind_of_import(source: str) -> None:
    assert lark_imports(source) != []


def test_every_sdk_internal_relied_on_still_exists_with_its_shape() -> None:
    installed = importlib.metadata.version("lark-oapi")
    assert installed.split(".")[:2] == LARK_OAPI_CHECKED.split(".")[:2], f"re-check _lark_compat on {installed}"
    missing: list[str] = []
    wrong: list[str] = []
    for module_name, names in SDK_INTERNALS.items():
        module = importlib.import_module(module_name)
        for dotted in names:
            target: Any = module
            for part in dotted.split("."):
                target = getattr(target, part, None)
            if target is None:
                missing.append(f"{module_name}.{dotted}")
            elif dotted.split(".")[-1] in COROUTINES and not inspect.iscoroutinefunction(target):
                wrong.append(f"{module_name}.{dotted} is no longer a coroutine function")
    assert (missing, wrong) == ([], [])
    client = importlib.import_module("lark_oapi.ws.client").Client
    parameters = inspect.signature(client.__init__).parameters
    assert {"app_id", "app_secret", "event_handler", "domain", "auto_reconnect"} <= set(parameters)
    assert list(inspect.signature(client._handle_data_frame).parameters) == ["self", "frame"]


def test_the_gateway_loads_only_the_sdks_websocket_side_and_the_whole_sdk_still_on_demand() -> None:
    probe = """
import json, sys
from gateway_core._lark_compat import frame_class, load_ws_client
client = load_ws_client()
lean = sorted(m for m in sys.modules if m.startswith("lark_oapi"))
frame_class()
import lark_oapi
full_attr = lark_oapi.EventDispatcherHandler.__module__
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler
print(json.dumps({
    "lean": len(lean),
    "api": any(m.startswith("lark_oapi.api") for m in lean),
    "dispatcher": "lark_oapi.event.dispatcher_handler" in lean,
    "client": client.Client.__module__,
    "full": full_attr,
    "real_dispatcher": EventDispatcherHandler.__module__,
    "has_builder": hasattr(EventDispatcherHandler, "builder"),
}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["lean"] < 150 and not seen["api"] and not seen["dispatcher"]  # the WebSocket side only
    assert seen["client"] == "lark_oapi.ws.client"
    # Whoever wants the whole SDK afterwards gets it, the real dispatcher included.
    assert seen["full"] == seen["real_dispatcher"] == "lark_oapi.event.dispatcher_handler"
    assert seen["has_builder"]


def test_message_events_hand_on_a_message_and_ack_any_other_event() -> None:
    handed: list[dict[str, Any]] = []
    events = MessageEvents(handed.append)
    message = {"schema": "2.0", "header": {"event_type": MESSAGE_RECEIVED, "event_id": "ev_1"}, "event": {}}
    other = {"schema": "2.0", "header": {"event_type": "im.chat.member.bot.added_v1"}, "event": {}}
    # The SDK acks an event when its handler returns None: that is what is asserted, though typed `-> None`.
    assert events._do_without_validation(json.dumps(message).encode()) is None  # type: ignore[func-returns-value]
    assert events._do_without_validation(json.dumps(other).encode()) is None  # type: ignore[func-returns-value]
    assert handed == [message]
