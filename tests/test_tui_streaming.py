"""The console's Messages panel while answers stream: writing rows, reply modes, commands."""

from typing import Any

from textual.widgets import DataTable

from gateway_core.config import Home, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators
from tui.app import ConsoleApp
from tui.panels import MessagesPanel
from tui.source import LocalSource

from .console_support import SIZE, connected
from .support import in_own_thread, until, write_profile


def row_texts(table: DataTable[Any]) -> list[str]:
    return [" | ".join(cell.plain for cell in table.get_row_at(y)) for y in range(table.row_count)]


async def test_a_streaming_answer_shows_as_a_writing_row_then_as_a_card(home: Home, sims: Simulators) -> None:
    write_profile(home, "p", sims, reply_mode="stream")
    gateway = Gateway(load_profile(home, "p"), home, owner="console", log_to_file=False)
    app = ConsoleApp(LocalSource("p", lambda: gateway), home=home)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        table = app.query_one(MessagesPanel)
        sims.llm.pause_stream("alpha", 3)
        event = sims.feishu.inject_text("one two three four five")
        await in_own_thread(sims.llm.wait_stream_paused, 1, 10)
        await until(
            lambda: any("writing · card" in r and "3 tok" in r for r in row_texts(table)),
            5,
            "a writing row with its token count",
            pilot=pilot,
        )
        assert "replies: stream" in str(table.border_subtitle)
        sims.llm.resume_stream("alpha")
        await in_own_thread(sims.feishu.wait_card_finished, event, 10)
        await until(
            lambda: (
                [r for r in row_texts(table) if "answered · card" in r]
                and not [r for r in row_texts(table) if "writing" in r]
            ),
            5,
            "the final row, the writing row gone",
            pilot=pilot,
        )
        command = sims.feishu.inject_text("/help")
        await in_own_thread(sims.feishu.wait_for_replies, command, 1, 10)
        await until(
            lambda: any("command · text" in r and "/help" in r for r in row_texts(table)),
            5,
            "the command shown as a command",
            pilot=pilot,
        )
        sims.feishu.deny_scope()  # learnt on the next card tried, then remembered
        fallback = sims.feishu.inject_text("no scope now")
        await in_own_thread(sims.feishu.wait_for_replies, fallback, 1, 10)
        await until(lambda: "cards unavailable" in str(table.border_subtitle), 5, "the fallback shown", pilot=pilot)
