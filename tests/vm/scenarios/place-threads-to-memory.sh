#!/bin/sh
# topology: 2node
# timeout: 180
#
# Placement scenario b): a workload with free threads (no explicit affinity)
# runs on node 0 while its large hot set (96 MiB) lives on node 1. Moving
# its one thread costs far less than moving its hot pages (C_thread <
# H * C_mem), so numatierd moves the thread to node 1 and no page moves.
# `explain` shows that comparison. (remote_penalty is raised as in
# place-pages-to-pinned.sh: under TCG remoteness itself costs nothing.)
. /lib/numatier-vm.sh

# Something else keeps node 1's CPU busy (at the lowest priority), so the
# scheduler has no reason to move the free memhog there by itself.
taskset -c 1 sh -c 'while :; do :; done' 3>&- &
HOG=$!
renice -n 19 -p "$HOG" >/dev/null
start_memhog --mib 128 --hot-pct 75 --touch-node 1 --cpu-node 0 --free
PID=$MEMHOG_PID
kill -USR2 "$PID"; sleep 0.5
before1=$(state_get "$MEMHOG_STATE" node1)
echo "before: cpu=$(state_get "$MEMHOG_STATE" cpu) node1=$before1 affinity=$(taskset -p "$PID")"
[ "$(state_get "$MEMHOG_STATE" cpu)" = 0 ] || fail "setup: memhog does not run on CPU 0"

start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" \
    "remote_penalty = 1000"

on_node1() { [ "$(taskset -p "$PID" | sed 's/.*: //')" = 2 ]; }
wait_until 90 on_node1 || {
    numatierctl explain "$PID"
    fail "the thread was not moved to node 1's CPU: $(taskset -p "$PID")"
}
sleep 3
kill -USR2 "$PID"; sleep 0.5
after1=$(state_get "$MEMHOG_STATE" node1)
echo "after: cpu=$(state_get "$MEMHOG_STATE" cpu) node1=$after1"
[ "$after1" -ge "$before1" ] || fail "pages left node 1: $before1 -> $after1"
[ "$(state_get "$MEMHOG_STATE" cpu)" = 1 ] || fail "memhog runs on CPU $(state_get "$MEMHOG_STATE" cpu), not 1"

numatierctl explain "$PID" | tee /tmp/explain.txt
numatierctl explain "$PID" --json > /tmp/explain.json
grep -q '"last_action": "move-threads"' /tmp/explain.json || fail "explain does not show the thread move"
# The numbers behind the move, from "last_decision".
last_num() { awk -v k="\"$1\":" '/"last_decision"/ { f = 1 } f && $1 == k { gsub(/,/, "", $2); print $2; exit }' /tmp/explain.json; }
c_thread=$(last_num cost_threads_usec)
c_pages=$(last_num cost_pages_usec)
echo "C_thread $c_thread us, H*C_mem $c_pages us"
awk -v t="$c_thread" -v p="$c_pages" 'BEGIN { exit !(t > 0 && p > t) }' ||
    fail "explain does not show C_thread < H*C_mem ($c_thread vs $c_pages)"
numatierctl status --json > /tmp/status.json
grep -q '"threads_moved": [1-9]' /tmp/status.json || fail "status counts no thread move"

kill "$HOG"
kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
