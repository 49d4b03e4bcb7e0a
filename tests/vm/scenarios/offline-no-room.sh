#!/bin/sh
# topology: tiered
# timeout: 150
#
# Offline scenario b): not enough room elsewhere. Memhogs bound to node 0
# and node 1 fill them to within ~40 MiB of their size, and a third memhog
# keeps 160 MiB on node 2 (placed there, then unbound, so nothing is bound
# to the node being emptied). Node 2's memory in use cannot fit on nodes
# 0 and 1 above their watermarks, so `numatierctl offline node 2` (or of
# its blocks all but a top one with a reserved range inside, which the plan
# would refuse first as infeasible), with and without --dry-run, refuses:
# exit 6, code insufficient-capacity, a message that states the
# shortfall; and nothing changed: every memory block's
# state and zone, each workload's pages per node (move_pages and
# /proc/PID/numa_maps), no job started, the data intact.
. /lib/numatier-vm.sh

free_mib() { awk '/MemFree/ { print int($4 / 1024) }' /sys/devices/system/node/node"$1"/meminfo; }
MARGIN=40

fill_node() {
    mib=$(( $(free_mib "$1") - MARGIN ))
    [ "$mib" -gt 64 ] || fail "setup: node $1 has only $(free_mib "$1") MiB free"
    start_memhog --mib "$mib" --bind "$1" --hot-pct 0
    echo "node $1: memhog of $mib MiB; $(free_mib "$1") MiB free now"
}
start_memhog --mib 160 --bind 2 --unbind --hot-pct 0
HOGS="$MEMHOG_PID:$MEMHOG_STATE:$MEMHOG_OUT"
[ "$(state_get "$MEMHOG_STATE" node2)" = "$(state_get "$MEMHOG_STATE" pages)" ] ||
    fail "setup: memhog has $(state_get "$MEMHOG_STATE" node2) of $(state_get "$MEMHOG_STATE" pages) pages on node 2"
fill_node 0; HOGS="$HOGS $MEMHOG_PID:$MEMHOG_STATE:$MEMHOG_OUT"
fill_node 1; HOGS="$HOGS $MEMHOG_PID:$MEMHOG_STATE:$MEMHOG_OUT"

start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"

# QEMU reserves the top of low memory, inside node 2's last block, and the
# plan refuses a block with a hole (infeasible) before it weighs room:
# leave that block out, so the refusal is about room.
set -- $(node_blocks 2)
FIRST=$1; shift $(($# - 1)); LAST=$1
HOLED=$(holed_blocks 2)
case "$HOLED" in
"") TARGET="node 2" ;;
"$LAST") TARGET="block $FIRST-$((LAST - 1))" ;;
*) fail "setup: node 2 blocks with holes: $HOLED (expected none, or only the last, $LAST)" ;;
esac
echo "target: $TARGET"

# Everything the command must leave alone, in one file: block states and
# zones, and for each workload its pages per node by move_pages (memhog's
# state file) and by numa_maps (the N<node>= counts of its mappings).
snapshot() {
    block_states
    for h in $HOGS; do
        pid=${h%%:*} st=${h#*:}; st=${st%%:*}
        kill -USR2 "$pid"
    done
    sleep 1
    for h in $HOGS; do
        pid=${h%%:*} st=${h#*:}; st=${st%%:*}
        grep -E '^node[0-9]+=' "$st" | sed "s/^/$pid move_pages /"
        tr ' ' '\n' < /proc/"$pid"/numa_maps | awk -v p="$pid" -F= '/^N[0-9]+=/ { n[$1] += $2 }
            END { for (k in n) print p, "numa_maps", k "=" n[k] }' | sort
    done
}
snapshot > /tmp/before
grep -v '^[0-9]* online' /tmp/before

# check_refused FILE RC WHAT
check_refused() {
    [ "$2" = 6 ] || fail "$3 exited $2, expected 6 (refused)"
    grep -q insufficient-capacity "$1" || fail "$3: the reply does not say insufficient-capacity"
    msg=$(json_get "$1" message) || fail "$3: no message in the reply"
    # The shortfall is stated as an amount (bytes, KiB, MiB or GiB).
    echo "$msg" | grep -Eiq '[0-9]+(\.[0-9]+)? ?(b|bytes|k|kb|kib|m|mb|mib|g|gb|gib)\b' ||
        fail "$3: the message states no amount: $msg"
    echo "$msg" | grep -Eiq 'short|lack|missing|more|exceed|only|need' ||
        fail "$3: the message does not state a shortfall: $msg"
    echo "$3 refused: $msg"
}

ctl_run /tmp/dry.json offline $TARGET --dry-run --json
check_refused /tmp/dry.json $? "offline $TARGET --dry-run"
ctl_run /tmp/b.json offline $TARGET --timeout 60 --json
check_refused /tmp/b.json $? "offline $TARGET"
# The human form says the same.
ctl_run /tmp/b.txt offline $TARGET
[ $? = 6 ] || fail "offline $TARGET (text) did not exit 6"

sleep 2     # would-be background work gets a chance to show
snapshot > /tmp/after
if ! diff /tmp/before /tmp/after > /tmp/diff; then
    cat /tmp/diff
    fail "something changed: $(grep '^[-+][0-9]' /tmp/diff | head -n 4 | tr '\n' ';')"
fi
ctl_run /tmp/jobs.json jobs --json || fail "jobs --json failed"
grep -q '"id":' /tmp/jobs.json && fail "a refused plan left a job behind"

for h in $HOGS; do
    pid=${h%%:*} out=${h##*:}
    checksum_ok "$pid" "$out" || fail "memhog $pid data corrupted: $(cat "$out")"
done
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
