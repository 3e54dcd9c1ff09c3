"""The text of a console screenshot (Textual's SVG export), one string per terminal row.

For reading what a snapshot shows without a browser, and for the snapshot tests' own checks
that a picture says what it claims:

    .venv/bin/python -m tests.snapshot_text tests/__snapshots__/test_tui_snapshots/NAME.svg
"""

from __future__ import annotations

import html
import re
import sys

# Each run of equally styled characters is one <text> element clipped to its terminal row.
RUN = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" clip-path="url\(#[\w-]+-line-(\d+)\)">([^<]*)</text>'
)
CELL_WIDTH = 12.2  # Textual's export: one character cell is 12.2 units wide, rows start at x = 12.2


def screen_lines(svg: str) -> list[str]:
    rows: dict[int, dict[int, str]] = {}
    for x, row, text in RUN.findall(svg):
        rows.setdefault(int(row), {})[round(float(x) / CELL_WIDTH) - 1] = html.unescape(text).replace("\xa0", " ")
    lines = []
    for row in range(max(rows, default=-1) + 1):
        line = ""
        for column, text in sorted(rows.get(row, {}).items()):
            line = line.ljust(column) + text
        lines.append(line.rstrip())
    return lines


def main(paths: list[str]) -> None:
    for path in paths:
        with open(path, encoding="utf-8") as fp:
            print(f"== {path}")
            print("\n".join(screen_lines(fp.read())))


if __name__ == "__main__":
    main(sys.argv[1:])
