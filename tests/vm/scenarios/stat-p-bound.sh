#!/bin/sh
# topology: 2node
# timeout: 90
#
# A workload running on node 0 with its memory bound to node 1 shows up on
# node 1 in `numatierctl stat -p`, with the same numbers as numactl's
# `numastat -p` (rows Huge/Heap/Stack/Private/Total, each node column and
# Total, within 0.01 MB).
. /lib/numatier-vm.sh

MIB=64
start_daemon
start_memhog --mib $MIB --bind 1 --cpu-node 0 --hot-pct 25
pid=$MEMHOG_PID
pages=$(state_get "$MEMHOG_STATE" pages)
on1=$(state_get "$MEMHOG_STATE" node1)
[ "$on1" = "$pages" ] || fail "memhog: only ${on1:-0} of $pages pages on node 1 (move_pages)"
cpus=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/"$pid"/status)
[ "$cpus" = "$(cat /sys/devices/system/node/node0/cpulist)" ] ||
    fail "memhog runs on CPUs '$cpus', not node 0's"

# "row col value" triples from a numastat-style table: the header line
# names the columns ("Node 0" ... "Total"), then rows of numbers.
table() {
    awk '
        /Node [0-9]/ && !ncol {
            for (i = 1; i <= NF; i++) {
                if ($i == "Node") { col[++ncol] = "Node" $(i + 1); i++ }
                else if ($i == "Total") col[++ncol] = "Total"
            }
            next
        }
        ncol && $1 ~ /^(Huge|Heap|Stack|Private|Total)$/ {
            if (NF - 1 != ncol) { print "BADROW " $1; next }
            for (i = 2; i <= NF; i++) print $1, col[i - 1], $i
        }'
}

# Prints the differences; fails (status 1) when there are any.
compare() {
    awk '
        NR == FNR { ref[$1 " " $2] = $3; next }
        { key = $1 " " $2; seen[key] = 1
          if (!(key in ref)) { print "extra " key; bad = 1; next }
          d = $3 - ref[key]; if (d < 0) d = -d
          if (d > 0.01 + 1e-9) { print key ": numatierctl " $3 ", numastat " ref[key]; bad = 1 } }
        END { for (k in ref) if (!(k in seen)) { print "missing " k; bad = 1 }
              exit bad }' "$1" "$2"
}

# The workload allocates nothing after it is ready, but retry a few times
# so that a page fault between the two reads cannot fail the test.
try=0
while :; do
    numastat -p "$pid" > /tmp/ref.txt || fail "numastat -p $pid failed"
    numatierctl stat -p "$pid" > /tmp/got.txt || fail "numatierctl stat -p $pid exited $?"
    table < /tmp/ref.txt > /tmp/ref.tab
    table < /tmp/got.txt > /tmp/got.tab
    [ -s /tmp/got.tab ] || { cat /tmp/got.txt; fail "numatierctl stat -p printed no table"; }
    diffs=$(compare /tmp/ref.tab /tmp/got.tab) && break
    try=$((try + 1))
    if [ $try -ge 3 ]; then
        echo "--- numastat -p $pid"; cat /tmp/ref.txt
        echo "--- numatierctl stat -p $pid"; cat /tmp/got.txt
        fail "tables differ: $(echo "$diffs" | head -n 3 | tr '\n' ';')"
    fi
    sleep 0.5
done
cat /tmp/got.txt

# The bound buffer must be counted on node 1.
priv1=$(awk '$1 == "Private" && $2 == "Node1" { print $3 }' /tmp/got.tab)
[ -n "$priv1" ] || fail "no Private/Node 1 cell in numatierctl stat -p"
awk -v v="$priv1" -v m=$MIB 'BEGIN { exit !(v >= m) }' ||
    fail "numatierctl stat -p shows $priv1 MB Private on node 1, expected >= $MIB"

kill -USR1 "$pid"
wait_for 10 grep -q '^checksum=OK' "$MEMHOG_STATE" || fail "memhog checksum not OK"
pass
