#!/bin/sh
# topology: 2node
# timeout: 300
#
# A drained node receives nothing from numatierd, though placement runs.
#  W  a memhog whose 96 MiB (75% hot) were first-touched on node 1 and
#     that runs on node 0's CPU with no affinity of its own (a low-priority
#     spinner keeps node 1's CPU busy): placement moves its thread to node
#     1, as in place-threads-to-memory.sh;
#  P  a memhog of 32 MiB on node 1 that the user pinned to node 1's CPU,
#     started once W is there (busy on node 1's CPU before, it would make
#     moving W's thread there look dear: C_thread counts the queueing).
# 1. Placement pins W to node 1's CPU (it wants node 1).
# 2. `drain node 1`: W's thread goes to node 0 (placement's pin is not the
#    user's), P keeps the user's affinity, all their pages leave node 1.
# 3. For 8 s (many cycles past hysteresis 2) W stays allowed only node
#    0's CPU, no page of W or P comes back to node 1, though placement
#    wants P's pages next to P's threads: then `explain P` says node 1 is
#    under maintenance, `explain W` says its affinity is the drain's (not
#    a constraint), and `status` shows "Maintenance: node 1 drained".
# 4. `online node 1` ends the drain: W gets the affinity it had before the
#    drain back, the job says so, the Maintenance line is gone, and now
#    placement does move P's pages back to node 1 -- what the maintenance
#    held back. Both workloads' data are intact.
# remote_penalty as in place-pages-to-pinned.sh: under TCG a remote access
# costs nothing extra, so without it the gain never beats C_mem.
. /lib/numatier-vm.sh

CPUS0=$(cat /sys/devices/system/node/node0/cpulist)
CPUS1=$(cat /sys/devices/system/node/node1/cpulist)
taskset -c "$CPUS1" sh -c 'while :; do :; done' 3>&- &
HOG=$!
renice -n 19 -p "$HOG" >/dev/null
start_memhog --mib 96 --hot-pct 75 --touch-node 1 --cpu-node 0 --free
W=$MEMHOG_PID W_STATE=$MEMHOG_STATE W_OUT=$MEMHOG_OUT

allowed() { awk '/^Cpus_allowed_list/ { print $2 }' /proc/"$1"/status; }
# pages_on PID STATE NODE: the memhog's pages on NODE (move_pages), 0 if none
pages_on() { kill -USR2 "$1"; sleep 0.3; n=$(state_get "$2" "node$3"); echo "${n:-0}"; }
PAGES_W=$(state_get "$W_STATE" pages)
[ "$(pages_on "$W" "$W_STATE" 1)" = "$PAGES_W" ] || fail "setup: W's pages are not all on node 1"
[ "$(allowed "$W")" = "$(cat /sys/devices/system/cpu/online)" ] || fail "setup: W has an affinity: $(allowed "$W")"
[ "$(state_get "$W_STATE" cpu)" = 0 ] || fail "setup: W does not run on CPU 0"

start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" \
    "remote_penalty = 2000" "[ras]" "ledger = /tmp/ledger.db"

# 1. Placement wants node 1 for W.
w_on_node1() { [ "$(allowed "$W")" = "$CPUS1" ]; }
wait_until 90 w_on_node1 || { numatierctl explain "$W"; fail "placement did not move W to node 1: $(allowed "$W")"; }
echo "1. placement pinned W to node 1's CPUs ($(allowed "$W")):"
numatierctl explain "$W"
start_memhog --mib 32 --hot-pct 50 --cpu-node 1
P=$MEMHOG_PID P_STATE=$MEMHOG_STATE P_OUT=$MEMHOG_OUT
PAGES_P=$(state_get "$P_STATE" pages)
[ "$(pages_on "$P" "$P_STATE" 1)" = "$PAGES_P" ] || fail "setup: P's pages are not all on node 1"
[ "$(allowed "$P")" = "$CPUS1" ] || fail "setup: P is not pinned to node 1's CPUs: $(allowed "$P")"
p_watched() { numatierctl explain "$P" --json > /tmp/explainP0.json && [ "$(json_get /tmp/explainP0.json watched)" = true ]; }
wait_until 30 p_watched || fail "numatierd does not watch P: $(cat /tmp/explainP0.json)"

# 2. The drain.
ctl_run /tmp/drain.json drain node 1 --timeout 120 --json || fail "drain node 1 exited $?"
[ "$(json_get /tmp/drain.json state)" = succeeded ] || fail "drain: job state $(json_get /tmp/drain.json state)"
DRAIN_JOB=$(json_get /tmp/drain.json id)
[ "$(allowed "$W")" = "$CPUS0" ] || fail "after the drain W may run on CPUs $(allowed "$W"), not only node 0's"
[ "$(allowed "$P")" = "$CPUS1" ] || fail "the drain changed P's own affinity to $(allowed "$P")"
json_array /tmp/drain.json pins pid threads cpus_before cpus_set > /tmp/pins
grep -q "^$W|[1-9][0-9]*|$CPUS1|$CPUS0\$" /tmp/pins || fail "the drain job does not list W as pinned: $(cat /tmp/pins)"
for w in "W $W $W_STATE $PAGES_W" "P $P $P_STATE $PAGES_P"; do
    set -- $w
    [ "$(pages_on "$2" "$3" 1)" = 0 ] || fail "after the drain $1 still has pages on node 1"
