"""The log pane and the keys, driven by Pilot on a real in-process gateway and the simulators.

Following means the newest record is on screen: every test checks the lines in view, not a flag.
"""

from __future__ import annotations

from typing import Any, cast

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Footer

from gateway_core.config import Home, Profile
from gateway_core.sim import Simulators
from tui.app import ConsoleApp
from tui.panels import LogPane, MessagesPanel
from tui.screens import ChoiceModal, DetailScreen, HelpScreen
from tui.screens.quit_confirm import HAND_BACK

from .console_support import INJECTION, connected
from .support import ask, until

SIZE = (80, 24)


async def fill(pilot: Pilot[None], sims: Simulators, n: int = 4) -> None:
    """Enough messages that the log is longer than its pane, and all of it pulled into the pane."""
    pane = pilot.app.query_one(LogPane)
    for i in range(n):
        await ask(sims, f"filler {i}")
    # The reply was sent after both its lines were logged: once one is in the pane, both are.
    await until(lambda: any(f"filler {n - 1}" in line for line in pane.visible_lines()), 5, "the fill", pilot=pilot)


def pane_of(app: App[None]) -> LogPane:
    return app.query_one(LogPane)


async def newest_in_view(pilot: Pilot[None], pane: LogPane, text: str) -> None:
    await until(
        lambda: any(text in line for line in pane.lines_in_view()), 5, f"{text!r} in view, following", pilot=pilot
    )
    assert "following" in str(pane.border_title)


