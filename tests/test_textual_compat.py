"""Private Textual API is used in one module only: tui/_textual_compat.py, each use with its reason.

A private name is one Textual itself defines with a leading underscore (a method, a class, an
attribute it assigns). Outside the compat module, the console's code and its tests may neither
read one (`app._driver`), nor override one in a subclass (`def _update_size` in a Log), nor import
a private Textual module (`textual.drivers._writer_thread`). A simple AST check, not a proof: a
name the console also defines for itself on a plain class is its own.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import textual

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "tui" / "_textual_compat.py"
MODULES_NOT_TEXTUAL = {"os", "sys"}  # `os._exit` is not Textual's


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@cache
def textual_private_names() -> frozenset[str]:
    names: set[str] = set()
    for path in Path(textual.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
                names.add(node.attr)
    return frozenset(names)


def checked_files() -> list[Path]:
    """The console's code, and every test that drives Textual or the console."""
    tests = [
        path
        for path in (ROOT / "tests").rglob("*.py")
        if re.search(r"^\s*(from|import) (textual|tui)\b", path.read_text(encoding="utf-8"), re.M)
    ]
    return [path for path in [*(ROOT / "tui").rglob("*.py"), *tests] if path != COMPAT]


def own_plain_names(trees: list[ast.Module]) -> set[str]:
    """Private names defined on our own classes that inherit from nothing (not Textual's, then)."""
    names: set[str] = set()
    for tree in trees:
        for cls in ast.walk(tree):
            if isinstance(cls, ast.ClassDef) and not cls.bases:
                for node in ast.walk(cls):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(node.name):
                        names.add(node.name)
                    elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
                        names.add(node.attr)
    return names


def private_textual_uses(source: str, own: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Each use of a private Textual name in `source`, as 'line: what'."""
    private = textual_private_names() - own
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textual"):
            parts = [*node.module.split("."), *(alias.name for alias in node.names)]  # type: ignore[union-attr]
            if any(_private(part) for part in parts):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("textual") and any(_private(p) for p in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in private:
            if not (isinstance(node.value, ast.Name) and node.value.id in MODULES_NOT_TEXTUAL):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef) and node.bases:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in private:
                    found.append(f"{item.lineno}: def {item.name} (overrides Textual's) in {node.name}")
    return found


def test_private_textual_api_is_used_only_in_the_compat_module() -> None:
    files = checked_files()
    assert ROOT / "tui" / "app.py" in files and ROOT / "tests" / "test_tui_console.py" in files
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in files]
    own = own_plain_names(trees)
    uses = {
        str(path.relative_to(ROOT)): found
        for path in files
        if (found := private_textual_uses(path.read_text(encoding="utf-8"), own))
    }
    assert uses == {}, "private Textual API outside tui/_textual_compat.py (move it there, say why): " + str(uses)


def test_the_check_sees_each_kind_of_private_use() -> None:
    """The check itself: the workarounds that now live in the compat module would each be caught."""
    assert private_textual_uses(COMPAT.read_text(encoding="utf-8"))  # the compat module is full of them
    sample = (
        "from textual.drivers._writer_thread import WriterThread\n"
        "from textual.widgets import Log\n"
        "class Mine(Log):\n"
        "    def _update_size(self, updates, lines):\n"
        "        pass\n"
        "def detach(app):\n"
        "    app._driver._writer_thread = None\n"
        "    os._exit(0)\n"
    )
    found = private_textual_uses(sample)
    assert [line.split(":")[0] for line in found].count("7") == 2, found  # _driver and _writer_thread
    assert any("WriterThread" in line for line in found) and any("def _update_size" in line for line in found)
    assert not any("os._exit" in line for line in found)
