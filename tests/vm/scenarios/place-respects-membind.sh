#!/bin/sh
# topology: 2node
# timeout: 150
#
# Placement scenario e): a workload started under `numactl --membind=1`
# (and pinned to node 0's CPU) is remote by the user's choice: numatierd
# must leave its pages and threads alone, and `explain` must say why.
. /lib/numatier-vm.sh

NT_MEMHOG_N=1
MEMHOG_STATE=/tmp/memhog.bound.state; MEMHOG_OUT=/tmp/memhog.bound.out
numactl --membind=1 memhog --mib 64 --hot-pct 50 --cpu-node 0 --state "$MEMHOG_STATE" \
    > "$MEMHOG_OUT" 2>&1 3>&- &
PID=$!
wait_for 30 test -s "$MEMHOG_STATE" || fail "memhog under numactl did not start: $(cat "$MEMHOG_OUT")"
grep -q "bind:1" /proc/$PID/numa_maps || fail "setup: no bind:1 policy in numa_maps"

start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 1"

explained() { numatierctl explain "$PID" --json > /tmp/explain.json && grep -q '"pages_pinned": true' /tmp/explain.json; }
wait_until 60 explained || { cat /tmp/explain.json; fail "explain never said the pages are pinned"; }
sleep 10      # ten cycles in which a careless daemon would act
numatierctl explain "$PID" | tee /tmp/explain.txt
numatierctl explain "$PID" --json > /tmp/explain.json
grep -q "bind" /tmp/explain.txt || fail "explain does not name the memory binding"
grep -q '"action": "none"' /tmp/explain.json || fail "explain shows an action for a bound process"
kill -USR2 "$PID"; sleep 0.5
n1=$(state_get "$MEMHOG_STATE" node1); pages=$(state_get "$MEMHOG_STATE" pages)
[ "$n1" -ge $((pages * 99 / 100)) ] || fail "pages moved off node 1: node1=$n1 of $pages"
[ "$(taskset -p "$PID" | sed 's/.*: //')" = 1 ] || fail "affinity changed: $(taskset -p "$PID")"
kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
