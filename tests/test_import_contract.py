"""The import contract: layers only import downwards — gateway_core ← launchd ← tui.

`gateway_core` (the gateway, what launchd keeps alive) imports nothing of `launchd`, `tui` or
`textual`; `launchd` nothing of `tui` or `textual`; `tui` may import both. Checked on the source
of every module, every import statement in it — also the lazy ones inside functions and the ones
under `if TYPE_CHECKING:` — and `importlib.import_module("…")` with a literal name. (The runtime
side, that importing them really loads no Textual, is test_tui_boundaries.py.)
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "gateway_core": ("launchd", "tui", "textual"),
    "launchd": ("tui", "textual"),
    "tui": (),
}


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(module: str, source: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every module name `source` imports anywhere (top level, functions, TYPE_CHECKING), with its line."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(part for part in [*base, node.module or ""] if part)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((first.value, node.lineno))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("__import__", "import_module")


def upward_imports(module: str, source: str, is_package: bool = False) -> list[Violation]:
    """The imports in `source` that break the layering for `module`'s layer."""
    forbidden = FORBIDDEN.get(module.split(".")[0], ())
    violations: dict[int, Violation] = {}  # one per statement: `from tui.app import x` is one violation
    for name, line in imported_names(module, source, is_package):
        if name.split(".")[0] in forbidden:
            violations.setdefault(line, Violation(module, name, line))
    return list(violations.values())


def every_module() -> list[tuple[str, Path]]:
    modules = []
    for layer in FORBIDDEN:
        for path in sorted((REPOSITORY / layer).rglob("*.py")):
            modules.append((module_name(path), path))
    return modules


def all_violations() -> list[Violation]:
    violations = []
    for module, path in every_module():
        violations += upward_imports(module, path.read_text(), is_package=path.name == "__init__.py")
    return violations


def test_no_layer_imports_upwards() -> None:
    modules = [name for name, _ in every_module()]
    # The scan really covers every layer, entry points and subpackages included.
    assert {
        "gateway_core.__main__",
        "gateway_core.control",
        "gateway_core.sim.feishu_sim",
        "launchd.cli",
        "tui.cli",
        "tui.app",
    } <= set(modules)
    unexpected = [str(v) for v in all_violations()]
    assert unexpected == [], "upward imports (the layers are gateway_core ← launchd ← tui):\n" + "\n".join(unexpected)


@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        # a lazy import inside a function: the kind the old runtime-only guard missed
        ("gateway_core.headless", "def f():\n    from tui.app import run_console\n", "tui.app"),
        ("gateway_core.status", "import textual.app\n", "textual.app"),
        ("gateway_core.control", "if TYPE_CHECKING:\n    from launchd.cli import run\n", "launchd.cli"),
        ("gateway_core.sim.profile", "from ...tui import cli\n", "tui"),
        ("launchd.cli", "def g():\n    import importlib\n    importlib.import_module('tui.app')\n", "tui.app"),
        ("launchd.agents", "from textual import work\n", "textual"),
    ],
)
def test_the_contract_fails_on_an_upward_import(module: str, source: str, imported: str) -> None:
    violations = upward_imports(module, source)
    assert imported in [v.imported for v in violations], violations


def test_the_contract_allows_downward_and_sibling_imports() -> None:
    assert upward_imports("tui.cli", "from gateway_core.config import Home\nfrom launchd.cli import run\n") == []
    assert upward_imports("launchd.cli", "from gateway_core.config import Home\nfrom .agents import install\n") == []
    assert upward_imports("gateway_core.sim.profile", "from ..config import Home\nfrom .background import x\n") == []


def test_the_control_server_does_not_know_the_gateway() -> None:
    """control.py serves any `Controllable`; snapshots and their codec come from snapshots.py.

    Were it to import gateway.py (even lazily or for types), the two would depend on each other
    again: Gateway builds the control server.
    """
    path = REPOSITORY / "gateway_core" / "control.py"
    names = [name for name, _ in imported_names("gateway_core.control", path.read_text())]
    assert "gateway_core.snapshots" in names  # the scan resolves its relative imports
    assert not [name for name in names if name == "gateway_core.gateway" or name.startswith("gateway_core.gateway.")]
