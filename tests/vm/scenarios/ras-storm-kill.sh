#!/bin/sh
# topology: 2node
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 240
#
# ECC scenario c): numatierd is killed with SIGKILL in the middle of a storm
# of corrected errors (mce-inject's software path, as in ras-storm), after
# it has offlined frames and while events are still coming, and started
# again on the same ledger while the storm goes on. Six workloads, one
# frame each:
#   A1, A2  the storm, before and after the kill: offlined before it;
#   A4      the storm after the restart only: offlined by the new daemon;
#   A3      one error before the storm, one after it: offlined, because
#           the restarted daemon rebuilt its error counts from the ledger;
#   S1, S2  one error each (before the storm, after it): left alone.
# Then: `numatierctl ras --check` passes (SQLite's integrity check and the
# ledger's invariants), exactly those four frames are offline, each with
# exactly one successful soft offline, HardwareCorrupted grew by exactly
# 4 kB per frame, the ledger holds at least the events it had acknowledged
# before the kill and no more than the kernel delivered, and every
# workload's data is intact.
. /lib/numatier-vm.sh

modprobe mce-inject || fail "cannot load mce-inject"
# The kernel prints every corrected error to the console at KERN_EMERG; on
# the emulated serial port that took most of the storm's time (about 300
# bytes each). Console level 0 keeps them in the log buffer only; tracefs,
# which is what numatierd reads, is not affected.
echo 0 > /proc/sys/kernel/printk
D=/sys/kernel/debug/mce-inject
T=/sys/kernel/tracing
# Our own count of what the kernel delivered, with room for the whole storm.
mkdir $T/instances/count && echo 8192 > $T/instances/count/buffer_size_kb &&
    echo 1 > $T/instances/count/events/mce/mce_record/enable || fail "cannot set up the counting instance"
delivered() { grep -c 'mce_record:' $T/instances/count/trace; }
# The tracepoint prints "ADDR: %016Lx".
delivered_at() { grep -c "ADDR: $(printf '%016x' $(($1)))" $T/instances/count/trace; }

# The workloads; NAME=address, PID_NAME, OUT_NAME.
for n in A1 A2 A3 A4 S1 S2; do
    start_memhog --mib 1 --hot-pct 0
    pfn=$(state_get "$MEMHOG_STATE" pfn0)
    [ "${pfn:-0}" -gt 0 ] || fail "no frame for workload $n"
    eval "$n=$(printf '0x%x' $((pfn * 4096))) PID_$n=$MEMHOG_PID OUT_$n=$MEMHOG_OUT"
done
echo "frames: A1 $A1 A2 $A2 A3 $A3 A4 $A4 S1 $S1 S2 $S2"
hc() { awk '/HardwareCorrupted/ { print $2 }' /proc/meminfo; }
HC0=$(hc)

