#!/bin/sh
# Start Debian's docker-registry (distribution v2) on 127.0.0.1:5000 for ctr's image tests.
#
# Idempotent: if something already answers `GET /v2/` there, nothing happens.
# Otherwise the storage goes to a fresh temp dir (mktemp, ctr-registry.XXXXXX)
# holding the config file this script writes, the registry's data and its log;
# the registry runs in its own session; the pidfile holds its pid, start time and
# that dir, so stop-registry.sh stops this process only and removes the dir. We
# wait (bounded) until `curl -s 127.0.0.1:5000/v2/` answers.
#
# The registry listens on loopback only: no auth, no TLS, delete enabled (tests clean up).
#
# Environment:
#   CTR_REGISTRY_ADDR     listen address (default 127.0.0.1:5000; must be loopback)
#   CTR_REGISTRY_PIDFILE  default /run/ctr-registry.pid
#   CTR_REGISTRY_TIMEOUT  seconds to wait for it to answer (default 30)
#   DOCKER_REGISTRY       the binary (default /usr/bin/docker-registry)
set -eu
. "$(dirname "$0")/lib.sh"  # start_time

ADDR=${CTR_REGISTRY_ADDR:-127.0.0.1:5000}
PIDFILE=${CTR_REGISTRY_PIDFILE:-/run/ctr-registry.pid}
TIMEOUT=${CTR_REGISTRY_TIMEOUT:-30}
REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}

die() {
    echo "start-registry: $*" >&2
    exit 1
}

case $ADDR in
    127.*:[0-9]* | localhost:[0-9]* | '[::1]':[0-9]*) ;;
    *) die "CTR_REGISTRY_ADDR=$ADDR: only a loopback address with a port is allowed" ;;
esac

answers() {
    [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$ADDR/v2/" 2>/dev/null)" = 200 ]
}

if answers; then
    echo "start-registry: a registry already answers on http://$ADDR/v2/; nothing to do"
    exit 0
fi
[ -x "$REGISTRY" ] || die "$REGISTRY not found: apt-get install docker-registry"
command -v curl >/dev/null 2>&1 || die "curl not found: apt-get install curl"

if [ -f "$PIDFILE" ]; then
    pid=$(sed -n 1p "$PIDFILE")
    if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(start_time "$pid")" = "$(sed -n 2p "$PIDFILE")" ]; then
        die "registry (pid $pid, from $PIDFILE) runs but does not answer on http://$ADDR/v2/; stop it with scripts/stop-registry.sh"
    fi
    old=$(sed -n 3p "$PIDFILE")
    case $(basename "${old:-x}") in ctr-registry.*) rm -rf "$old" ;; esac
    rm -f "$PIDFILE"  # stale: that registry is gone
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ctr-registry.XXXXXX")
mkdir "$DIR/data"
cat >"$DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
  fields:
    service: ctr-test-registry
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
CONF

mkdir -p "$(dirname "$PIDFILE")"
# setsid: own session, so a Ctrl-C meant for the caller does not reach it. Without job
# control the background child is not a group leader, so setsid execs in place.
setsid "$REGISTRY" serve "$DIR/config.yml" </dev/null >>"$DIR/registry.log" 2>&1 &
pid=$!
printf '%s\n%s\n%s\n' "$pid" "$(start_time "$pid")" "$DIR" >"$PIDFILE.tmp"
mv "$PIDFILE.tmp" "$PIDFILE"

waited=0
while ! answers; do
    if [ ! -d "/proc/$pid" ]; then
        tail -n 20 "$DIR/registry.log" >&2 || true
        rm -f "$PIDFILE"
        rm -rf "$DIR"
        die "the registry exited before http://$ADDR/v2/ answered (port taken?)"
    fi
    if [ "$waited" -ge "$((TIMEOUT * 5))" ]; then
        tail -n 20 "$DIR/registry.log" >&2 || true
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
        rm -rf "$DIR"
        die "the registry (pid $pid) did not answer on http://$ADDR/v2/ within ${TIMEOUT}s; sent it SIGTERM"
    fi
    sleep 0.2
    waited=$((waited + 1))
done
echo "start-registry: registry (pid $pid) answers on http://$ADDR/v2/; storage $DIR, pidfile $PIDFILE"
