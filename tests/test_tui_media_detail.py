"""The console's message detail shows an attachment's name, size and type — literally (issue 20)."""

from tui.screens.detail import activity_detail

from .factories import activity as make_activity


def test_the_detail_shows_the_files_name_size_and_type_and_no_markup() -> None:
    activity = make_activity(
        preview="File: [b]x[/b].md",
        text="File: [b]x[/b].md\n```\nhello\n```",
        media="[b]x[/b].md, 12 B, text/markdown (text)",
    )
    screen = activity_detail(activity)
    fields = dict(screen.fields)
    assert fields["media"].plain == "[b]x[/b].md, 12 B, text/markdown (text)"  # a Text: never parsed as markup
    assert not fields["media"].spans
    plain = make_activity(preview="hi", model=None, latency=None)
    assert "media" not in dict(activity_detail(plain).fields)
