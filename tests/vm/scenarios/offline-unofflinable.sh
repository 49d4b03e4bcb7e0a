#!/bin/sh
# topology: hotplug
# append: memhp_default_state=offline
# timeout: 180
#
# Offline scenario c): blocks that cannot be offlined. A 512 MiB DIMM is
# hot-added on node 2 as blocks K < M1 < M2 < M3, onlined one at a time so
# each workload lands where it should:
#   K   online_kernel (ZONE_NORMAL); a pinhog long-term pins 4 MiB there
#       (io_uring registered buffer: FOLL_LONGTERM, never migratable);
#   M1  online_movable; a second pinhog holds 4 MiB of it in an unread pipe
#       (vmsplice: a page reference that makes every migration fail);
#   M2, M3  online_movable; a memhog puts 96 MiB on node 2.
# Each offline write may take [offline] write_timeout = 5 s.
#  1. `offline node 2`: K is not movable, so it is planned first and its
#     write times out. Exit 7; every block of node 2 is back online in its
#     zone; the job and its message name K and why.
#  2. `offline block M1-M3`: M3 and M2 go first (descending) and are
#     offlined, M1 times out, and M3 and M2 are onlined again, movable.
#     Exit 7; blocks[] says which was rolled back and which failed; every
#     block's state and zone is as before.
# The workloads' data stays intact.
. /lib/numatier-vm.sh

host dimm-add dimm1 512M 2 >/dev/null || fail "host could not add the DIMM"
four_blocks() { [ "$(node_blocks 2 | wc -l)" -ge 4 ]; }
wait_for 20 four_blocks || fail "node 2 has $(node_blocks 2 | wc -l) blocks after the DIMM, expected 4"
set -- $(node_blocks 2)
K=$1 M1=$2 M2=$3 M3=$4

# pinned_in STATE BLOCK: every page of the pinhog is pinned, and in BLOCK.
pinned_in() {
    [ "$(state_get "$1" pinned)" = "$(state_get "$1" pages)" ] &&
        [ "$(state_get "$1" blocks)" = "$2" ]
}

block_set "$K" online_kernel || fail "online_kernel of block $K failed"
start_pinhog --mib 4 --bind 2 --unbind --pin iouring
PIN_K=$PINHOG_PID PIN_K_STATE=$PINHOG_STATE PIN_K_OUT=$PINHOG_OUT
pinned_in "$PIN_K_STATE" "$K" || { cat "$PIN_K_STATE"; fail "setup: io_uring pins are not all in block $K"; }

block_set "$M1" online_movable || fail "online_movable of block $M1 failed"
start_pinhog --mib 4 --bind 2 --unbind --pin vmsplice
PIN_M=$PINHOG_PID PIN_M_STATE=$PINHOG_STATE PIN_M_OUT=$PINHOG_OUT
pinned_in "$PIN_M_STATE" "$M1" || { cat "$PIN_M_STATE"; fail "setup: vmsplice pins are not all in block $M1"; }

block_set "$M2" online_movable && block_set "$M3" online_movable || fail "onlining blocks $M2, $M3 failed"
start_memhog --mib 96 --bind 2 --unbind --hot-pct 10
[ "$(state_get "$MEMHOG_STATE" node2)" = "$(state_get "$MEMHOG_STATE" pages)" ] ||
    fail "setup: memhog has $(state_get "$MEMHOG_STATE" node2) of $(state_get "$MEMHOG_STATE" pages) pages on node 2"
block_states > /tmp/before
grep -E "^($K|$M1|$M2|$M3) " /tmp/before

start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db" \
    "[offline]" "write_timeout = 5s" "ebusy_retries = 1" "retry_backoff = 1s"

# check_rolled_back FILE RC WHAT: exit 7, state rolled-back, every block
# exactly as before, none left going-offline.
check_rolled_back() {
    [ "$2" = 7 ] || fail "$3 exited $2, expected 7 (failed and rolled back)"
    st=$(json_get "$1" state) || fail "$3 --json printed no job state"
    [ "$st" = rolled-back ] || fail "$3: job state '$st', expected rolled-back"
    block_states > /tmp/after
    grep -q going-offline /tmp/after && fail "$3: a block is left going-offline: $(grep going-offline /tmp/after)"
    if ! diff /tmp/before /tmp/after > /tmp/diff; then
        cat /tmp/diff
        fail "$3: block states differ from before: $(grep '^[-+][0-9]' /tmp/diff | tr '\n' ';')"
    fi
}

# failed_block FILE BLOCK WHAT: BLOCK's result is timeout or failed with a
# reason, and the job's message names the block.
failed_block() {
    line=$(json_array "$1" blocks block result reason | grep "^$2|")
    [ -n "$line" ] || fail "$3: block $2 is not in the job's blocks[]"
    res=$(echo "$line" | cut -d'|' -f2) why=$(echo "$line" | cut -d'|' -f3)
    case $res in timeout|failed) ;; *) fail "$3: block $2 has result '$res', expected timeout or failed" ;; esac
    [ -n "$why" ] || fail "$3: block $2 failed with no reason"
    msg=$(json_get "$1" message)
    echo "$msg" | grep -qw "$2" || fail "$3: the message does not name block $2: $msg"
    echo "block $2: $res ($why); message: $msg"
}

# 1. The kernel-zone block with long-term pins.
ctl_run /tmp/c1.json offline node 2 --timeout 90 --json
check_rolled_back /tmp/c1.json $? "offline node 2"
failed_block /tmp/c1.json "$K" "offline node 2"
numatierctl jobs "$(json_get /tmp/c1.json id)"

# 2. Movable blocks, the lowest one held by vmsplice: the two above it are
# offlined first and must be onlined again.
ctl_run /tmp/c2.json offline block "$M1-$M3" --timeout 90 --json
check_rolled_back /tmp/c2.json $? "offline block $M1-$M3"
failed_block /tmp/c2.json "$M1" "offline block $M1-$M3"
for b in "$M2" "$M3"; do
    res=$(json_array /tmp/c2.json blocks block result | sed -n "s/^$b|//p")
    [ "$res" = rolled-back ] || fail "block $b: result '$res', expected rolled-back (offlined, then onlined again)"
done
numatierctl jobs "$(json_get /tmp/c2.json id)"

checksum_ok "$PIN_K" "$PIN_K_OUT" || fail "io_uring pinhog data corrupted: $(cat "$PIN_K_OUT")"
checksum_ok "$PIN_M" "$PIN_M_OUT" || fail "vmsplice pinhog data corrupted: $(cat "$PIN_M_OUT")"
checksum_ok "$MEMHOG_PID" "$MEMHOG_OUT" || fail "memhog data corrupted: $(cat "$MEMHOG_OUT")"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
