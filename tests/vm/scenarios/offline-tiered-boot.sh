#!/bin/sh
# topology: tiered
# timeout: 150
#
# Offline scenario a2): `numatierctl offline node 2` on boot memory. Node 2
# (CPU-less, 512 MiB) holds its own memmap and whatever the kernel put
# there, so some of its blocks may be unofflinable. A memhog keeps 64 MiB
# on node 2 (placed there, then unbound). The command either
#  - succeeds (exit 0): every block of node 2 offline, the workload's pages
#    all elsewhere, its data intact; or
#  - fails cleanly (exit 7): the job rolled back, every memory block in the
#    state and zone it had before, and the message names each block that
#    failed, with a reason.
# Anything else (another exit code, a block left going-offline, a partial
# rollback) fails the scenario.
# With QEMU's e820 the last 128 KiB below 1.5 GiB are reserved (ACPI), so
# node 2's top block has a hole: the kernel refuses it (EINVAL), and as
# the highest block it is tried first; the job rolls back at once.
. /lib/numatier-vm.sh

start_memhog --mib 64 --bind 2 --unbind --hot-pct 0
PAGES=$(state_get "$MEMHOG_STATE" pages)
[ "$(state_get "$MEMHOG_STATE" node2)" = "$PAGES" ] ||
    fail "setup: memhog has $(state_get "$MEMHOG_STATE" node2) of $PAGES pages on node 2"

start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db" \
    "[offline]" "write_timeout = 10s" "ebusy_retries = 1" "retry_backoff = 1s"
block_states > /tmp/before
echo "node 2 blocks before:"; grep -E "^($(node_blocks 2 | tr '\n' '|' | sed 's/|$//')) " /tmp/before

ctl_run /tmp/a2.json offline node 2 --timeout 120 --json
RC=$?
block_states > /tmp/after
grep -q going-offline /tmp/after && fail "a block is left going-offline: $(grep going-offline /tmp/after)"
ST=$(json_get /tmp/a2.json state) || fail "offline node 2 --json printed no job state (exit $RC)"
MSG=$(json_get /tmp/a2.json message)
json_array /tmp/a2.json blocks block before now result reason > /tmp/blocks
echo "job: $ST: $MSG"; cat /tmp/blocks
numatierctl jobs "$(json_get /tmp/a2.json id)"

case $RC in
0)
    [ "$ST" = succeeded ] || fail "exit 0 but job state '$ST'"
    for b in $(node_blocks 2); do
        s=$(cat /sys/devices/system/memory/memory$b/state)
        [ "$s" = offline ] || fail "exit 0 but block $b of node 2 is $s"
    done
    kill -USR2 "$MEMHOG_PID"; sleep 1
    left=$(state_get "$MEMHOG_STATE" node2)
    [ "${left:-0}" = 0 ] || fail "node 2 is offline yet memhog has $left pages there"
    echo "node 2 offlined: memhog node0=$(state_get "$MEMHOG_STATE" node0) node1=$(state_get "$MEMHOG_STATE" node1)"
    ;;
7)
    [ "$ST" = rolled-back ] || fail "exit 7 but job state '$ST'"
    if ! diff /tmp/before /tmp/after > /tmp/diff; then
        cat /tmp/diff
        fail "not rolled back completely: $(grep '^[-+][0-9]' /tmp/diff | tr '\n' ';')"
    fi
    grep -E '^[0-9]+\|[^|]*\|[^|]*\|(failed|timeout)\|' /tmp/blocks > /tmp/failed
    [ -s /tmp/failed ] || fail "exit 7 but no block of the job failed or timed out"
    # Every block that failed is named in the message, with a reason.
    while IFS='|' read -r b _ _ res why; do
        [ -n "$why" ] || fail "block $b $res with no reason"
        echo "$MSG" | grep -qw "$b" || fail "the message does not name block $b ($res: $why): $MSG"
    done < /tmp/failed
    # No block may be reported in a state other than the one it is in.
    while IFS='|' read -r b _ now _ _; do
        real=$(cat /sys/devices/system/memory/memory$b/state)
        [ "$now" = "$real" ] || fail "job says block $b is '$now', the kernel says '$real'"
    done < /tmp/blocks
    ;;
*)
    fail "offline node 2 exited $RC (expected 0, or 7 with a full rollback)"
    ;;
esac

checksum_ok "$MEMHOG_PID" "$MEMHOG_OUT" || fail "memhog data corrupted: $(cat "$MEMHOG_OUT")"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
