# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing and (re)installs the project when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast check bench docs clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gatewatch demo

# The whole suite, on 4 workers (pytest-xdist): most tests wait on sockets and child processes,
# not on the CPU, so 4 overlap well even on 2 cores. Lint and types first: they take seconds.
test: check
	$(VENV)/bin/python -m pytest -n 4

# Minus the tests marked slow or process (real child processes): a quick loop while editing.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -n 4 -m "not slow and not process"

check: $(STAMP)
	$(VENV)/bin/ruff check gateway_core tui launchd tests bench
	$(VENV)/bin/ruff format --check gateway_core tui launchd tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/throughput.py

# docs/configuration.md is generated from the settings' declarations (a test fails when it drifts).
docs: $(STAMP)
	$(VENV)/bin/python -m gateway_core.config.reference --write

clean:
	rm -rf $(VENV) build *.egg-info
