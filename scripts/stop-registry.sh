#!/bin/sh
# Stop the registry that scripts/start-registry.sh started, and only that one, and
# remove its temp dir (config, data, log).
#
# The pidfile holds pid, start time and the dir; pid and start time must still match
# and the process must be docker-registry before we signal it. SIGTERM, bounded wait,
# SIGKILL after that. Environment: CTR_REGISTRY_PIDFILE as for start-registry.sh;
#   CTR_REGISTRY_STOP_TIMEOUT  seconds to wait after SIGTERM (default 15)
set -eu

PIDFILE=${CTR_REGISTRY_PIDFILE:-/run/ctr-registry.pid}
TIMEOUT=${CTR_REGISTRY_STOP_TIMEOUT:-15}

start_time() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

remove_dir() {
    # Only a dir start-registry.sh made: never whatever a damaged pidfile names.
    case $(basename "${1:-x}") in
        ctr-registry.*) [ -f "$1/config.yml" ] && rm -rf "$1" ;;
    esac
    return 0
}

if [ ! -f "$PIDFILE" ]; then
    echo "stop-registry: no $PIDFILE: no registry started by start-registry.sh; nothing to do"
    exit 0
fi
pid=$(sed -n 1p "$PIDFILE")
started=$(sed -n 2p "$PIDFILE")
dir=$(sed -n 3p "$PIDFILE")
case $pid in
    '' | *[!0-9]*)
        echo "stop-registry: $PIDFILE holds no pid; removing it" >&2
        rm -f "$PIDFILE"
        exit 1
        ;;
esac
if [ ! -d "/proc/$pid" ] || [ "$(start_time "$pid")" != "$started" ]; then
    echo "stop-registry: registry (pid $pid) is gone already; removing $PIDFILE and $dir"
    remove_dir "$dir"
    rm -f "$PIDFILE"
    exit 0
fi
exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
case $exe in
    */docker-registry) ;;
    *)
        echo "stop-registry: pid $pid is $exe, not docker-registry; leaving it alone and removing $PIDFILE" >&2
        rm -f "$PIDFILE"
        exit 1
        ;;
esac

kill -TERM "$pid"
waited=0
while [ -d "/proc/$pid" ] && [ "$(start_time "$pid")" = "$started" ]; do
    if [ "$waited" -ge "$((TIMEOUT * 5))" ]; then
        echo "stop-registry: registry (pid $pid) still runs ${TIMEOUT}s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
    fi
    sleep 0.2
    waited=$((waited + 1))
done
remove_dir "$dir"
rm -f "$PIDFILE"
echo "stop-registry: registry (pid $pid) stopped, $dir removed"
