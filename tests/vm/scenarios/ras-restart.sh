#!/bin/sh
# topology: 2node
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 120
#
# ECC, first part of scenario c): numatierd is killed with SIGKILL after it
# soft-offlined a frame, and started again on the same ledger. The ledger
# is consistent (every event still there, the frame offlined, one attempt),
# the restart does not act on the frame again (re-offline sees it is
# already poisoned), and a further error on that frame changes nothing;
# that error, delivered while the daemon is stopped, is recorded with the
# time it happened (the trace instance's boot clock), not when read.
# Then error counts survive a restart: one error at a second workload's
# frame, SIGKILL, restart, one more error: two within 24 h, offlined.
# (The kill during a storm is ras-storm-kill.)
. /lib/numatier-vm.sh

for f in /sys/devices/system/machinecheck/machinecheck*/check_interval; do echo 1 > "$f"; done
start_memhog --mib 8 --hot-pct 0
pfn=$(state_get "$MEMHOG_STATE" pfn0)
ADDR=$(printf '0x%x' $((pfn * 4096)))
hc() { awk '/HardwareCorrupted/ { print $2 }' /proc/meminfo; }
HC0=$(hc)
inject() { host mce 0 8 0x9c0000000000009f 0 "$ADDR" 0x8c >/dev/null || fail "host mce injection failed"; }
conf() { start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"; }
seen_events() { numatierctl ras --json | awk '/"stats"/ { s = 1 } s && /"events":/ { gsub(/,/, "", $2); print $2; exit }'; }
attempts() { numatierctl ras --json | awk '/"offlined"/ { o = 1 } o && /"attempts":/ { gsub(/,/, "", $2); print $2; exit }'; }
offlined() { numatierctl ras --json | grep -q '"state": "offlined"'; }

conf
inject; sleep 2; inject
wait_until 30 offlined || fail "frame not offlined after two errors: $(numatierctl ras)"
before=$(seen_events)
echo "before the kill: $before events in the ledger, attempts $(attempts), HardwareCorrupted $(hc) kB"

kill -KILL "$NT_DAEMON_PID"; wait "$NT_DAEMON_PID" 2>/dev/null
conf
numatierctl ras | tee /tmp/ras.txt
after=$(seen_events)
[ "$after" -eq "$before" ] || fail "ledger events $before before the kill, $after after"
offlined || fail "the frame is no longer offlined after the restart"
[ "$(attempts)" = 1 ] || fail "the frame was acted on again: $(attempts) attempts"
[ "$(hc)" -eq $((HC0 + 4)) ] || fail "HardwareCorrupted is $(hc) kB, expected $((HC0 + 4))"

# An event keeps the time it happened, not the time it was read: the
# daemon is stopped while the error comes and resumed 4 s later. (The
# guest's date has whole seconds only: t_inject is up to 1 s early.)
grep -q '\[boot\]' /sys/kernel/tracing/instances/numatier/trace_clock ||
    fail "numatierd's trace instance is not on the boot clock: $(cat /sys/kernel/tracing/instances/numatier/trace_clock)"
kill -STOP "$NT_DAEMON_PID"
t_inject=$(date +%s)
inject
sleep 4
kill -CONT "$NT_DAEMON_PID"
wait_until 20 sh -c '[ "$(numatierctl ras --json | awk "/\"stats\"/ { s = 1 } s && /\"events\":/ { gsub(/,/, \"\", \$2); print \$2; exit }")" -gt '"$after"' ]' ||
    fail "the error after the restart was not recorded"
t_event=$(numatierctl ras --json | awk '$1 == "\"time_usec\":" { gsub(/,/, "", $2); if ($2 > m) m = $2 } END { print m }')
late_ms=$(( t_event / 1000 - t_inject * 1000 ))
echo "the event was recorded at injection + ${late_ms} ms (read 4 s later)"
# Up to 1 s from date's rounding, about 1 s from QMP and the kernel's MCE
# poll; the read time would be 4000 or more.
[ "$late_ms" -ge 0 ] && [ "$late_ms" -lt 3000 ] || fail "the event's time is ${late_ms} ms after the injection"
sleep 2
[ "$(attempts)" = 1 ] || fail "a new error on an offlined frame started another attempt"
[ "$(hc)" -eq $((HC0 + 4)) ] || fail "HardwareCorrupted changed again: $(hc) kB"

# ---- error counts across a restart -----------------------------------------
start_memhog --mib 8 --hot-pct 0
pfn2=$(state_get "$MEMHOG_STATE" pfn0)
ADDR2=$(printf '0x%x' $((pfn2 * 4096)))
[ "$pfn2" != "$pfn" ] || fail "both workloads have the same frame"
inject2() { host mce 0 8 0x9c0000000000009f 0 "$ADDR2" 0x8c >/dev/null || fail "host mce injection failed"; }
offlined2() { numatierctl ras | awk '/^Offlined frames:/ { o = 1; next } o && /^$/ { o = 0 } o' |
              grep -q "$(printf '0x%014x' $((ADDR2)))"; }
more_events() { [ "$(seen_events)" -gt "$1" ]; }
n=$(seen_events)
inject2
wait_until 20 more_events "$n" || fail "the first error at $ADDR2 was not recorded"
sleep 2
offlined2 && fail "one error offlined $ADDR2"
kill -KILL "$NT_DAEMON_PID"; wait "$NT_DAEMON_PID" 2>/dev/null
conf
replayed=$(numatierctl ras --json | awk '$1 == "\"replayed\":" { gsub(/,/, "", $2); print $2; exit }')
echo "restarted: $replayed recent event(s) replayed into the error counts"
[ "${replayed:-0}" -ge 1 ] || fail "the restarted daemon replayed no events"
offlined2 && fail "the restart offlined $ADDR2 on one error"
inject2
wait_until 30 offlined2 || fail "two errors at $ADDR2, one before and one after a restart, did not offline it: $(numatierctl ras)"
[ "$(hc)" -eq $((HC0 + 8)) ] || fail "HardwareCorrupted is $(hc) kB, expected $((HC0 + 8))"
numatierctl ras --check | tail -n 1
numatierctl ras --check >/dev/null || fail "the ledger check failed: $(numatierctl ras --check | tail -n 5)"
pass
