# Set-up is idempotent: each step skips what is already done.
PYTHON ?= python3
VENV := .venv
CTR := $(VENV)/bin/ctr
STAMP := $(VENV)/.installed

.PHONY: demo test deps venv services unit bench clean-state

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[all,test]'
	@touch $(STAMP)

venv: deps $(STAMP)

# The main job on the embedded default: native backend, built-in busybox, no daemon, no network.
demo: venv
	$(CTR) backends
	$(CTR) run --rm --memory 64m --pids-limit 50 busybox sh -c '\
	  echo "hostname:    $$(hostname)"; \
	  echo "my pid:      $$$$ (PID 1 of its own pid namespace)"; \
	  echo "processes:"; ps; \
	  echo "network:     $$(ls /sys/class/net | tr "\n" " ")"; \
	  echo "memory max:  $$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"; \
	  echo "pids max:    $$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"; \
	  grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; \
	  echo "root fs:     $$(grep " / / " /proc/self/mountinfo | sed "s/.* - //" | cut -d" " -f1)"'

services: venv
	@scripts/start-dockerd.sh

test: services
	$(VENV)/bin/pytest -q -ra

unit: venv
	$(VENV)/bin/pytest -q tests/unit

bench: services
	$(VENV)/bin/python bench/run.py
