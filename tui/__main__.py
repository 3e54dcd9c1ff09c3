"""`python -m tui` is `gatewatch` (for a checkout without the installed script)."""

from .cli import main

raise SystemExit(main())
