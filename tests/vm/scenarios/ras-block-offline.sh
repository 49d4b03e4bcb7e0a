#!/bin/sh
# topology: hotplug
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable memhp_default_state=offline
# timeout: 180
#
# ECC block escalation with `[ras] block_action = soft` and block_frames 2:
# corrected errors at two frames of one memory block soft-offline each
# frame, and the second one makes numatierd start an offline job for the
# whole block through the offlining machinery: the workload's other pages
# in it are moved out, the block goes offline, the workload's data is
# intact, and the ledger, `numatierctl ras` and the log name the job. A
# third failing frame there starts no second job (one proposal per
# block). The block is hot-added memory onlined movable (node 2 of the
# hotplug guest): boot memory's movable blocks here hold QEMU's reserved
# top of RAM, which the kernel cannot offline.
. /lib/numatier-vm.sh

modprobe mce-inject || fail "cannot load mce-inject"
D=/sys/kernel/debug/mce-inject
T=/sys/kernel/tracing
SYS=/sys/devices/system
BS=$(( 0x$(cat $SYS/memory/block_size_bytes) ))
block_of() { echo $(( $1 * 4096 / BS )); }
state_of() { cat $SYS/memory/memory$1/state; }
node2_blocks() { ls -d $SYS/node/node2/memory[0-9]* 2>/dev/null | sed 's/.*memory//' | sort -n; }
grown() { [ "$(node2_blocks | wc -l)" -ge $(( 512 * 1024 * 1024 / BS )) ]; }

host dimm-add dimm1 512M 2 >/dev/null || fail "host could not add the DIMM"
wait_for 20 grown || fail "the kernel shows no 512 MiB on node 2"
for b in $(node2_blocks); do
    echo online_movable > $SYS/memory/memory$b/state || fail "cannot online block $b movable"
done

# Three frames of the workload in one block of node 2.
start_memhog --bind 2 --unbind --mib 160 --hot-pct 0
PFNS=$(state_get "$MEMHOG_STATE" pfns)
F1=; F2=; F3=; BLOCK=
for p in $PFNS; do
    b=$(block_of "$p")
    [ -e $SYS/node/node2/memory$b ] || continue
    if [ -z "$F1" ]; then F1=$p; BLOCK=$b
    elif [ "$b" = "$BLOCK" ] && [ -z "$F2" ]; then F2=$p
    elif [ "$b" = "$BLOCK" ]; then F3=$p; break
    fi
done
[ -n "$F3" ] || fail "setup: no three frames of memhog in one block of node 2 (frames: $PFNS)"
echo "frames 0x$(printf %x "$F1") 0x$(printf %x "$F2") 0x$(printf %x "$F3") in memory block $BLOCK ($(cat $SYS/memory/memory$BLOCK/valid_zones), $(state_of "$BLOCK"))"

mkdir $T/instances/count && echo 1 > $T/instances/count/events/mce/mce_record/enable ||
    fail "cannot set up the counting instance"
delivered_at() { grep -c "ADDR: $(printf '%016x' $(($1)))" $T/instances/count/trace; }
echo sw > $D/flags
one_error() {
    before=$(delivered_at "$1")
    echo 0x9c0000000000009f > $D/status
    echo 0x8c > $D/misc
    echo "$1" > $D/addr
    echo 8 > $D/bank
    wait_for 10 sh -c "[ \$(grep -c 'ADDR: $(printf '%016x' $(($1)))' $T/instances/count/trace) -gt $before ]" ||
        fail "the kernel did not deliver the error at $1"
}

start_daemon "[procs]" "include_comm = nothing" \
    "[ras]" "ledger = /tmp/ledger.db" "block_action = soft" "block_frames = 2"

A1=$((F1 * 4096)); A2=$((F2 * 4096)); A3=$((F3 * 4096))
one_error "$A1"; one_error "$A1"
wait_for 20 grep -q "frame 0x$(printf %x "$F1"): soft-offline: soft-offlined" "$NT_DAEMON_LOG" ||
    fail "the first frame was not soft-offlined"
grep -q "memory block $BLOCK:" "$NT_DAEMON_LOG" && fail "one failing frame already escalated the block"
one_error "$A2"; one_error "$A2"
started() { grep -q "ras: memory block $BLOCK: offline job [0-9]* started" "$NT_DAEMON_LOG"; }
wait_for 20 started || fail "no offline job for block $BLOCK: $(grep 'memory block' "$NT_DAEMON_LOG")"
JOB=$(sed -n "s/.*ras: memory block $BLOCK: offline job \([0-9]*\) started.*/\1/p" "$NT_DAEMON_LOG" | head -n 1)
grep "memory block $BLOCK" "$NT_DAEMON_LOG"

job_done() {
    numatierctl jobs "$JOB" --json > /tmp/job.json
    s=$(json_get /tmp/job.json state)
    [ "$s" != running ] && [ "$s" != rolling-back ]
}
wait_until 120 job_done || fail "job $JOB still running after 120 s"
numatierctl jobs "$JOB"
[ "$(json_get /tmp/job.json state)" = succeeded ] || fail "job $JOB: $(json_get /tmp/job.json state): $(json_get /tmp/job.json message)"
[ "$(state_of "$BLOCK")" = offline ] || fail "block $BLOCK is $(state_of "$BLOCK") after job $JOB"

# One proposal per block: a third failing frame there starts nothing new.
one_error "$A3"; one_error "$A3"
sleep 2
n=$(grep -c "ras: memory block $BLOCK: offline job" "$NT_DAEMON_LOG")
[ "$n" = 1 ] || fail "$n offline jobs for block $BLOCK"

numatierctl ras | tee /tmp/ras.txt
grep -q "block $BLOCK.*offline job $JOB started" /tmp/ras.txt || fail "numatierctl ras does not show the block's job"
numatierctl ras --check > /dev/null || fail "the ledger check failed: $(numatierctl ras --check | tail -n 5)"

kill -USR1 "$MEMHOG_PID"
wait_for 20 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "data corrupted: $(cat "$MEMHOG_OUT")"
pass
