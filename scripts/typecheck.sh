#!/usr/bin/env bash
# mypy over the library: ctr/ (the spec, state, images, transfer, convert, compare, api)
# and the Backend interface. pyproject.toml maps ctr.backends to backends/ (and cli/,
# native/ likewise), a mapping mypy cannot read from an editable install, so the check
# runs on a tree of symlinks that has the installed package's shape.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.mypy-src
rm -rf "$tree"; mkdir -p "$tree/ctr"
for entry in ctr/*; do ln -s "../../$entry" "$tree/ctr/$(basename "$entry")"; done
for pair in cli:cli backends:backends native:native; do ln -s "../../${pair#*:}" "$tree/ctr/${pair%%:*}"; done
targets=()
for entry in ctr/*; do targets+=("$tree/ctr/$(basename "$entry")"); done
targets+=("$tree/ctr/backends/base.py" "$tree/ctr/backends/__init__.py")
exec "${MYPY:-.venv/bin/mypy}" "${targets[@]}" "$@"
