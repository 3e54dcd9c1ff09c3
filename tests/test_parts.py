"""Issue 18: an answer cut into parts that each fit Feishu's limits, where a reader would cut it."""

import json

import pytest

from gateway_core.cardkit import card_budget, streaming_card
from gateway_core.feishu_http import reply_uuid
from gateway_core.parts import (
    CARD_JSON_LIMIT,
    TEXT_BODY_LIMIT,
    Budget,
    last_boundary,
    render,
    request_bytes,
    split,
    text_budget,
)

FENCE_LINES = ("```", "~~~")


def small_budget(limit: int = 400) -> Budget:
    """A text reply's request with a small limit: the same measuring, parts of a few lines."""
    return text_budget(limit)


def fences(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.strip().startswith(FENCE_LINES))


def paragraphs(count: int, words: int = 8) -> str:
    return "".join(f"Paragraph {n}: " + " ".join(f"w{n}.{k}" for k in range(words)) + ".\n\n" for n in range(count))


def test_a_short_answer_is_one_part_as_it_is() -> None:
    (part,) = split("Hello, world.", text_budget())
    assert (part.start, part.end, part.text) == (0, 13, "Hello, world.")


def test_the_text_budget_is_the_request_feishu_sees_escapes_included() -> None:
    budget = text_budget()
    tricky = '中文 "quoted" back\\slash\nnew line\ttab'
    body = {
        "content": json.dumps({"text": tricky}, ensure_ascii=False),
        "msg_type": "text",
        "uuid": reply_uuid("om_1", 3),
    }
    # The request as sent, without the reply_in_thread the budget reserves room for.
    assert len(request_bytes(body)) <= budget.overhead + budget.cost(tricky)
    assert budget.cost(tricky) == budget.cost(tricky[:10]) + budget.cost(tricky[10:])  # additive
    assert budget.cost('"') == 4  # \" inside the content, escaped again in the body: \\\"
    assert budget.cost("中") == 3
    assert budget.limit == TEXT_BODY_LIMIT == 150 * 1024


def test_paragraphs_are_cut_between_paragraphs_and_every_part_fits() -> None:
    answer = paragraphs(30)
    budget = small_budget()
    parts = split(answer, budget)
    assert len(parts) > 3
    assert "".join(p.text for p in parts) == answer  # nothing lost, nothing added
    assert [p.start for p in parts[1:]] == [p.end for p in parts[:-1]]
    for part in parts:
        assert budget.fits(part.text)
        assert part.text.startswith("Paragraph ") and part.text.endswith(".\n\n")  # whole paragraphs


def test_a_code_block_that_fits_a_part_is_never_cut_it_starts_the_next_part() -> None:
    code = "```python\n" + "".join(f"x{n} = {n}\n" for n in range(12)) + "```\n\n"
    answer = paragraphs(2) + code + paragraphs(2)
    parts = split(answer, small_budget(480))
    assert len(parts) >= 2
    assert "".join(p.text for p in parts) == answer
    (holder,) = [p for p in parts if "```python" in p.text]
    assert code in holder.text
    assert all(fences(p.text) % 2 == 0 for p in parts)


def test_a_code_block_longer_than_a_part_is_closed_at_each_cut_and_reopened_with_its_language() -> None:
    body = "".join(f"print('line {n}')\n" for n in range(60))
    answer = "Intro.\n\n```python\n" + body + "```\n\nDone.\n"
    budget = small_budget(420)
    parts = split(answer, budget)
    assert len(parts) >= 4
    for part in parts:
        assert budget.fits(part.text)
        assert fences(part.text) % 2 == 0, part.text  # never an unclosed block
    inside = [p for p in parts if "print(" in p.text]
    assert all(p.text.startswith("```python\n") for p in inside[1:])  # reopened with the language
    assert all(p.text.endswith("\n```") for p in inside[:-1])  # closed where it was cut
    # Undo the added fences: the spans are the answer.
    assert "".join(answer[p.start : p.end] for p in parts) == answer
    assert render(answer, parts[2].start, parts[2].end) == parts[2].text


def test_a_line_longer_than_a_part_is_cut_inside_after_a_space() -> None:
    answer = "word " * 400
    budget = small_budget(300)
    parts = split(answer, budget)
    assert len(parts) > 5
    assert "".join(p.text for p in parts) == answer
    assert all(budget.fits(p.text) for p in parts)
    assert all(p.text.endswith(" ") for p in parts)


def test_a_long_chinese_answer_fills_text_parts_by_bytes_not_characters() -> None:
    answer = ("这是一个很长的回答。" * 40 + "\n\n") * 600  # 246,000 characters, ~740 KB as UTF-8
    parts = split(answer, text_budget())
    assert "".join(p.text for p in parts) == answer
    sizes = [text_budget().overhead + text_budget().cost(p.text) for p in parts]
    assert max(sizes) <= TEXT_BODY_LIMIT
    assert min(sizes[:-1]) > TEXT_BODY_LIMIT * 0.9  # parts are full, so they are few
    assert len(parts) == -(-len(answer.encode()) // TEXT_BODY_LIMIT)


def test_a_card_part_fits_the_card_json_limit_with_the_longest_summary() -> None:
    budget = card_budget()
    answer = paragraphs(2000)
    first = split(answer, budget)[0]
    finished = streaming_card(first.text, summary="字" * 60)
    assert len(request_bytes(finished)) <= CARD_JSON_LIMIT
    assert len(request_bytes(streaming_card(answer[: first.end + 200]))) > CARD_JSON_LIMIT * 0.98


def test_parts_already_full_do_not_change_as_the_answer_grows() -> None:
    answer = paragraphs(60)
    budget = small_budget()
    grown = split(answer, budget)
    for cut in range(len(answer) // 3, len(answer), 97):
        early = split(answer[:cut], budget)
        assert early[:-1] == grown[: len(early) - 1]


def test_the_last_boundary_outside_a_code_block_is_where_a_card_can_end_early() -> None:
    answer = "one\n\n```sh\nls\n"
    assert last_boundary(answer, 0, len(answer)) == len("one\n\n")
    assert last_boundary("no newline yet", 0, 14) is None


@pytest.mark.parametrize("limit", [10, 100])
def test_a_budget_too_small_for_any_text_says_so(limit: int) -> None:
    with pytest.raises(ValueError, match="already takes"):
        text_budget(limit)
