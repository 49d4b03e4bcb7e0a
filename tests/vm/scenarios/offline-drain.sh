#!/bin/sh
# topology: 2node
# timeout: 180
#
# Offline scenario e): `numatierctl drain node 1`.
#  A  a memhog that first-touches 128 MiB on node 1 and runs busy on node
#     1's CPU with no explicit affinity (a busy loop pinned to CPU 0 keeps
#     the scheduler from moving it);
#  B  a memhog of 16 MiB on node 1 that the user pinned to node 1's CPU.
# 1. `drain node 1` succeeds: every thread of A is allowed only node 0's
#    CPUs and runs there; B keeps the user's affinity (the job says a
#    process kept its own); no page of A or B is left on node 1.
# 2. `drain node 1 --force` moves B's threads too.
# Node 1's memory blocks are as before (a drain changes no block), and the
# data of both is intact. Placement watches both all along (remote_penalty
# as in place-pages-to-pinned.sh, so it would act under TCG): B's threads
# stay on node 1, so it wants B's pages there, but a drained node receives
# nothing (offline-drain-placement.sh tests that at length).
. /lib/numatier-vm.sh

CPUS0=$(cat /sys/devices/system/node/node0/cpulist)
CPUS1=$(cat /sys/devices/system/node/node1/cpulist)
taskset -c "$CPUS0" sh -c 'while :; do :; done' 3>&- &
SPIN=$!
start_memhog --mib 16 --hot-pct 0 --cpu-node 1
B=$MEMHOG_PID B_STATE=$MEMHOG_STATE B_OUT=$MEMHOG_OUT
start_memhog --mib 128 --hot-pct 5 --pause-us 0 --touch-node 1 --cpu-node 1 --free
A=$MEMHOG_PID A_STATE=$MEMHOG_STATE A_OUT=$MEMHOG_OUT

