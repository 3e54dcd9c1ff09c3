"""The gateway core never imports the UI: headless (launchd) must not pay for or depend on Textual."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import gateway_core


def test_importing_every_gateway_core_module_does_not_import_textual():
    modules = sorted(
        info.name
        for info in pkgutil.walk_packages(gateway_core.__path__, prefix="gateway_core.")
        if info.name != "gateway_core.__main__"  # running it would run the CLI
    )
    assert "gateway_core.gateway" in modules and "gateway_core.demo" in modules
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'tui')))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
