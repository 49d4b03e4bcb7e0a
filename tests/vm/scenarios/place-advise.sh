#!/bin/sh
# topology: 2node
# timeout: 150
#
# Placement scenario f): in advise mode numatierd changes nothing but shows
# the plan. Same setup as scenario a) (pages on node 1, threads pinned to
# node 0): `plan` lists moving the pages to node 0, and they stay put.
# Switching to enforce at run time then carries it out.
#
# Under TCG a remote access costs no more than a local one while moving a
# page costs ~45 us, and DAMON's access counts are lower bounds; so the
# scenario states the remote penalty of a machine where remoteness hurts
# (2 us per access per 10 distance units) for the gain to beat C_mem.
. /lib/numatier-vm.sh

start_memhog --mib 64 --hot-pct 50 --cpu-node 1
PID=$MEMHOG_PID
taskset -p 1 "$PID" >/dev/null || fail "taskset failed"

start_daemon "mode = advise" "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" \
    "remote_penalty = 2000"

planned() { numatierctl plan --json > /tmp/plan.json && grep -q '"action": "move-pages"' /tmp/plan.json; }
wait_until 90 planned || { numatierctl explain "$PID"; fail "plan never showed the page move"; }
numatierctl plan | tee /tmp/plan.txt
grep -q "$PID" /tmp/plan.txt || fail "plan does not name pid $PID"
sleep 10
kill -USR2 "$PID"; sleep 0.5
n1=$(state_get "$MEMHOG_STATE" node1); pages=$(state_get "$MEMHOG_STATE" pages)
[ "$n1" -ge $((pages * 99 / 100)) ] || fail "advise mode moved pages: node1=$n1 of $pages"
numatierctl status --json | grep -q '"threads_moved": 0' || fail "advise mode moved threads"

numatierctl mode enforce | grep -qx enforce || fail "cannot switch to enforce"
local_enough() {
    kill -USR2 "$PID"; sleep 0.3
    [ "$(state_get "$MEMHOG_STATE" node0)" -ge $((pages * 95 / 100)) ]
}
wait_until 90 local_enough || fail "enforce after advise did not move the pages"
kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
