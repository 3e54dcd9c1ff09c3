"""Long model answers for the simulated LLM (`LlmSimulator.answer_with`): tests, benchmarks, the demo.

What makes an answer hard to deliver whole: length past Feishu's limits, Chinese (3 bytes a
character), quotes and backslashes (escaped twice inside a text reply's request), and a fenced
code block that must not be cut open.
"""

from __future__ import annotations


def long_answer(total: int = 70_000) -> str:
    """`total` characters: Chinese paragraphs with quotes and backslashes, a code block in the middle."""

    def paragraph(n: int) -> str:
        return f"第{n}段：" + "这是一个很长的回答，" * 10 + f'it says "w{n}" and a back\\slash.\n\n'

    head, n = "", 0
    while len(head) < total // 2:
        head, n = head + paragraph(n), n + 1
    code = "```python\n" + "".join(f"def step_{k}(x):\n    return x + {k}  # 第{k}步\n" for k in range(30)) + "```\n\n"
    tail = ""
    while len(head) + len(code) + len(tail) < total:
        tail, n = tail + paragraph(n), n + 1
    return (head + code + tail)[: total - 1] + "\n"


def words_answer(lines: int, words: int = 10) -> str:
    """Many short words (many streamed chunks), a line break every `words`."""
    return "".join(" ".join(f"w{n}.{k}" for k in range(words)) + "\n" for n in range(lines))
