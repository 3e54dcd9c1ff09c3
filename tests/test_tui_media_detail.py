"""The console's message detail shows an attachment's name, size and type — literally (issue 20)."""

from gateway_core.pipeline import Activity
from tui.screens.detail import activity_detail


def test_the_detail_shows_the_files_name_size_and_type_and_no_markup() -> None:
    activity = Activity(
        at=0.0,
        chat_id="oc_1",
        sender_id="ou_1",
        preview="File: [b]x[/b].md",
        model="alpha",
        latency=0.2,
        outcome="answered",
        text="File: [b]x[/b].md\n```\nhello\n```",
        media="[b]x[/b].md, 12 B, text/markdown (text)",
    )
    screen = activity_detail(activity)
    fields = dict(screen.fields)
    assert fields["media"].plain == "[b]x[/b].md, 12 B, text/markdown (text)"  # a Text: never parsed as markup
    assert not fields["media"].spans
    plain = Activity(at=0.0, chat_id="c", sender_id="s", preview="hi", model=None, latency=None, outcome="answered")
    assert "media" not in dict(activity_detail(plain).fields)