conf() { start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"; }
ras_json() { numatierctl ras --json; }
# The first "KEY": N in the reply: the daemon's counters come first, then
# the ledger's stats, then the check.
json_count() { awk -v k="\"$1\":" '$1 == k { gsub(/,/, "", $2); print $2; exit }'; }
ledger_events() { ras_json | awk '/"stats"/ { s = 1 } s && /"events":/ { gsub(/,/, "", $2); print $2; exit }'; }
offlined_now() { ras_json | json_count offlined; }
# The Offlined frames table of `numatierctl ras`.
offlined_table() { numatierctl ras | awk '/^Offlined frames:/ { o = 1; next } o && /^$/ { o = 0 } o'; }
row_of() { printf '0x%014x' $(($1)); }

# The kernel polls bank registers too: set them anew for every error, then
# write the bank to deliver it.
echo sw > $D/flags
inject_at() {
    echo 0x9c0000000000009f > $D/status
    echo 0x8c > $D/misc
    echo "$1" > $D/addr
    echo 8 > $D/bank
}
# One error, delivered while no storm fills the kernel's record pool.
more_at() { [ "$(delivered_at "$1")" -gt "$2" ]; }
one_error() {
    before=$(delivered_at "$1")
    inject_at "$1"
    wait_for 10 more_at "$1" "$before" || fail "the kernel did not deliver the error at $1"
}
ledger_has() { [ "$(ledger_events)" -ge "$1" ]; }

conf
one_error "$A3"
one_error "$S1"
wait_until 20 ledger_has 2 || fail "the first two errors never reached the ledger"

# The storm: A1 and A2 until the daemon has been killed (at most 20000
# errors), then A1, A2 and A4 for 3000 more.
storm() {
    n=0
    while [ ! -e /tmp/killed ] && [ $n -lt 20000 ]; do
        inject_at "$A1"; inject_at "$A2"
        n=$((n + 2)); echo $n > /tmp/storm.n
    done
    i=0
    while [ $i -lt 3000 ]; do
        inject_at "$A1"; inject_at "$A2"; inject_at "$A4"
        i=$((i + 3))
    done
    echo $((n + i)) > /tmp/storm.done
}
echo 0 > /tmp/storm.n
storm 3>&- &
STORM=$!

# Kill once the daemon has acted and the storm is well under way.
ready() { [ "$(cat /tmp/storm.n)" -ge 1000 ] && [ "$(offlined_now)" -ge 1 ]; }
wait_until 120 ready || fail "no frame offlined during the storm ($(cat /tmp/storm.n) errors injected)"
[ -e /tmp/storm.done ] && fail "the storm ended before the kill"
acked=$(ledger_events)
kill -KILL "$NT_DAEMON_PID"; wait "$NT_DAEMON_PID" 2>/dev/null
touch /tmp/killed
n_kill=$(cat /tmp/storm.n)
[ -e /tmp/storm.done ] && fail "the storm ended before the kill"
echo "killed numatierd after $n_kill storm errors; the ledger had acknowledged $acked events"
cp "$NT_DAEMON_LOG" /tmp/numatierd.1.log
conf
echo "restarted during the storm: $(numatierctl ras | head -n 1)"

wait_until 150 test -e /tmp/storm.done || fail "the storm did not end"
wait "$STORM"
echo "storm over: $(cat /tmp/storm.done) errors injected"
one_error "$A3"
one_error "$S2"

# Caught up: the ledger stops growing (three equal counts, a second apart).
last=-1; same=0; t=0
while [ "$same" -lt 3 ] && [ "$t" -lt 90 ]; do
    sleep 1; t=$((t + 1))
    cur=$(ledger_events)
    if [ "$cur" = "$last" ]; then same=$((same + 1)); else same=0; last=$cur; fi
done
[ "$same" -ge 3 ] || fail "the ledger was still growing after 90 s ($last events)"
after=$last
got=$(delivered)
echo "the kernel delivered $got errors; the ledger holds $after (acknowledged before the kill: $acked;" \
     "read but not yet recorded when killed: $((got - after)))"
cp "$NT_DAEMON_LOG" /tmp/numatierd.2.log
grep -h "under way\|replayed" /tmp/numatierd.2.log

numatierctl ras --check > /tmp/ras.txt; rc=$?
head -n 20 /tmp/ras.txt; tail -n 3 /tmp/ras.txt
[ "$rc" = 0 ] || fail "the ledger check failed: $(sed -n '/^Ledger check/,$p' /tmp/ras.txt | tr '\n' ' ')"
[ "$after" -ge "$acked" ] || fail "the ledger lost acknowledged events: $acked before the kill, $after after"
[ "$after" -le "$got" ] || fail "the ledger holds $after events, more than the $got the kernel delivered"
[ "$(delivered_at "$A4")" -ge 2 ] || fail "the storm after the restart did not reach A4"

offlined_table > /tmp/offlined.txt
for n in A1 A2 A3 A4; do
    eval a=\$$n
    grep -q "$(row_of "$a")" /tmp/offlined.txt || fail "frame $n ($a) is not offlined"
done
for n in S1 S2; do
    eval a=\$$n
    grep -q "$(row_of "$a")" /tmp/offlined.txt && fail "frame $n ($a) had one error and was offlined"
done
numatierctl ras --check --json > /tmp/check.json
frames=$(awk '/"integrity"/ { i = 1 } i' /tmp/check.json | json_count frames_offline)
done_n=$(awk '/"integrity"/ { i = 1 } i' /tmp/check.json | json_count offlines_done)
[ "$frames" = 4 ] || fail "$frames frames offline in the ledger, expected 4"
[ "$done_n" = 4 ] || fail "$done_n successful soft offlines for 4 frames: a frame was acted on twice"
[ "$(hc)" -eq $((HC0 + 16)) ] || fail "HardwareCorrupted grew by $(( $(hc) - HC0 )) kB, expected 16 (4 frames)"

for n in A1 A2 A3 A4 S1 S2; do
    eval pid=\$PID_$n out=\$OUT_$n
    kill -USR1 "$pid"
    wait_for 10 grep -q CHECKSUM "$out" || fail "workload $n did not verify its data"
    grep -q "CHECKSUM OK" "$out" || fail "workload $n: data corrupted: $(cat "$out")"
done
pass
