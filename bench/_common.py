"""What every benchmark sets up first: `import _common` before anything else in a bench script.

- Loopback only: NO_PROXY is set before any HTTP client exists (httpx and the SDK's requests
  honour proxy variables, and every simulator is on 127.0.0.1).
- The repository on sys.path, so a benchmark runs from a checkout without installing it
  (bench/ itself is on sys.path already: it is the script's directory).
- `percentile`: the one definition every printed figure uses.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1,localhost"

os.environ["NO_PROXY"] = os.environ["no_proxy"] = LOOPBACK
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of all values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
