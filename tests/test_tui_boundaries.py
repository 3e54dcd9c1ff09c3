"""The gateway core never imports the UI: headless (launchd) must not pay for or depend on Textual.

The runtime half of the import contract (test_import_contract.py reads the source): importing
the modules really loads no Textual.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import gateway_core


def loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """The modules named in `watched` (or below them) that importing `modules` loads, in a fresh interpreter."""
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"watched = {watched!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in watched or m.startswith(tuple(w + '.' for w in watched)))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    imported: list[str] = json.loads(result.stdout)
    return imported


def test_importing_every_gateway_core_module_does_not_import_textual() -> None:
    modules = sorted(info.name for info in pkgutil.walk_packages(gateway_core.__path__, prefix="gateway_core."))
    assert {"gateway_core.gateway", "gateway_core.demo", "gateway_core.__main__"} <= set(modules)
    assert loaded_after_importing(modules, ("textual", "tui")) == []


def test_launchd_and_the_command_line_load_no_textual_until_a_console_opens() -> None:
    """`gatewatch status`, `run --headless`, `profile` and every launchd action stay fast."""
    import launchd

    modules = sorted(info.name for info in pkgutil.walk_packages(launchd.__path__, prefix="launchd."))
    assert loaded_after_importing([*modules, "tui.cli"], ("textual", "tui.app")) == []
