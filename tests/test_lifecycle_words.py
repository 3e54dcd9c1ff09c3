"""One truth for a message's life: no state, outcome or reply mode as a bare string literal.

The words live in `gateway_core/states.py` (`MessageState`, `Outcome`, `ReplyMode`,
`DeliveryMode`); everywhere else in `gateway_core/` and `tui/` names them through those enums. The
checker reads every module's syntax tree and reports a literal word where it means a lifecycle
word: compared (`outcome == "answered"`, `state in ("received", …)`), stored (a keyword argument,
an assignment, a default or a return value named state/outcome/mode, a dict key), or quoted in SQL
(`WHERE state = 'dropped'`). "text", "card", "stream" and "command" also mean other things (a
Feishu message type, a CardKit element, an argparse destination), so they count only where the
name beside them says state, outcome or mode.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway_core.states import LEGACY_DROPPED, DeliveryMode, MessageState, Outcome, ReplyMode

REPOSITORY = Path(__file__).resolve().parent.parent
TREES = ("gateway_core", "tui")
ENUM_MODULE = REPOSITORY / "gateway_core" / "states.py"

WORDS = frozenset(
    {*MessageState, *Outcome, *ReplyMode, *DeliveryMode}
    | {LEGACY_DROPPED, "apology"}  # the words schema 3 and its activity rows used
)
AMBIGUOUS = frozenset({"text", "card", "stream", "command"})
NAMED_LIKE_A_WORD = re.compile(r"(^|_)(state|states|outcome|outcomes|mode|modes)$")
SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE)\b")


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    word: str
    how: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line} {self.how} {self.word!r}: name it through gateway_core.states"


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name_of(node.func)
    if isinstance(node, ast.Subscript):
        return _name_of(node.value)
    return ""


def _literals(node: ast.AST | None) -> list[ast.Constant]:
    """The string constants a value is: itself, a collection of nothing but constants, or either
    side of `x if c else y` (a tuple mixing in other values, like a label and its widget, is not)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        if all(isinstance(element, ast.Constant) for element in node.elts):
            return [c for element in node.elts for c in _literals(element)]
        return []
    if isinstance(node, ast.IfExp):
        return _literals(node.body) + _literals(node.orelse)
    return []


def _is_word(value: str, named: str) -> bool:
    if value not in WORDS:
        return False
    return value not in AMBIGUOUS or bool(NAMED_LIKE_A_WORD.search(named.lower()))


def bare_words(source: str, where: str = "<source>") -> list[Finding]:
    """Every lifecycle word written as a bare literal in `source` (see the module text)."""
    findings: list[Finding] = []

    def check(value_node: ast.AST | None, named: str, how: str) -> None:
        for constant in _literals(value_node):
            if _is_word(str(constant.value), named):
                findings.append(Finding(where, constant.lineno, str(constant.value), how))

    tree = ast.parse(source)
    functions: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, operand in enumerate(operands):
                others = " ".join(_name_of(o) for j, o in enumerate(operands) if j != i) or ""
                check(operand, others or "state", "compared with")
        elif isinstance(node, ast.keyword) and node.arg:
            check(node.value, node.arg, "stored as")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                check(node.value, _name_of(target), "stored as")
        elif isinstance(node, ast.AnnAssign):
            check(node.value, _name_of(node.target), "stored as")
        elif isinstance(node, ast.Dict):
            # A table keyed by lifecycle words (two or more of them); one such key is a JSON field.
            keyed = [
                key
                for key in node.keys
                if key is not None and _literals(key) and _is_word(str(_literals(key)[0].value), "")
            ]
            if len(keyed) >= 2:
                for key in keyed:
                    check(key, "", "stored as the key")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append((node, node.name))
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                check(default, "", "a default of")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            for word in WORDS:
                if f"'{word}'" in node.value:
                    findings.append(Finding(where, node.lineno, word, "quoted in SQL"))
    for function, name in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Return):
                check(node.value, name, "returned as")
    return findings


def test_no_lifecycle_word_is_compared_or_stored_as_a_bare_literal_outside_the_enum_module() -> None:
    findings = [
        finding
        for tree in TREES
        for path in sorted((REPOSITORY / tree).rglob("*.py"))
        if path != ENUM_MODULE
        for finding in bare_words(path.read_text(encoding="utf-8"), str(path.relative_to(REPOSITORY)))
    ]
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize(
    "snippet, word",
    [
        ('if outcome == "answered":\n    pass\n', "answered"),
        ('if activity.outcome != "apology":\n    pass\n', "apology"),
        ('done = state in ("answered", "apologised")\n', "answered"),
        ("db.execute(\"DELETE FROM inbox WHERE state IN ('dropped', 'refused')\")\n", "dropped"),
        ("db.execute(\"UPDATE inbox SET state = 'answering' WHERE message_id = ?\", (mid,))\n", "answering"),
        ('row = Activity(at=0.0, outcome="reply failed")\n', "reply failed"),
        ('journal._update(mid, state="ignored")\n', "ignored"),
        ('reply_mode = "card"\n', "card"),
        ('class Rules:\n    reply_mode: str = "stream"\n', "stream"),
        ('def mode(self):\n    return "card" if self.cards else "text"\n', "card"),
        ('STYLES = {"answered_locally": "green", "ignored": "dim"}\n', "answered_locally"),
        ('if record.mode == "text":\n    pass\n', "text"),
    ],
)
def test_the_checker_catches_a_bare_word(snippet: str, word: str) -> None:
    assert word in {finding.word for finding in bare_words(snippet)}


def test_the_checker_leaves_the_other_meanings_of_a_word_alone() -> None:
    other_meanings = (
        'if message_type == "text":\n    pass\n'
        'body = {"msg_type": "text", "content": "{}"}\n'
        'parser.add_subparsers(dest="command")\n'
        'log.info("the answer was received and answered")\n'
        "if outcome == Outcome.ANSWERED:\n    pass\n"
    )
    assert bare_words(other_meanings) == []
