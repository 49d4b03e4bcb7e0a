#!/bin/sh
# topology: 2node
# timeout: 150
#
# numatierd's DAMON backend through the daemon itself, on a real kernel:
#  - with no idle kdamond slot, `backend = damon` refuses to start and says
#    why;
#  - next to another user's running kdamond, it takes the idle slot, watches
#    one target per selected process, and follows processes as they come and
#    go; the other kdamond is never touched;
#  - SIGTERM: its kdamond is off and /run/numatier/damon.kdamond is gone;
#  - SIGKILL leaves its kdamond running; the next numatierd stops it, says
#    so, and runs its own.
. /lib/numatier-vm.sh

K=/sys/kernel/mm/damon/admin/kdamonds
[ -d $K ] || fail "no $K: kernel without CONFIG_DAMON_SYSFS"
w() { echo "$2" > "$1" 2>/tmp/w.err || fail "echo $2 > $1: $(cat /tmp/w.err)"; }
# DAMON's sysfs takes its lock with trylock and answers EBUSY while the
# daemon's worker holds it: retry reads.
rd() {
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        cat "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    cat "$1"
}
kd_state() { rd $K/$1/state; }
# The sorted pids that kdamond $1 monitors.
kd_targets() {
    T=$K/$1/contexts/0/targets
    n=$(rd $T/nr_targets)
    i=0
    while [ "$i" -lt "$n" ]; do rd $T/$i/pid_target; i=$((i + 1)); done | sort -n | tr '\n' ' '
}
targets_are() { [ "$(kd_targets 1)" = "$*" ]; }
foreign_kdamond() {
    w $K/0/contexts/nr_contexts 1
    w $K/0/contexts/0/operations vaddr
    w $K/0/contexts/0/targets/nr_targets 1
    w $K/0/contexts/0/targets/0/pid_target "$1"
    w $K/0/state on
    [ "$(kd_state 0)" = on ] || fail "the foreign kdamond 0 did not start"
}
foreign_untouched() {
    [ "$(kd_state 0)" = on ] || fail "$1: the foreign kdamond 0 is $(kd_state 0)"
    [ "$(rd $K/0/pid)" = "$FOREIGN" ] || fail "$1: the foreign kdamond 0 was restarted"
    [ "$(kd_targets 0)" = "$F " ] || fail "$1: the foreign kdamond 0 now watches $(kd_targets 0)"
}
sorted() { for p in "$@"; do echo "$p"; done | sort -n | tr '\n' ' '; }
DAEMON_CONF='[procs] min_rss=8M include_comm=memhog [sampler] backend=damon interval=200ms'
start_ours() {
    start_daemon "[procs]" "min_rss = 8M" "include_comm = memhog" "[sampler]" "backend = damon"
}
stop_ours() {
    kill "-$1" "$NT_DAEMON_PID"
    wait "$NT_DAEMON_PID" 2>/dev/null
}

start_memhog --mib 16 --hot-pct 50
F=$MEMHOG_PID
start_memhog --mib 32 --hot-pct 25
A=$MEMHOG_PID
start_memhog --mib 16 --hot-pct 25
B=$MEMHOG_PID

echo "== another user's kdamond 0 runs, and there is no idle slot"
w $K/nr_kdamonds 1
foreign_kdamond "$F"
FOREIGN=$(rd $K/0/pid)
printf '[daemon]\ncycle_interval = 1s\n[sampler]\nbackend = damon\n' > /tmp/busy.conf
if numatierd --config /tmp/busy.conf --config-dir /tmp/none > /tmp/busy.log 2>&1 3>&-; then
    fail "numatierd started with backend = damon and no kdamond to use"
fi
cat /tmp/busy.log
grep -q "sampler: damon: " /tmp/busy.log || fail "no 'sampler: damon:' reason in: $(cat /tmp/busy.log)"
foreign_untouched "after the refused start"

echo "== an idle slot: numatierd takes kdamond 1 ($DAEMON_CONF)"
w $K/0/state off
w $K/nr_kdamonds 2
foreign_kdamond "$F"
FOREIGN=$(rd $K/0/pid)
start_ours
wait_for 20 targets_are "$(sorted "$F" "$A" "$B")" ||
    fail "kdamond 1 watches '$(kd_targets 1)', not '$(sorted "$F" "$A" "$B")'"
[ "$(kd_state 1)" = on ] || fail "kdamond 1 is $(kd_state 1)"
[ -s /run/numatier/damon.kdamond ] || fail "no /run/numatier/damon.kdamond"
numatierctl status | grep "^Sampler: damon" || fail "status does not say damon: $(numatierctl status)"
foreign_untouched "with numatierd running"

echo "== targets follow processes"
start_memhog --mib 16 --hot-pct 25
C=$MEMHOG_PID
wait_for 20 targets_are "$(sorted "$F" "$A" "$B" "$C")" ||
    fail "new memhog $C not watched: kdamond 1 watches '$(kd_targets 1)'"
kill "$B"; wait "$B" 2>/dev/null
wait_for 20 targets_are "$(sorted "$F" "$A" "$C")" ||
    fail "memhog $B exited but kdamond 1 watches '$(kd_targets 1)'"
[ "$(kd_state 1)" = on ] || fail "kdamond 1 is $(kd_state 1) after a target exited"
foreign_untouched "after targets changed"

echo "== SIGTERM turns our kdamond off and forgets it"
stop_ours TERM
[ "$(kd_state 1)" = off ] || fail "kdamond 1 is $(kd_state 1) after SIGTERM"
[ ! -e /run/numatier/damon.kdamond ] || fail "/run/numatier/damon.kdamond left after SIGTERM"
foreign_untouched "after SIGTERM"

echo "== SIGKILL leaves it running; the next numatierd stops it"
start_ours
wait_for 20 test "$(kd_state 1)" = on || fail "kdamond 1 did not start again"
LEFT=$(rd $K/1/pid)
stop_ours KILL
[ "$(kd_state 1)" = on ] || fail "kdamond 1 stopped by itself after SIGKILL: is the test still meaningful?"
start_ours
grep "left running by a previous numatierd" "$NT_DAEMON_LOG" ||
    fail "the restarted numatierd did not say it stopped kdamond 1 (pid $LEFT)"
grep -q "stopped kdamond 1 (pid $LEFT)" "$NT_DAEMON_LOG" || fail "it stopped something other than pid $LEFT"
wait_for 20 targets_are "$(sorted "$F" "$A" "$C")" || fail "after restart kdamond 1 watches '$(kd_targets 1)'"
[ "$(rd $K/1/pid)" != "$LEFT" ] || fail "kdamond 1 still runs as the stale pid $LEFT"
foreign_untouched "after the crash-restart"
stop_ours TERM
[ "$(kd_state 1)" = off ] || fail "kdamond 1 is $(kd_state 1) after the last SIGTERM"
foreign_untouched "at the end"
pass