async def test_resume_really_follows_after_p_l_and_esc(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await fill(pilot, sims)
        await pilot.press("p")
        await ask(sims, "sent while paused")
        await until(lambda: pane.pending > 0, 5, "pending counted", pilot=pilot)
        await pilot.press("p")
        await newest_in_view(pilot, pane, "sent while paused")
        await ask(sims, "after p p")
        await newest_in_view(pilot, pane, "after p p")

        await pilot.press("l", "l", "l", "l")  # all the way round to DEBUG
        assert pane.min_level == "DEBUG"
        await ask(sims, "after cycling l")
        await newest_in_view(pilot, pane, "after cycling l")

        await pilot.press("slash", *"filler", "escape")
        assert pane.search == ""
        await ask(sims, "after esc")
        await newest_in_view(pilot, pane, "after esc")


async def test_scrolling_up_pauses_with_a_count_and_end_follows(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await fill(pilot, sims)
        pane.log_view.focus()
        await pilot.press("pageup")
        await until(lambda: pane.paused, 5, "paused by scrolling up", pilot=pilot)
        # The gateway logs on its own loop, so lines may already be counted: the title says how many.
        await until(lambda: f"PAUSED · +{pane.pending} new" in str(pane.border_title), 5, "the count", pilot=pilot)
        frozen = pane.lines_in_view()
        await ask(sims, "while scrolled up")
        await until(lambda: pane.pending > 0, 5, "new lines counted", pilot=pilot)
        assert f"+{pane.pending} new" in str(pane.border_title)
        assert pane.lines_in_view() == frozen  # the view stays where the operator put it
        await pilot.press("end")
        await newest_in_view(pilot, pane, "while scrolled up")
        assert pane.pending == 0
        # End follows from anywhere, not only with the log focused.
        console.query_one(MessagesPanel).focus()
        await pilot.press("p")
        assert pane.paused
        await pilot.press("end")
        await until(lambda: not pane.paused, 5, "End follows with the table focused", pilot=pilot)


async def test_w_jumps_to_warnings_and_enter_shows_the_line_in_full(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await pilot.press("e")  # logs a WARNING: "executor rebuilt"
        await until(lambda: any("executor rebuilt" in l for l in pane.visible_lines()), 5, "warning", pilot=pilot)
        await fill(pilot, sims, 5)  # the warning scrolls out of view
        assert not any("executor rebuilt" in line for line in pane.lines_in_view())
        pane.log_view.scroll_home(animate=False, immediate=True)
        await pilot.press("w")
        await until(lambda: pane.log_view.marked is not None, 5, "a line marked", pilot=pilot)
        assert pane.paused
        assert pane.log_view.marked is not None
        marked = pane.visible_lines()[pane.log_view.marked]
        assert " WARNING " in marked or " ERROR " in marked
        assert marked in pane.lines_in_view()
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, DetailScreen), 5, "detail view", pilot=pilot)
        detail = console.screen
        assert isinstance(detail, DetailScreen)
        assert detail.title_text == "Log line"
        message = dict(detail.texts)["message"].plain
        assert message in marked and len(message) > 10
        await pilot.press("escape")
        assert not isinstance(console.screen, DetailScreen)
        await pilot.press("end")
        await until(lambda: not pane.paused, 5, "following again", pilot=pilot)
        assert pane.log_view.marked is None


async def test_w_without_warnings_says_so(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        # A search nothing matches: no line in view at all (a slow probe may have warned already).
        await pilot.press("slash", *"no-such-text", "enter")
        await until(lambda: pane_of(console).search == "no-such-text", 5, "search applied", pilot=pilot)
        assert not pane_of(console).visible_lines()
        await pilot.press("w")
        assert any("no WARNING or ERROR" in n for n in console.told)


async def test_search_highlights_and_counts_matches(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await fill(pilot, sims, 3)
        # A word early in the line, so the matches are within the 80 columns.
        await pilot.press("slash", *"PIPELINE", "enter")
        await until(lambda: pane.search == "PIPELINE", 5, "search applied", pilot=pilot)
        lines = pane.visible_lines()
        assert lines and all("pipeline" in line.lower() for line in lines)
        assert f"/PIPELINE · {len(lines)} matching" in str(pane.border_title)
        await ask(sims, "one more filler")
        # Two more pipeline lines: the message and its answer.
        await until(lambda: f"· {len(lines) + 2} matching" in str(pane.border_title), 5, "count grows", pilot=pilot)
        await pilot.pause()
        highlighted = []
        for y in range(pane.log_view.scrollable_content_region.height):
            for segment in pane.log_view.render_line(y):
                if segment.style and segment.style.bgcolor and segment.style.bgcolor.name == "yellow":
                    highlighted.append(segment.text)
        assert highlighted and all(text.lower() == "pipeline" for text in highlighted), highlighted


async def test_enter_on_a_message_row_shows_in_out_model_latency_and_ids(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        long_text = INJECTION + " " + " ".join(["word"] * 60)  # longer than any preview
        reply = (await ask(sims, long_text)).text
        table = console.query_one(MessagesPanel)
        # The row is finished ("answered"), not still "writing": a row being redrawn can lose the key.
        await until(
            lambda: table.row_count == 1 and any("answered" in cell.plain for cell in table.get_row_at(0)),
            15,
            "the answered row",
            pilot=pilot,
        )
        table.focus()
        await pilot.press("enter")
        await until(lambda: isinstance(console.screen, DetailScreen), 15, "detail view", pilot=pilot)
        detail = console.screen
        assert isinstance(detail, DetailScreen)
        fields = {label: value.plain for label, value in detail.fields}
        texts = dict(detail.texts)
        escaped = long_text.replace("\x1b", "\\x1b")
        assert texts["in (the user wrote)"].plain == escaped
        assert texts["out (the gateway replied)"].plain == reply.replace("\x1b", "\\x1b")
        assert not texts["in (the user wrote)"].spans  # literal: the markup in it is not applied
        assert fields["model"] == "alpha" and fields["outcome"] == "answered"
        assert fields["latency"].endswith(("ms", "s")) and fields["message id"].startswith("om_")
        assert fields["event id"] not in ("", "—")
        await pilot.press("escape")
        assert not isinstance(console.screen, DetailScreen)


async def test_help_and_quit_are_in_the_footer_at_80_and_60_columns(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        for width, height in ((80, 24), (60, 20)):
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            footer = console.query_one(Footer)
            # FooterKey is private to Textual (tests/test_textual_compat.py): queried by name, `key` read untyped.
            keys = footer.query("FooterKey")
            visible = {cast(Any, key).key for key in keys if key.region.width and key.region.right <= width}
            assert {"question_mark", "q"} <= visible, (width, visible)


async def test_below_80_columns_the_log_stays_visible(console: ConsoleApp, sims: Simulators) -> None:
    async with console.run_test(size=(60, 20)) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        assert console.screen.has_class("-cramped")
        await ask(sims, "narrow screen")
        await newest_in_view(pilot, pane, "narrow screen")
        assert pane.log_view.scrollable_content_region.height >= 3


async def test_the_demo_does_not_offer_launchd_keys(home: Home, profile: Profile, sims: Simulators) -> None:
    from gateway_core.gateway import Gateway
    from tui.app import ConsoleApp
    from tui.source import LocalSource

    gateway = Gateway(profile, home, owner="console", log_to_file=False)
    app = ConsoleApp(LocalSource(profile.name, lambda: gateway), home=None)  # as the demo makes it
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        keys = {binding.key for binding in app.operator_bindings()}
        assert "h" not in keys and "t" not in keys and {"m", "question_mark", "q"} <= keys
        await pilot.press("h")
        await pilot.pause()
        assert not app.told  # not offered, so nothing happens
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = {binding.key for binding in app.screen.keys}
        assert "h" not in shown
        await pilot.press("escape", "q")  # the quit question offers no hand-back either
        await until(lambda: isinstance(app.screen, ChoiceModal), 5, "quit question", pilot=pilot)
        assert isinstance(app.screen, ChoiceModal)
        assert HAND_BACK not in [choice.id for choice in app.screen.choices]
        await pilot.press("c")


async def test_the_mouse_wheel_up_pauses_and_scrolls_one_step(console: ConsoleApp, sims: Simulators) -> None:
    from textual import events

    async with console.run_test(size=SIZE) as pilot:
        await connected(pilot)
        pane = console.query_one(LogPane)
        await fill(pilot, sims)
        await pilot.pause()
        bottom = pane.log_view.scroll_y
        pane.log_view.post_message(events.MouseScrollUp(pane.log_view, 1, 1, 0, -1, 0, False, False, False))
        await until(lambda: pane.paused, 5, "paused by the wheel", pilot=pilot)
        await until(lambda: pane.log_view.scroll_y < bottom, 5, "scrolled up", pilot=pilot)
        # One wheel step is one step of Textual's own handler, not two.
        await pilot.pause(0.3)
        assert bottom - pane.log_view.scroll_y <= 3, (bottom, pane.log_view.scroll_y)
