# Shared by scripts/start-*.sh and stop-*.sh (sourced, POSIX sh): they stop only the
# process a start script started. Its pidfile holds the pid (line 1) and the process's
# start time (line 2), so a reused pid or a daemon someone else started is left alone.

# start_time PID: field 22 of /proc/PID/stat (clock ticks after boot); empty if gone.
start_time() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

# stop_recorded WHO PIDFILE EXE TIMEOUT
#   Stops the process PIDFILE names, if it is still that process (same start time) and
#   runs a program called EXE: SIGTERM, a wait of up to TIMEOUT seconds, then SIGKILL.
#   Returns 0 when it stopped it or it was gone already, 1 when PIDFILE holds no pid or
#   names another program (left alone). Says what it did, prefixed by WHO. Leaves PIDFILE
#   for the caller to remove, after its own tidying up.
stop_recorded() {
    _who=$1 _pidfile=$2 _exe_name=$3 _timeout=$4
    _pid=$(sed -n 1p "$_pidfile")
    _started=$(sed -n 2p "$_pidfile")
    case $_pid in
        '' | *[!0-9]*)
            echo "$_who: $_pidfile holds no pid" >&2
            return 1
            ;;
    esac
    if [ ! -d "/proc/$_pid" ] || [ "$(start_time "$_pid")" != "$_started" ]; then
        echo "$_who: $_exe_name (pid $_pid) is gone already"
        return 0
    fi
    _exe=$(readlink "/proc/$_pid/exe" 2>/dev/null || true)
    case $_exe in
        */"$_exe_name") ;;
        *)
            echo "$_who: pid $_pid is $_exe, not $_exe_name; leaving it alone" >&2
            return 1
            ;;
    esac
    kill -TERM "$_pid"
    _waited=0  # in fifths of a second
    while [ -d "/proc/$_pid" ] && [ "$(start_time "$_pid")" = "$_started" ]; do
        if [ "$_waited" -ge "$((_timeout * 5))" ]; then
            echo "$_who: $_exe_name (pid $_pid) still runs ${_timeout}s after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$_pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
        _waited=$((_waited + 1))
    done
    echo "$_who: $_exe_name (pid $_pid) stopped"
}
