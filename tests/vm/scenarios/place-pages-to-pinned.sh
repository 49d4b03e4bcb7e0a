#!/bin/sh
# topology: 2node
# timeout: 180
#
# Placement scenario a): a workload first-touches 64 MiB while running on
# node 1 (default mempolicy, so its pages are on node 1), then `taskset`
# pins it to node 0's CPU, an explicit affinity. numatierd must move the
# pages to node 0 and leave the threads where the user put them: at least
# 95% of the pages local within a bounded time, the affinity unchanged,
# `explain` naming the affinity as the reason, and the data intact. The
# known hot pages move first (move_pages), the rest on a later cycle.
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

# Hot pages first: move_pages(2) of the known hot pages, then on a later
# cycle the rest of the process with migrate_pages(2) ([placement]
# move_cold = yes, the default).
grep "placement:" "$NT_DAEMON_LOG"
hot_line=$(grep -n "placement: pid $PID .*: moved [0-9]* hot pages to node 0" "$NT_DAEMON_LOG" | head -n 1 | cut -d: -f1)
rest_line=$(grep -n "placement: pid $PID .*: moved [0-9]* pages to node 0 (the rest" "$NT_DAEMON_LOG" | head -n 1 | cut -d: -f1)
[ -n "$hot_line" ] || fail "the daemon log shows no hot pages moved first"
[ -n "$rest_line" ] || fail "the daemon log shows no move of the rest"
[ "$hot_line" -lt "$rest_line" ] || fail "the rest moved before the hot pages (log lines $rest_line, $hot_line)"

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
