#!/usr/bin/env bash
# The main job on the embedded default: the native backend, the built-in busybox image,
# no daemon, no network. First what the container sees, then what the kernel says.
set -euo pipefail
CTR=${CTR:-.venv/bin/ctr}
name="ctr-demo-$$"

echo "== backends on this machine"
$CTR backends

echo
echo "== inside: ctr run --rm --memory 64m --pids-limit 50 busybox ..."
$CTR run --rm --memory 64m --pids-limit 50 busybox sh -c '
  echo "hostname     $(hostname)"
  echo "my pid       $$ (PID 1 of its own pid namespace)"
  echo "processes    $(ps -o pid,comm | tail -n +2 | tr -s " " | tr "\n" ";")"
  echo "network      $(ls /sys/class/net | tr "\n" " ")"
  echo "memory max   $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
  echo "pids max     $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
  echo "root fs      $(grep " / / " /proc/self/mountinfo | sed "s/.* - //" | cut -d" " -f1)"
  grep -E "^(CapEff|NoNewPrivs)" /proc/self/status | tr "\t" " "'

echo
echo "== outside: what the kernel says about a running container (ctr explain)"
trap '$CTR rm -f "$name" >/dev/null 2>&1 || true' EXIT
$CTR run -d --name "$name" --memory 64m --pids-limit 50 busybox sleep 30 >/dev/null
$CTR explain "$name"
