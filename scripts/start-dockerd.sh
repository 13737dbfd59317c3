#!/bin/sh
# Start the Docker Engine for ctr's docker backend, unless one already answers.
#
# Idempotent: if an engine answers on the socket, nothing happens. Otherwise
# /usr/sbin/dockerd is started in its own session (so it outlives this shell and
# a Ctrl-C in it), its log goes to a file, and we wait (bounded) until the
# socket answers `docker version`. On failure the tail of the log is printed.
#
# Flags, and why (checked on Debian 12, docker.io 20.10, kernel cgroup v1, no systemd):
#   --exec-opt native.cgroupdriver=cgroupfs
#       PID 1 is not systemd (no /run/systemd/system), so the systemd cgroup
#       driver cannot work; cgroupfs puts containers under /sys/fs/cgroup/<ctl>/docker/<id>,
#       which is where ctr's tests read the limits back. Only passed without systemd.
#   --storage-driver overlay2
#       /var/lib/docker lies on ext4 and the kernel lists "overlay" in /proc/filesystems;
#       naming the driver makes dockerd fail loudly instead of falling back to vfs
#       (a full copy per container). Only passed when the kernel has overlay and
#       /var/lib/docker is not itself on overlayfs (as in a container-based CI), where
#       overlay2 cannot work and dockerd's own choice is the better one.
#   iptables stays enabled (the default): `iptables` is iptables-nft here and works,
#   and --network bridge needs the NAT rules dockerd installs.
#   dockerd starts its own containerd (none runs on /run/containerd/containerd.sock).
#
# Environment:
#   CTR_DOCKERD_DIR      put dockerd.log and dockerd.pid in this directory
#                        (default: /var/log/ctr-dockerd.log and /run/ctr-dockerd.pid)
#   CTR_DOCKERD_TIMEOUT  seconds to wait for the engine (default 60)
#   CTR_DOCKERD_SOCK     the socket to check and serve (default /var/run/docker.sock)
#   DOCKERD              the daemon binary (default /usr/sbin/dockerd)
#   DOCKERD_EXTRA_ARGS   more flags for dockerd, split on spaces. A second engine beside the
#                        main one needs its own --data-root, --exec-root, --pidfile and socket;
#                        never give it --bridge none: at start-up that deletes the host's docker0.
set -eu
. "$(dirname "$0")/lib.sh"  # start_time

SOCK=${CTR_DOCKERD_SOCK:-/var/run/docker.sock}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
TIMEOUT=${CTR_DOCKERD_TIMEOUT:-60}
if [ -n "${CTR_DOCKERD_DIR:-}" ]; then
    mkdir -p "$CTR_DOCKERD_DIR"
    LOG=$CTR_DOCKERD_DIR/dockerd.log
    PIDFILE=$CTR_DOCKERD_DIR/dockerd.pid
else
    LOG=/var/log/ctr-dockerd.log
    PIDFILE=/run/ctr-dockerd.pid
fi

die() {
    echo "start-dockerd: $*" >&2
    exit 1
}

# True when an engine answers on the socket (not merely when the socket file exists:
# a dockerd that died leaves it behind).
engine_answers() {
    if command -v docker >/dev/null 2>&1; then
        timeout 5 docker -H "unix://$SOCK" version >/dev/null 2>&1
    else
        timeout 5 curl -fsS --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1
    fi
}

show_log() {
    echo "--- last lines of $LOG ---" >&2
    tail -n 30 "$LOG" >&2 || true
}

if [ -S "$SOCK" ] && engine_answers; then
    echo "start-dockerd: an engine already answers on unix://$SOCK; nothing to do"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root to start dockerd"
[ -x "$DOCKERD" ] || die "$DOCKERD not found: apt-get install docker.io"

if [ -f "$PIDFILE" ]; then
    pid=$(sed -n 1p "$PIDFILE")
    if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(start_time "$pid")" = "$(sed -n 2p "$PIDFILE")" ]; then
        die "dockerd (pid $pid, from $PIDFILE) runs but does not answer on unix://$SOCK; stop it with scripts/stop-dockerd.sh"
    fi
    rm -f "$PIDFILE"  # stale: that dockerd is gone
fi

set -- --host "unix://$SOCK"
if [ ! -d /run/systemd/system ]; then
    set -- "$@" --exec-opt native.cgroupdriver=cgroupfs
fi
data_fs=$(stat -f -c %T /var/lib/docker 2>/dev/null || stat -f -c %T /var/lib)
if grep -qw overlay /proc/filesystems && [ "$data_fs" != overlayfs ]; then
    set -- "$@" --storage-driver overlay2
fi
# shellcheck disable=SC2086  # DOCKERD_EXTRA_ARGS is a list of flags on purpose
set -- "$@" ${DOCKERD_EXTRA_ARGS:-}

mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
echo "=== $(date -u +%FT%TZ) start-dockerd: $DOCKERD $*" >>"$LOG"
# setsid: own session and process group, so signals meant for the caller's terminal
# or job do not reach the engine. Without job control the background child is not a
# group leader, so setsid execs in place and $! is dockerd's pid. bash first closes
# every descriptor above 2 the caller left open: a daemon must not keep them (started
# under `flock LOCK cmd`, dockerd held the lock for as long as it ran).
bash -c 'for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null
exec setsid "$0" "$@"' "$DOCKERD" "$@" </dev/null >>"$LOG" 2>&1 &
pid=$!
printf '%s\n%s\n' "$pid" "$(start_time "$pid")" >"$PIDFILE.tmp"
mv "$PIDFILE.tmp" "$PIDFILE"

waited=0
while ! engine_answers; do
    if [ ! -d "/proc/$pid" ]; then
        rm -f "$PIDFILE"
        show_log
        die "dockerd exited before its socket answered"
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
        show_log
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
        die "dockerd (pid $pid) did not answer on unix://$SOCK within ${TIMEOUT}s; sent it SIGTERM"
    fi
    sleep 1
    waited=$((waited + 1))
done

echo "start-dockerd: dockerd (pid $pid) answers on unix://$SOCK after ${waited}s; log $LOG, pidfile $PIDFILE"
