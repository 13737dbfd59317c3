#!/bin/sh
# Stop the registry that scripts/start-registry.sh started, and only that one, and
# remove its temp dir (config, data, log).
#
# The pidfile holds pid, start time and the dir; pid and start time must still match
# and the process must be docker-registry before we signal it. SIGTERM, bounded wait,
# SIGKILL after that. Environment: CTR_REGISTRY_PIDFILE as for start-registry.sh;
#   CTR_REGISTRY_STOP_TIMEOUT  seconds to wait after SIGTERM (default 15)
set -eu
. "$(dirname "$0")/lib.sh"

PIDFILE=${CTR_REGISTRY_PIDFILE:-/run/ctr-registry.pid}
TIMEOUT=${CTR_REGISTRY_STOP_TIMEOUT:-15}

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
dir=$(sed -n 3p "$PIDFILE")
status=0
stop_recorded stop-registry "$PIDFILE" docker-registry "$TIMEOUT" || status=$?
if [ "$status" -eq 0 ]; then
    remove_dir "$dir"
fi
rm -f "$PIDFILE"
exit "$status"
