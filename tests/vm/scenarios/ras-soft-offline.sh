#!/bin/sh
# topology: tiered
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 120
#
# ECC scenario a): a workload fills a buffer with a known pattern; two
# corrected memory-read errors are injected through QMP at the physical
# address of its first page (threshold 2 per 24 h). numatierd must
# soft-offline that frame: the ledger says offlined, HardwareCorrupted
# grows by 4 kB, the workload's page now maps another frame, and its data
# is intact. One error alone must not be enough.
. /lib/numatier-vm.sh

# Corrected errors raise no interrupt; make the kernel poll every second.
for f in /sys/devices/system/machinecheck/machinecheck*/check_interval; do
    [ -e "$f" ] || fail "no machinecheck devices (CPU model without MCA?)"
    echo 1 > "$f"
done

start_memhog --mib 8 --hot-pct 0
PID=$MEMHOG_PID
pfn=$(state_get "$MEMHOG_STATE" pfn0)
[ "${pfn:-0}" -gt 0 ] || fail "memhog could not read its frame from pagemap"
ADDR=$(printf '0x%x' $((pfn * 4096)))
hc() { awk '/HardwareCorrupted/ { print $2 }' /proc/meminfo; }
HC0=$(hc)
echo "memhog $PID: first page in frame $pfn (address $ADDR); HardwareCorrupted ${HC0} kB"

# A stand-in rasdaemon (a script's comm is its file name): numatierd must
# notice it, say so, and carry on.
printf '#!/bin/sh\nwhile :; do sleep 1; done\n' > /tmp/rasdaemon && chmod +x /tmp/rasdaemon
/tmp/rasdaemon 3>&- &
FAKE=$!
start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"
numatierctl ras | head -n 3
numatierctl ras --json | grep -q '"coexisting": "rasdaemon"' || fail "the running rasdaemon was not noticed"
grep -q "rasdaemon is running" "$NT_DAEMON_LOG" || fail "no warning about rasdaemon in the log"
kill "$FAKE"

# VAL|EN|MISCV|ADDRV, no UC, memory-read MCACOD; MISC 0x8c: physical, LSB 12.
inject() { host mce 0 8 0x9c0000000000009f 0 "$ADDR" 0x8c >/dev/null || fail "host mce injection failed"; }
# The daemon's event count, from its status line.
seen_events() { numatierctl ras | sed -n 's/^RAS: \([0-9]*\) events.*/\1/p'; }
got_one() { [ "$(seen_events)" -ge 1 ]; }
inject
wait_until 20 got_one || fail "the first error never reached numatierd: $(numatierctl ras)"
sleep 2
numatierctl ras --json | grep -q '"state": "offlined"' && fail "one corrected error offlined the frame (threshold is 2)"
inject
offlined() { numatierctl ras --json | grep -q '"state": "offlined"'; }
wait_until 30 offlined || fail "frame not offlined after two errors: $(numatierctl ras)"
numatierctl ras | tee /tmp/ras.txt
grep -q "$(printf '0x%014x' $((pfn * 4096)))" /tmp/ras.txt || fail "numatierctl ras does not list $ADDR"

HC1=$(hc)
echo "HardwareCorrupted: ${HC0} kB -> ${HC1} kB"
[ "$HC1" -eq $((HC0 + 4)) ] || fail "HardwareCorrupted grew by $((HC1 - HC0)) kB, not 4"
kill -USR2 "$PID"; sleep 0.5
pfn_now=$(state_get "$MEMHOG_STATE" pfn0)
echo "memhog's first page: frame $pfn -> $pfn_now"
[ "$pfn_now" != "$pfn" ] && [ "${pfn_now:-0}" -gt 0 ] || fail "the page still maps frame $pfn (now: $pfn_now)"
kill -USR1 "$PID"
wait_for 10 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
