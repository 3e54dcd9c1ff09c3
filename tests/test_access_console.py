"""Issue 19 in the console: pairing requests shown (who, where, when) and decided with a key.

A Pilot test drives a real in-process gateway on the simulators; the pictures (80x24) are drawn
from frozen data through the console's public surface, as tests/test_tui_snapshots.py does, and
read back as text to check they say what they claim.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from gateway_core.access import AccessSnapshot, PendingCode
from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.ownership import read_owner
from gateway_core.sim import Simulators
from gateway_core.sim.platform import InjectedEvent, SentMessage
from gateway_core.states import DeliveryMode, Outcome
from tui.app import ConsoleApp
from tui.panels import MessagesPanel
from tui.screens import AccessModal
from tui.source import LocalSource

from .factories import NOW, activity
from .frozen import FrozenSource, console, picture, screen_text
from .support import SnapCompare, access_section, in_own_thread, present, until, write_profile

pytestmark = pytest.mark.usefixtures("utc")  # the pictures show clock times: the same in every zone


# ----------------------------------------------------------------------------- a real gateway


@pytest.fixture
def pairing_console(home: Home, sims: Simulators) -> Iterator[tuple[ConsoleApp, Gateway]]:
    write_profile(home, "p", sims, extra=access_section(dm_policy="pairing"))
    gateway = Gateway(load_profile(home, "p"), home, owner="console", log_to_file=False)
    app = ConsoleApp(LocalSource("p", lambda: gateway), home=home)
    yield app, gateway
    assert gateway.state == "stopped" and read_owner(home.lock_file("p")) is None


async def code_reply(sims: Simulators, sender: str, chat: str) -> tuple[InjectedEvent, SentMessage]:
    event = sims.feishu.inject_text("hello?", sender_open_id=sender, chat_id=chat)
    (reply,) = await in_own_thread(sims.feishu.wait_for_replies, event, 1, 15)
    return event, reply


async def test_a_pairing_request_is_shown_and_approved_or_denied_with_its_key(
    pairing_console: tuple[ConsoleApp, Gateway], sims: Simulators
) -> None:
    app, gateway = pairing_console
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await until(lambda: gateway.feishu.state == "connected", 20, "Feishu connected", pilot=pilot)
        assert app.check_action("access", ()) is None  # pairing, nobody waiting: shown, not on offer
        await code_reply(sims, "ou_first", "oc_first")
        await code_reply(sims, "ou_second", "oc_second")
        panel = app.query_one(MessagesPanel)
        await until(lambda: "2 pairing requests (a)" in str(panel.border_subtitle), 10, "requests shown", pilot=pilot)

        def outcomes() -> list[str]:
            return [str(cell) for cell in panel.get_column("outcome")]

        await until(lambda: outcomes() == ["refused · text"] * 2, 10, "refused rows", pilot=pilot)
        assert app.check_action("access", ()) is True

        await pilot.press("a")
        await until(lambda: isinstance(app.screen, AccessModal), 5, "the requests", pilot=pilot)
        text = screen_text(app)
        assert "ou_first  in oc_first" in text and "ou_second  in oc_second" in text
        await pilot.press("a")  # the highlighted (oldest) one
        await until(lambda: not isinstance(app.screen, AccessModal), 5, "closed", pilot=pilot)
        await until(lambda: "ou_first approved: the bot answers them now" in app.told, 10, "approved", pilot=pilot)
        assert gateway.journal is not None
        assert present(gateway.journal.access_record("ou_first")).approved_at is not None

        await until(lambda: "1 pairing request (a)" in str(panel.border_subtitle), 10, "one left", pilot=pilot)
        await pilot.press("a")
        await until(lambda: isinstance(app.screen, AccessModal), 5, "the requests", pilot=pilot)
        await pilot.press("d")
        await until(lambda: "ou_second denied" in app.told, 10, "denied", pilot=pilot)
        assert gateway.journal is not None
        assert present(gateway.journal.access_record("ou_second")).approved_at is None
        await until(lambda: "pairing request" not in str(panel.border_subtitle), 10, "none left", pilot=pilot)
        assert app.check_action("access", ()) is None

        answered = sims.feishu.inject_text("now?", sender_open_id="ou_first", chat_id="oc_first")
        (reply,) = await in_own_thread(sims.feishu.wait_for_replies, answered, 1, 15)
        assert reply.text == "[alpha] now?"
        assert len(sims.llm.requests) == 1


# ----------------------------------------------------------------------------- pictures


class PairingSource(FrozenSource):
    """The frozen gateway of the other pictures, with pairing on: one refused stranger waiting."""

    def __init__(self) -> None:
        super().__init__()
        base = self._snapshot.pipeline
        refused = activity(
            at=NOW - 20,
            chat_id="oc_dm_stranger",
            sender_id="ou_stranger",
            preview="can I use you?",
            model=None,
            latency=None,
            outcome=Outcome.REFUSED,
            message_id="om_9",
            event_id="ev_9",
            text="can I use you?",
            reply="Hi! This bot answers only people its owner has approved. Your pairing code is QX******",
            reply_mode=DeliveryMode.TEXT,
        )
        access = AccessSnapshot(
            policy="pairing",
            declared=True,
            pending=(PendingCode("ou_stranger", "oc_dm_stranger", NOW - 20, "QX******"),),
            refused_last_hour=1,
            refused=1,
        )
        pipeline = dataclasses.replace(base, activity=(*base.activity, refused), access=access)
        self._snapshot = dataclasses.replace(self._snapshot, pipeline=pipeline)


def test_pairing_request_on_the_main_screen_80x24(snap_compare: SnapCompare) -> None:
    source = PairingSource()
    shows = ("1 pairing request (a)", "refused", "Access")
    assert snap_compare(console(source), terminal_size=(80, 24), run_before=picture(source, shows=shows))


def test_pairing_requests_modal_80x24(snap_compare: SnapCompare) -> None:
    source = PairingSource()
    shows = ("Pairing requests", "ou_stranger  in oc_dm_stranger  20s ago", "a approve · d deny")
    run_before = picture(source, "a", modal=True, shows=shows, hides=("QX",))
    assert snap_compare(console(source), terminal_size=(80, 24), run_before=run_before)


async def test_an_attached_console_decides_through_the_control_socket(home: Home, sims: Simulators) -> None:
    from tui.remote import RemoteSource

    from .support import gateway_on_profile

    async with gateway_on_profile(home, sims, extra=access_section(dm_policy="pairing")) as gateway:
        await code_reply(sims, "ou_far", "oc_far")
        remote = RemoteSource(home, "p", present(gateway.lock.info))
        listed = await remote.access_request("list")
        assert [p["open_id"] for p in listed["pending"]] == ["ou_far"]
        assert await remote.access_request("approve", "ou_far") == {"approved": "ou_far"}
        assert gateway.journal is not None
        assert present(gateway.journal.access_record("ou_far")).approved_at is not None
