# Set-up is idempotent: each step skips what is already done.
PYTHON ?= python3
VENV := .venv
CTR := $(VENV)/bin/ctr
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck deps venv services unit bench clean-state

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml setup.py native/ctr-monitor.c
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[all,test]'
	@touch $(STAMP)

venv: deps $(STAMP)

# The main job on the embedded default: native backend, built-in busybox, no daemon, no network.
demo: venv
	@scripts/demo.sh

services: venv
	@scripts/start-dockerd.sh

# Lint first: it takes seconds, the tests minutes.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over ctr/ and the Backend interface; not yet part of `make test` (issue 18: it still
# reports errors in code older than the check).
typecheck: venv
	MYPY=$(VENV)/bin/mypy scripts/typecheck.sh

test: lint services
	$(VENV)/bin/pytest -q -ra

unit: venv
	$(VENV)/bin/pytest -q tests/unit

# Every container of ctr's removed (on every backend), then its state root: the default
# /var/lib/ctr and /run/ctr, or CTR_ROOT. Images and the test cache go with it.
clean-state: venv
	@scripts/clean-state.sh

bench: services
	$(VENV)/bin/python bench/run.py
