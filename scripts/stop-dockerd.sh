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
. "$(dirname "$0")/lib.sh"

TIMEOUT=${CTR_DOCKERD_STOP_TIMEOUT:-30}
if [ -n "${CTR_DOCKERD_DIR:-}" ]; then
    PIDFILE=$CTR_DOCKERD_DIR/dockerd.pid
else
    PIDFILE=/run/ctr-dockerd.pid
fi

if [ ! -f "$PIDFILE" ]; then
    echo "stop-dockerd: no $PIDFILE: no dockerd started by start-dockerd.sh; nothing to do"
    exit 0
fi
status=0
stop_recorded stop-dockerd "$PIDFILE" dockerd "$TIMEOUT" || status=$?
rm -f "$PIDFILE"
exit "$status"
