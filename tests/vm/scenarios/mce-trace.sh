#!/bin/sh
# topology: tiered
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 60
#
# A corrected memory-read error injected through QMP arrives as an
# mce:mce_record tracefs event with its address.  Proves the bed's host
# channel and MCE path; needs no daemon.
. /lib/numatier-vm.sh

ADDR=0x50000000
T=/sys/kernel/tracing
[ -d $T/events/mce/mce_record ] || fail "no mce:mce_record tracepoint"
mkdir $T/instances/vmtest || fail "cannot create a tracefs instance"
I=$T/instances/vmtest
echo 1 > $I/events/mce/mce_record/enable || fail "cannot enable mce_record"

# Corrected errors raise no interrupt; make the kernel poll every second.
n=0
for f in /sys/devices/system/machinecheck/machinecheck*/check_interval; do
    [ -e "$f" ] || fail "no machinecheck devices (CPU model without MCA?)"
    echo 1 > "$f"; n=$((n + 1))
done
echo "check_interval=1 on $n CPUs"

# VAL|EN|MISCV|ADDRV, no UC, memory-read MCACOD; MISC 0x8c: physical
# address mode, LSB 12.
host mce 0 8 0x9c0000000000009f 0 $ADDR 0x8c || fail "host mce injection failed"

has_event() { grep -q 'mce_record:' $I/trace; }
wait_for 20 has_event || fail "no mce_record event within 20 s"
grep 'mce_record:' $I/trace
# The tracepoint prints "ADDR: %016Lx"; compare as a number.
addr=$(grep -o 'ADDR: *[0-9a-fA-F]*' $I/trace | head -n 1 | sed 's/ADDR: *//')
[ -n "$addr" ] || fail "mce_record without an ADDR field"
[ $((0x$addr)) -eq $((ADDR)) ] || fail "mce_record addr=0x$addr, expected $ADDR"
echo "mce_record addr=$ADDR"
pass