# Field 39 of /proc/PID/task/TID/stat: the CPU each thread last ran on
# (counted after the comm's closing parenthesis, where field 3 is $1).
task_cpus() { for t in /proc/"$1"/task/*; do sed 's/.*) //' "$t/stat" | awk '{ print $37 }'; done | sort -u | tr '\n' ' '; }
allowed() { awk '/^Cpus_allowed_list/ { print $2 }' /proc/"$1"/status; }
# on_cpus PID CPULIST: in 10 looks over 2 s, every thread was last seen on
# a CPU of CPULIST (one CPU or a range, as in these topologies).
on_cpus() {
    _set=",$(echo "$2" | tr - ' ' | awk '{ if (NF == 2) for (i = $1; i <= $2; i++) printf "%d,", i; else printf "%d,", $1 }')"
    SEEN=
    for _i in 1 2 3 4 5 6 7 8 9 10; do
        _c=$(task_cpus "$1")
        SEEN="$SEEN$_c"
        for c in $_c; do
            case $_set in *",$c,"*) ;; *) return 1 ;; esac
        done
        sleep 0.2
    done
}
# pages_on PID STATE NODE: pages of the memhog on NODE (move_pages), 0 if none
pages_on() { kill -USR2 "$1"; sleep 0.5; n=$(state_get "$2" "node$3"); echo "${n:-0}"; }
# anon_on PID NODE: numa_maps lines of anonymous memory with pages on NODE
anon_on() { grep ' anon=' /proc/"$1"/numa_maps | grep " N$2="; }

PAGES_A=$(state_get "$A_STATE" pages) PAGES_B=$(state_get "$B_STATE" pages)
[ "$(pages_on "$A" "$A_STATE" 1)" = "$PAGES_A" ] || fail "setup: A's pages are not all on node 1"
[ "$(pages_on "$B" "$B_STATE" 1)" = "$PAGES_B" ] || fail "setup: B's pages are not all on node 1"
[ "$(allowed "$A")" = "$(cat /sys/devices/system/cpu/online)" ] || fail "setup: A has an explicit affinity: $(allowed "$A")"
[ "$(allowed "$B")" = "$CPUS1" ] || fail "setup: B is not pinned to node 1's CPUs: $(allowed "$B")"
# The scheduler may still be settling after the setup's pinned fills.
wait_until 20 on_cpus "$A" "$CPUS1" || fail "setup: A ran on CPUs $SEEN, not only node 1's ($CPUS1)"
echo "before: A on CPUs $SEEN(allowed $(allowed "$A")), B allowed $(allowed "$B"); all pages on node 1"
node_blocks 1 > /tmp/blocks1
NODE1_RE="^($(tr '\n' '|' < /tmp/blocks1 | sed 's/|$//')) "
block_states | grep -E "$NODE1_RE" > /tmp/before1

start_daemon "[procs]" "min_rss = 8M" "include_comm = memhog" "[sampler]" "backend = damon" \
    "[placement]" "hysteresis = 2" "remote_penalty = 2000" "[ras]" "ledger = /tmp/ledger.db"

# check_drained FILE RC WHAT: the job succeeded and is a drain.
check_drained() {
    [ "$2" = 0 ] || fail "$3 exited $2: $(json_get "$1" message)"
    [ "$(json_get "$1" state)" = succeeded ] || fail "$3: job state '$(json_get "$1" state)'"
    [ "$(json_get "$1" op)" = drain ] || fail "$3: the job is a '$(json_get "$1" op)', not a drain"
    numatierctl jobs "$(json_get "$1" id)"
}

# 1. Without --force.
ctl_run /tmp/drain.json drain node 1 --timeout 90 --json
check_drained /tmp/drain.json $? "drain node 1"
[ "$(allowed "$A")" = "$CPUS0" ] ||
    fail "after the drain A may still run on CPUs $(allowed "$A"), expected only node 0's ($CPUS0)"
on_cpus "$A" "$CPUS0" || fail "after the drain A ran on CPUs $SEEN, not only node 0's ($CPUS0)"
[ "$(allowed "$B")" = "$CPUS1" ] || fail "drain without --force changed B's own affinity to $(allowed "$B")"
json_get /tmp/drain.json message | grep -Eq '(^|[^0-9])1 process(es)?(\(es\))? kept' ||
    fail "the job does not say that one process kept its own CPU affinity: $(json_get /tmp/drain.json message)"
for w in "A $A $A_STATE $PAGES_A" "B $B $B_STATE $PAGES_B"; do
    set -- $w
    [ "$(pages_on "$2" "$3" 1)" = 0 ] || fail "$1 still has $(pages_on "$2" "$3" 1) of $4 pages on node 1"
    [ "$(pages_on "$2" "$3" 0)" = "$4" ] || fail "$1 has $(pages_on "$2" "$3" 0) of $4 pages on node 0"
    anon_on "$2" 1 > /tmp/n1 && fail "numa_maps still shows $1's anonymous pages on node 1: $(head -n 2 /tmp/n1)"
done
echo "after the drain: A on CPUs $SEEN(allowed $(allowed "$A")), B allowed $(allowed "$B"); no page on node 1"

# 2. --force moves the user-pinned B as well.
ctl_run /tmp/force.json drain node 1 --force --timeout 90 --json
check_drained /tmp/force.json $? "drain node 1 --force"
[ "$(allowed "$B")" = "$CPUS0" ] || fail "after drain --force B may still run on CPUs $(allowed "$B")"

block_states | grep -E "$NODE1_RE" > /tmp/after1
diff /tmp/before1 /tmp/after1 || fail "node 1's memory blocks changed during the drains"

kill "$SPIN"
checksum_ok "$A" "$A_OUT" || fail "A's data corrupted: $(cat "$A_OUT")"
checksum_ok "$B" "$B_OUT" || fail "B's data corrupted: $(cat "$B_OUT")"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
