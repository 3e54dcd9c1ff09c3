"""The launchctl simulator (launchctl_sim) and the harness (harness) tests put first on PATH."""
