#!/bin/sh
# Stop the dockerd that scripts/start-dockerd.sh started, and only that one.
#
# The pidfile holds the pid and the process start time; both must still match
# (and the process must be dockerd) before we signal it, so a reused pid or an
# engine someone else started is left alone. SIGTERM, then a bounded wait
# (dockerd gives running containers up to 15 s to stop); SIGKILL only after that.
#
# Environment: CTR_DOCKERD_DIR as for start-dockerd.sh;
#   CTR_DOCKERD_STOP_TIMEOUT  seconds to wait after SIGTERM (default 30)
set -eu

TIMEOUT=${CTR_DOCKERD_STOP_TIMEOUT:-30}
if [ -n "${CTR_DOCKERD_DIR:-}" ]; then
    PIDFILE=$CTR_DOCKERD_DIR/dockerd.pid
else
    PIDFILE=/run/ctr-dockerd.pid
fi

start_time() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

if [ ! -f "$PIDFILE" ]; then
    echo "stop-dockerd: no $PIDFILE: no dockerd started by start-dockerd.sh; nothing to do"
    exit 0
fi
pid=$(sed -n 1p "$PIDFILE")
started=$(sed -n 2p "$PIDFILE")
case $pid in
    '' | *[!0-9]*)
        echo "stop-dockerd: $PIDFILE holds no pid; removing it" >&2
        rm -f "$PIDFILE"
        exit 1
        ;;
esac
if [ ! -d "/proc/$pid" ] || [ "$(start_time "$pid")" != "$started" ]; then
    echo "stop-dockerd: dockerd (pid $pid) is gone already; removing $PIDFILE"
    rm -f "$PIDFILE"
    exit 0
fi
exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
case $exe in
    */dockerd) ;;
    *)
        echo "stop-dockerd: pid $pid is $exe, not dockerd; leaving it alone and removing $PIDFILE" >&2
        rm -f "$PIDFILE"
        exit 1
        ;;
esac

kill -TERM "$pid"
waited=0
while [ -d "/proc/$pid" ] && [ "$(start_time "$pid")" = "$started" ]; do
    if [ "$waited" -ge "$TIMEOUT" ]; then
        echo "stop-dockerd: dockerd (pid $pid) still runs ${TIMEOUT}s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
    fi
    sleep 1
    waited=$((waited + 1))
done
rm -f "$PIDFILE"
echo "stop-dockerd: dockerd (pid $pid) stopped"
