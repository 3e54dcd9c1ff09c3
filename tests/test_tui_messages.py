"""The Messages panel as an operator meets it: it follows the newest message (answers in progress
below it included), shows the whole outcome where there is room, and Enter on a message opens it
whichever pane had focus. Frozen data (the snapshot tests' source), a growing list of messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway_core.pipeline import Activity, Answering
from gateway_core.states import DeliveryMode, Outcome
from tui.panels import MessagesPanel
from tui.screens.detail import DetailScreen

from .factories import NOW
from .frozen import FrozenSource, console, screen_text
from .support import present, until


def message(n: int, outcome: Outcome = Outcome.ANSWERED, reply_mode: DeliveryMode = DeliveryMode.CARD) -> Activity:
    return Activity(
        NOW + n, "oc_chat", "ou_user", f"question {n}", "alpha", 0.4, outcome,
        message_id=f"om_{100 + n}", text=f"question {n}", reply=f"answer {n}", reply_mode=reply_mode,
    )  # fmt: skip


def writing(n: int) -> Answering:
    return Answering(f"om_w{n}", "oc_chat", "ou_user", f"question {n}", NOW + n, DeliveryMode.CARD, chunks=3, chars=12)


def arrive(source: FrozenSource, n: int, answering: tuple[Answering, ...] = ()) -> None:
    """Message n is answered and recorded; `answering` are still being written."""
    pipeline = source._snapshot.pipeline
    source._snapshot = dataclasses.replace(
        source._snapshot,
        pipeline=dataclasses.replace(pipeline, activity=(*pipeline.activity, message(n)), answering=answering),
    )


async def test_the_panel_follows_the_newest_message_past_its_height_with_answers_in_progress_below(
    tmp_path: Path,
) -> None:
    source = FrozenSource()
    app = console(source)
    async with app.run_test(size=(200, 50)) as pilot:
        await until(source.caught_up, 15, "the console read its source", pilot=pilot)
        table = app.query_one(MessagesPanel)
        for n in range(40):  # far more than the 16 rows in view; every third one streams a while
            arrive(source, n, (writing(n),) if n % 3 == 0 else ())
            app.refresh_panels()
            await pilot.pause()
        await until(lambda: table.scroll_y == table.max_scroll_y > 0, 10, "scrolled to the end", pilot=pilot)
        newest = table.selected_activity()
        assert newest is not None and newest.preview == "question 39"
        text = screen_text(app)
        assert "question 39" in text and "3 tok 12 ch" in text, text

        # The operator moves up: the panel stops following, and new messages do not pull the cursor.
        await pilot.press("up", "up")
        held = table.selected_activity()
        arrive(source, 40)
        app.refresh_panels()
        await pilot.pause()
        assert table.selected_activity() == held
        # Back down on the newest: following again.
        await pilot.press(*["down"] * 5)
        arrive(source, 41)
        app.refresh_panels()
        await until(
            lambda: (table.selected_activity() or message(0)).preview == "question 41", 10, "follows again", pilot=pilot
        )


async def test_the_outcome_is_whole_where_there_is_room_and_cut_at_80_columns() -> None:
    source = FrozenSource()
    app = console(source)
    async with app.run_test(size=(200, 50)) as pilot:
        await until(source.caught_up, 15, "the console read its source", pilot=pilot)
        await until(lambda: "answered · card" in screen_text(app), 10, "the whole outcome at 200 columns", pilot=pilot)
        await pilot.resize_terminal(80, 24)
        await until(lambda: "answered · card" not in screen_text(app), 10, "cut at 80 columns", pilot=pilot)
        assert "answered ·" in screen_text(app)
        await pilot.resize_terminal(160, 48)
        await until(lambda: "answered · card" in screen_text(app), 10, "whole again at 160 columns", pilot=pilot)


async def test_enter_on_a_message_opens_it_whichever_pane_had_focus() -> None:
    source = FrozenSource()
    app = console(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(source.caught_up, 15, "the console read its source", pilot=pilot)
        table = app.query_one(MessagesPanel)
        # `w` marks a warning in the log and gives the log focus: Enter there is the log line.
        await pilot.press("w", "enter")
        await until(lambda: isinstance(app.screen, DetailScreen), 10, "a detail", pilot=pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.title_text == "Log line"
        await pilot.press("escape")
        # The operator clicks a message (the log had focus, a line is still marked): its detail.
        await pilot.click(MessagesPanel, offset=(3, 3))
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, DetailScreen), 10, "a detail", pilot=pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.title_text == "Message"
        await pilot.press("escape")
        # Focus nowhere in particular: Enter still means the message under the cursor, not the marked line.
        app.screen.set_focus(None)
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, DetailScreen), 10, "a detail", pilot=pilot)
        assert isinstance(app.screen, DetailScreen)
        shown = dict(app.screen.fields)
        assert app.screen.title_text == "Message"
        assert shown["message id"].plain == present(table.selected_activity()).message_id