done
echo "2. drained: W allowed $(allowed "$W"), P allowed $(allowed "$P"); no page on node 1"

# 3. Maintenance holds for 8 s from the drain's end, while placement
#    (fresh page locations after the job: a cycle or two) wants P's pages
#    on node 1, next to P's threads.
T_END=$(( $(date +%s) + 8 ))
checks=0
while [ "$(date +%s)" -lt "$T_END" ]; do
    [ "$(allowed "$W")" = "$CPUS0" ] || fail "W's threads were allowed back onto node 1: $(allowed "$W")"
    for w in "W $W $W_STATE" "P $P $P_STATE"; do
        set -- $w
        n=$(pages_on "$2" "$3" 1)
        [ "$n" = 0 ] || { numatierctl explain "$2"; fail "$n pages of $1 came back to node 1 during the drain"; }
    done
    checks=$((checks + 1))
    sleep 0.5
done
echo "3. for 8 s ($checks looks): W allowed $(allowed "$W"), no page of W or P on node 1. Placement's view:"
held_back() {
    numatierctl explain "$P" --json > /tmp/explainP.json
    [ "$(json_get /tmp/explainP.json reason)" = maintenance ]
}
wait_until 20 held_back || { cat /tmp/explainP.json; fail "explain P does not name the maintenance"; }
numatierctl explain "$P" | tee /tmp/explainP.txt
grep -q "node 1 is under maintenance" /tmp/explainP.txt || fail "explain P does not say node 1 is under maintenance"
numatierctl explain "$W" | tee /tmp/explainW.txt
numatierctl explain "$W" --json > /tmp/explainW.json
# W's affinity is the drain's, not the user's: not a constraint.
[ "$(json_get /tmp/explainW.json threads_pinned)" = false ] || fail "explain W counts the drain's pin as the user's"
grep -q "CPU affinity set by drain job $DRAIN_JOB of node 1" /tmp/explainW.txt ||
    fail "explain W does not say the drain set its affinity"
numatierctl plan
wait_for 10 sh -c 'numatierctl status > /tmp/status.txt' || fail "numatierctl status failed"
cat /tmp/status.txt
grep -q "^Maintenance: node 1 drained (job $DRAIN_JOB)" /tmp/status.txt || fail "status shows no maintenance line"
wait_for 10 sh -c 'numatierctl status --json > /tmp/status.json' || fail "numatierctl status --json failed"
json_array /tmp/status.json maintenance node why job | grep -qx "1|drained|$DRAIN_JOB" ||
    fail "status --json has no maintenance entry for node 1"

# 4. `online node 1` ends the drain.
ctl_run /tmp/online.json online node 1 --timeout 60 --json || fail "online node 1 exited $?"
[ "$(json_get /tmp/online.json state)" = succeeded ] || fail "online: job state $(json_get /tmp/online.json state)"
json_get /tmp/online.json message | grep -Eq "^drain of node 1 ended: [1-9][0-9]* thread\(s\) restored" ||
    fail "the online job does not say the drain ended: $(json_get /tmp/online.json message)"
[ "$(allowed "$W")" = "$CPUS1" ] || fail "W's affinity from before the drain ($CPUS1) is not back: $(allowed "$W")"
numatierctl jobs "$DRAIN_JOB" --json > /tmp/drain-after.json
json_array /tmp/drain-after.json pins pid restored | grep -qx "$W|true" || fail "the drain job's pin of W is not restored"
wait_for 10 sh -c 'numatierctl status > /tmp/status2.txt' || fail "numatierctl status failed"
grep -q "^Maintenance:" /tmp/status2.txt && fail "status still shows maintenance: $(grep Maintenance /tmp/status2.txt)"
echo "4. drain ended: W allowed $(allowed "$W") again"
p_back() { [ "$(pages_on "$P" "$P_STATE" 1)" -ge $((PAGES_P * 95 / 100)) ]; }
T0=$(date +%s)
wait_until 90 p_back || { numatierctl explain "$P"; fail "placement did not move P's pages to node 1 after the drain"; }
echo "   placement moved P's pages back to node 1 $(( $(date +%s) - T0 )) s after the drain ended"

kill "$HOG"
checksum_ok "$W" "$W_OUT" || fail "W's data corrupted: $(cat "$W_OUT")"
checksum_ok "$P" "$P_OUT" || fail "P's data corrupted: $(cat "$P_OUT")"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
