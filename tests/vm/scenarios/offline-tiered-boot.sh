#!/bin/sh
# topology: tiered
# timeout: 150
#
# Offline scenario a2): `numatierctl offline node 2` on boot memory. Node 2
# (CPU-less, 512 MiB) holds its own memmap and whatever the kernel put
# there, so some of its blocks may be unofflinable. A memhog keeps 64 MiB
# on node 2 (placed there, then unbound). The command either
#  - is refused by the plan (exit 6, infeasible): the message names each
#    unofflinable block and why, and nothing changed (block states and
#    zones, the memhog's pages, no job); or
#  - succeeds (exit 0): every block of node 2 offline, the workload's pages
#    all elsewhere, its data intact; or
#  - fails cleanly (exit 7): the job rolled back, every memory block in the
#    state and zone it had before, and the message names each block that
#    failed, with a reason.
# With QEMU's e820 the last 128 KiB below 1.5 GiB are reserved, so node 2's
# top block has a hole, which the kernel refuses to offline (EINVAL). When
# /proc/iomem shows such a hole in a block of node 2, only the refusal will
# do, and it must name that block as not entirely System RAM (`--dry-run`
# is refused the same way). Anything else (another exit code, a block left
# going-offline, a partial rollback) fails the scenario.
. /lib/numatier-vm.sh

start_memhog --mib 64 --bind 2 --unbind --hot-pct 0
PAGES=$(state_get "$MEMHOG_STATE" pages)
[ "$(state_get "$MEMHOG_STATE" node2)" = "$PAGES" ] ||
    fail "setup: memhog has $(state_get "$MEMHOG_STATE" node2) of $PAGES pages on node 2"
HOLED=$(holed_blocks 2)
echo "node 2 blocks with a hole in System RAM: ${HOLED:-none}"

start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db" \
    "[offline]" "write_timeout = 10s" "ebusy_retries = 1" "retry_backoff = 1s"
block_states > /tmp/before
echo "node 2 blocks before:"; grep -E "^($(node_blocks 2 | tr '\n' '|' | sed 's/|$//')) " /tmp/before

if [ -n "$HOLED" ]; then
    ctl_run /tmp/a2-dry.txt offline node 2 --dry-run
    [ $? = 6 ] || fail "offline node 2 --dry-run did not exit 6 although block(s) $HOLED have holes"
    for b in $HOLED; do
        grep -q "refused (infeasible): .*block $b is not entirely System RAM" /tmp/a2-dry.txt ||
            fail "the dry run's refusal does not name block $b as not entirely System RAM"
    done
fi

ctl_run /tmp/a2.json offline node 2 --timeout 120 --json
RC=$?
block_states > /tmp/after
grep -q going-offline /tmp/after && fail "a block is left going-offline: $(grep going-offline /tmp/after)"
[ -n "$HOLED" ] && [ "$RC" != 6 ] && fail "offline node 2 exited $RC, expected 6: block(s) $HOLED have holes"

# check_unchanged: every block's state and zone as before.
check_unchanged() {
    if ! diff /tmp/before /tmp/after > /tmp/diff; then
        cat /tmp/diff
        fail "$1: $(grep '^[-+][0-9]' /tmp/diff | tr '\n' ';')"
    fi
}

if [ "$RC" = 6 ]; then
    grep -q '"code": "infeasible"' /tmp/a2.json || fail "exit 6 but the reply's code is not infeasible"
    MSG=$(json_get /tmp/a2.json message) || fail "exit 6 but no message in the reply"
    echo "refused: $MSG"
    for b in $HOLED; do
        echo "$MSG" | grep -q "block $b is not entirely System RAM (.* 0x[0-9a-f]*-0x[0-9a-f]* inside)" ||
            fail "the message does not name block $b and the range that is not System RAM: $MSG"
    done
    echo "$MSG" | grep -Eq "block [0-9]+ [a-z]" || fail "the message names no block with a reason: $MSG"
    check_unchanged "the refusal changed block states"
    kill -USR2 "$MEMHOG_PID"; sleep 1
    [ "$(state_get "$MEMHOG_STATE" node2)" = "$PAGES" ] ||
        fail "refused, yet memhog has $(state_get "$MEMHOG_STATE" node2) of $PAGES pages left on node 2"
    ctl_run /tmp/jobs.json jobs --json || fail "jobs --json failed"
    grep -q '"id":' /tmp/jobs.json && fail "a refused plan left a job behind"
else
    ST=$(json_get /tmp/a2.json state) || fail "offline node 2 --json printed no job state (exit $RC)"
    MSG=$(json_get /tmp/a2.json message)
    json_array /tmp/a2.json blocks block before now result reason > /tmp/blocks
    echo "job: $ST: $MSG"; cat /tmp/blocks
    numatierctl jobs "$(json_get /tmp/a2.json id)"
fi

case $RC in
6) ;;
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
    check_unchanged "not rolled back completely"
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
    fail "offline node 2 exited $RC (expected 6 refused, 0, or 7 with a full rollback)"
    ;;
esac

checksum_ok "$MEMHOG_PID" "$MEMHOG_OUT" || fail "memhog data corrupted: $(cat "$MEMHOG_OUT")"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
