#!/bin/sh
# topology: 2node
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable
# timeout: 45
#
# The kernel facts daemon/ras-trace.c relies on, checked on the real guest
# kernel (the daemon does not read tracefs yet, so this needs no daemon):
# a private instance can be made and its RAS events enabled without
# touching the top-level instance; header_page, header_event and the
# events' fields are exactly the fixtures the unit tests decode with
# (tests/fixtures/tracefs/6.12); an injected corrected MCE lands in the
# instance's per-CPU trace_pipe_raw as one page of binary data (the
# `trace` text showing the values the unit test decodes); a CPU that
# goes offline keeps its per_cpu directory; the instance can be removed.
# The raw page is dumped between @@RAW markers: that dump is the fixture
# tests/fixtures/tracefs/6.12/raw/mce-cpu0.hex.
. /lib/numatier-vm.sh

ADDR=0x50000000
T=/sys/kernel/tracing
I=$T/instances/numatier
[ -d $T/events/mce/mce_record ] || fail "no mce:mce_record tracepoint"
[ -d $I ] && fail "instance numatier exists before the test"
top_enable=$(cat $T/events/mce/mce_record/enable)
mkdir $I || fail "cannot create instance numatier"

# Layout files: the instance has its own copies, equal to the fixtures.
sum() { md5sum | cut -d' ' -f1; }
for f in header_page:a7711118110edd5b32914d3b28c09012 header_event:37b65c61a0caefe8368ace6c42581317; do
    n=${f%%:*}; want=${f#*:}
    [ -r $I/events/$n ] || fail "instance has no events/$n"
    got=$(sum < $I/events/$n)
    [ "$got" = "$want" ] || { cat $I/events/$n; fail "events/$n differs from the fixture ($got)"; }
done
sub=$(cat $I/buffer_subbuf_size_kb 2>/dev/null || echo 4)
[ "$sub" = 4 ] || fail "sub-buffer is $sub KiB, the unit tests assume 4"
# poll() on trace_pipe_raw waits for buffer_percent of the buffer to fill
# (50 by default); ras-trace.c sets 0 to wake on any event.
[ "$(cat $I/buffer_percent)" = 50 ] || fail "buffer_percent default is not 50"
echo 0 > $I/buffer_percent && [ "$(cat $I/buffer_percent)" = 0 ] || fail "cannot set buffer_percent 0"

# Every RAS event the decoder knows: its fields match the fixture's, and
# its id matches the top level's (ids are global, not per instance).
enabled=
for e in mce/mce_record:ced09a2fc6794e1303bbde7d3efa4944 \
         ras/mc_event:7d0b7aef01c4aa760b34d0df9b18f6e6 \
         ras/memory_failure_event:582a52144e244f3f84c3e6c2174fbb90 \
         cxl/cxl_general_media:11c996323a3362035205651ab1473767 \
         cxl/cxl_dram:cad6dcd2940fa90bfeba16be74777cbb; do
    ev=${e%%:*}; want=${e#*:}
    [ -r $I/events/$ev/format ] || { echo "event $ev absent"; continue; }
    got=$(grep 'field:' $I/events/$ev/format | sum)
    [ "$got" = "$want" ] || { cat $I/events/$ev/format; fail "$ev fields differ from the fixture ($got)"; }
    id_i=$(sed -n 's/^ID: //p' $I/events/$ev/format)
    id_t=$(cat $T/events/$ev/id)
    [ "$id_i" = "$id_t" ] || fail "$ev id $id_i in the instance, $id_t at top level"
    echo 1 > $I/events/$ev/enable || fail "cannot enable $ev"
    [ "$(cat $I/events/$ev/enable)" = 1 ] || fail "$ev enable did not stick"
    enabled="$enabled $ev($id_i)"
done
echo "enabled:$enabled"
[ "$(cat $T/events/mce/mce_record/enable)" = "$top_enable" ] || fail "top-level mce_record enable changed"
for c in 0 1; do
    [ -r $I/per_cpu/cpu$c/trace_pipe_raw ] || fail "no per_cpu/cpu$c/trace_pipe_raw"
done

# Corrected errors raise no interrupt: poll every second, then inject
# VAL|EN|MISCV|ADDRV, no UC, memory-read MCACOD; MISC 0x8c on CPU 0 bank 8.
for f in /sys/devices/system/machinecheck/machinecheck*/check_interval; do
    [ -e "$f" ] || fail "no machinecheck devices (CPU model without MCA?)"
    echo 1 > "$f"
done
host mce 0 8 0x9c0000000000009f 0 $ADDR 0x8c || fail "host mce injection failed"
has_event() { grep -q 'mce_record:' $I/trace; }
wait_for 20 has_event || fail "no mce_record in the instance within 20 s"

# The text view (not consuming) shows what the binary record must decode to.
line=$(grep 'mce_record:' $I/trace | head -n 1)
echo "$line"
echo "$line" | grep -q 'MC8: 9c0000000000009f' || fail "trace text lacks bank 8 / status"
echo "$line" | grep -q 'ADDR: 0000000050000000' || fail "trace text lacks ADDR"
echo "$line" | grep -q 'MISC: 000000000000008c' || fail "trace text lacks MISC"
echo "$line" | grep -q 'CPU: 0,' || fail "trace text lacks CPU 0"
[ "$(grep -c 'mce_record:' $T/trace)" = 0 ] || fail "the event leaked into the top-level instance"

# Now consume the binary pages: one read of one sub-buffer per CPU.
pages=0
for c in 0 1; do
    raw=/tmp/raw.cpu$c
    timeout 3 dd if=$I/per_cpu/cpu$c/trace_pipe_raw of=$raw bs=4096 count=1 2>/dev/null
    size=$(wc -c < $raw)
    [ "$size" -eq 0 ] && { echo "cpu$c: no data"; continue; }
    [ "$size" -eq 4096 ] || fail "cpu$c: read returned $size bytes, not one 4096-byte page"
    commit=$(( $(od -An -tu4 -j8 -N4 $raw) & 0x7ffffff ))
    flags=$(od -An -tx4 -j8 -N4 $raw | tr -d ' ')
    echo "cpu$c: page of $size bytes, commit $commit (word 0x$flags)"
    [ "$commit" -gt 0 ] && [ "$commit" -le 4080 ] || fail "cpu$c: commit $commit out of range"
    n=$(( (16 + commit + 15) / 16 * 16 ))
    echo "@@RAW-BEGIN cpu$c"
    head -c $n $raw | hexdump -v -e '16/1 "%02x " "\n"'
    echo "@@RAW-END cpu$c"
    pages=$((pages + 1))
done
[ "$pages" -ge 1 ] || fail "no CPU's trace_pipe_raw held a page"
# The record holds the injected address as a little-endian u64.
hexdump -v -e '1/1 "%02x"' /tmp/raw.cpu0 | grep -q '0000005000000000' || fail "cpu0 page lacks the address bytes"

# CPU hotplug: the per_cpu directory stays while the CPU is offline.
echo 0 > /sys/devices/system/cpu/cpu1/online || fail "cannot offline cpu1"
[ "$(cat /sys/devices/system/cpu/online)" = 0 ] || fail "cpu1 still online"
[ -r $I/per_cpu/cpu1/trace_pipe_raw ] || fail "per_cpu/cpu1 vanished with the CPU"
echo 1 > /sys/devices/system/cpu/cpu1/online || fail "cannot online cpu1"

# Teardown: disable, then the instance can be removed.
for ev in $enabled; do echo 0 > $I/events/${ev%(*}/enable; done
rmdir $I || fail "cannot remove the instance"
[ -d $I ] && fail "instance still there"
pass
