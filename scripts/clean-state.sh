#!/usr/bin/env bash
# Remove every container of ctr's on every backend, then ctr's state: /var/lib/ctr and
# /run/ctr, or $CTR_ROOT when set. Containers first, so that their cgroups, mounts and
# engine containers go the way `ctr rm -f` removes them, not by deleting files under them.
set -euo pipefail
cd "$(dirname "$0")/.."
ctr=.venv/bin/ctr
ids=$("$ctr" ps -aq 2>/dev/null || true)
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086
  "$ctr" rm -f $ids >/dev/null || echo "clean-state: some containers could not be removed" >&2
fi
if [ -n "${CTR_ROOT:-}" ]; then
  roots=("$CTR_ROOT")
else
  roots=(/var/lib/ctr /run/ctr)
fi
for root in "${roots[@]}"; do
  if mountpoint -q -- "$root" 2>/dev/null || grep -q " ${root}/" /proc/self/mountinfo; then
    echo "clean-state: $root still has mounts under it; not removing it" >&2
    exit 1
  fi
  rm -rf -- "$root"
  echo "removed $root"
done
