#!/bin/sh
# topology: 2node
# timeout: 180
#
# Placement scenario a): a workload first-touches 64 MiB while running on
# node 1 (default mempolicy, so its pages are on node 1), then `taskset`
# pins it to node 0's CPU, an explicit affinity. numatierd must move the
# pages to node 0 and leave the threads where the user put them: at least
# 95% of the pages local within a bounded time, the affinity unchanged,
# `explain` naming the affinity as the reason, and the data intact.
#
# Under TCG a remote access costs no more than a local one while moving a
# page costs ~45 us, and DAMON's access counts are lower bounds; so the
# scenario states the remote penalty of a machine where remoteness hurts
# (2 us per access per 10 distance units) for the gain to beat C_mem.
. /lib/numatier-vm.sh

start_memhog --mib 64 --hot-pct 50 --cpu-node 1
PID=$MEMHOG_PID
taskset -p 1 "$PID" >/dev/null || fail "taskset -p 1 $PID failed"
kill -USR2 "$PID"; sleep 0.5
echo "before: node0=$(state_get "$MEMHOG_STATE" node0) node1=$(state_get "$MEMHOG_STATE" node1)"
[ "$(state_get "$MEMHOG_STATE" node1)" -gt 15000 ] || fail "setup: memhog's pages are not on node 1"

start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" \
    "remote_penalty = 2000"

local_enough() {
    kill -USR2 "$PID"; sleep 0.3
    n0=$(state_get "$MEMHOG_STATE" node0); pages=$(state_get "$MEMHOG_STATE" pages)
    [ "${n0:-0}" -ge $((pages * 95 / 100)) ]
}
T0=$(date +%s)
wait_until 90 local_enough || {
    numatierctl explain "$PID"
    numatierctl status; fail "pages not local after 90 s: node0=$(state_get "$MEMHOG_STATE" node0) node1=$(state_get "$MEMHOG_STATE" node1)"
}
echo "95% local after $(( $(date +%s) - T0 )) s: node0=$(state_get "$MEMHOG_STATE" node0) node1=$(state_get "$MEMHOG_STATE" node1)"

mask=$(taskset -p "$PID" | sed 's/.*: //')
[ "$mask" = 1 ] || fail "numatierd changed the user's affinity: mask $mask"
numatierctl explain "$PID" | tee /tmp/explain.txt
numatierctl explain "$PID" --json > /tmp/explain.json
grep -q '"threads_pinned": true' /tmp/explain.json || fail "explain does not say the threads are pinned"
grep -q '"last_action": "move-pages"' /tmp/explain.json || fail "explain does not show the page move as the last action"
numatierctl status --json | grep -q '"pages_moved"' || fail "status has no pages_moved counters"

kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
