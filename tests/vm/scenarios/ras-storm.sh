#!/bin/sh
# topology: 2node
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 180
#
# ECC scenario b): a storm of 5,000 corrected errors (the mce-inject
# module's software path, which delivers each one at once) at one frame of
# a workload. numatierd stays responsive (it answers `status` within 1 s
# throughout: timed by ctlprobe from connect to reply, because starting a
# numatierctl costs 150-300 ms of exec and dynamic linking on this
# emulated CPU while the storm keeps it busy; numatierctl status runs
# alongside and must answer too), its ledger ends up with exactly as many events as
# the kernel delivered (counted by a second tracefs instance of our own; the
# kernel drops some when its record pool is full), and the frame is
# soft-offlined once.
. /lib/numatier-vm.sh

N=5000
modprobe mce-inject || fail "cannot load mce-inject"
# The kernel prints every corrected error to the console at KERN_EMERG; on
# the emulated serial port that took most of the storm's time (about 300
# bytes each). Console level 0 keeps them in the log buffer only; tracefs,
# which is what numatierd reads, is not affected.
echo 0 > /proc/sys/kernel/printk
D=/sys/kernel/debug/mce-inject
T=/sys/kernel/tracing
mkdir $T/instances/count && echo 1 > $T/instances/count/events/mce/mce_record/enable ||
    fail "cannot set up the counting instance"

start_memhog --mib 8 --hot-pct 0
pfn=$(state_get "$MEMHOG_STATE" pfn0)
[ "${pfn:-0}" -gt 0 ] || fail "no frame for memhog's page"
start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"

# The kernel's poll clears the injected record's registers: set them anew
# for every error, then write the bank to deliver it.
ADDR=$(printf '0x%x' $((pfn * 4096)))
echo sw > $D/flags
inject() {
    echo 0x9c0000000000009f > $D/status
    echo 0x8c > $D/misc
    echo "$ADDR" > $D/addr
    echo 8 > $D/bank
}
(i=0; while [ $i -lt $N ]; do inject; i=$((i + 1)); done; echo done > /tmp/storm.done) 3>&- &
STORM=$!

ctlprobe --cmd status --interval-ms 100 --until /tmp/storm.done > /tmp/probe.txt 3>&- &
PROBE=$!
worst=0; calls=0
while [ ! -e /tmp/storm.done ]; do
    t0=$(now_ms)
    numatierctl -t 5 status > /dev/null || fail "status failed during the storm"
    dt=$(( $(now_ms) - t0 ))
    [ "$dt" -gt "$worst" ] && worst=$dt
    calls=$((calls + 1))
    sleep 1
done
wait "$STORM"
wait "$PROBE" || fail "the daemon did not answer status during the storm: $(tail -n 2 /tmp/probe.txt)"
rounds=$(awk '$1 == "rounds" { print $2 }' /tmp/probe.txt)
slowest=$(awk '$1 == "rounds" { print $4 }' /tmp/probe.txt)
echo "status answered $rounds times during the storm, slowest in ${slowest} ms" \
     "(numatierctl status, exec included: $calls calls, slowest ${worst} ms)"
[ "${rounds:-0}" -ge 10 ] || fail "the storm was too short to measure (${rounds:-0} status requests)"
[ "$slowest" -lt 1000 ] || fail "status took ${slowest} ms during the storm"

delivered=$(grep -c 'mce_record:' $T/instances/count/trace)
ledger_events() { numatierctl ras --json | awk '/"stats"/ { s = 1 } s && /"events":/ { gsub(/,/, "", $2); print $2; exit }'; }
caught_up() { [ "$(ledger_events)" -ge "$delivered" ]; }
wait_until 60 caught_up || fail "the ledger holds $(ledger_events) events, the kernel delivered $delivered"
sleep 2
echo "kernel delivered $delivered, ledger holds $(ledger_events)"
[ "$(ledger_events)" -eq "$delivered" ] || fail "ledger $(ledger_events) != delivered $delivered"
# The kernel drops records when its MCE record pool is full: what counts is
# that the ledger has every one it delivered, and that the storm was real.
[ "$delivered" -ge 1000 ] || fail "only $delivered of $N injections were delivered: no storm"
numatierctl ras | head -n 12
numatierctl ras --json | grep -q '"state": "offlined"' || fail "the frame was not offlined"
attempts=$(numatierctl ras --json | awk '/"offlined"/ { o = 1 } o && /"attempts":/ { gsub(/,/, "", $2); print $2; exit }')
[ "$attempts" = 1 ] || fail "the frame was acted on $attempts times"
pass
