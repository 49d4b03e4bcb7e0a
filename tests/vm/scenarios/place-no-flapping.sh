#!/bin/sh
# topology: 2node
# timeout: 120
#
# Placement scenario d): a workload whose hot half alternates between node
# 0's memory and node 1's every 3 s, with free threads (so moving them is
# cheap and tempting). With hysteresis 5 (cycles of 1 s) and a 10 s
# cooldown, numatierd may move it at most once per 10 s (3 times in the
# 30 s watched here; typically it moves once or twice); a daemon acting on
# every swing would move it about 10 times.
. /lib/numatier-vm.sh

start_memhog --mib 64 --hot-pct 40 --alternate-sec 3 --free
PID=$MEMHOG_PID
start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[aggregate]" "heat_half_life = 3s" \
    "[placement]" "hysteresis = 5" "cooldown = 10s" "settle = 10s"

sleep 30
kill -USR2 "$PID"; sleep 0.5
echo "memhog switched its hot half $(state_get "$MEMHOG_STATE" switches) times"
[ "$(state_get "$MEMHOG_STATE" switches)" -ge 8 ] || fail "the workload did not alternate"
grep "placement: pid $PID" "$NT_DAEMON_LOG" | tee /tmp/moves.txt
moves=$(grep -c "placement: pid $PID" /tmp/moves.txt)
echo "moves: $moves"
[ "$moves" -le 3 ] || fail "moved $moves times in 30 s: more than hysteresis and cooldown allow"
numatierctl explain "$PID"
kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
