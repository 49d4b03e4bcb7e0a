#!/bin/sh
# topology: tiered
# timeout: 60
#
# numatierctl status shows the emulated tiered machine: 3 nodes, their CPU
# lists, the SLIT distances, and node 2 (no CPUs, farthest) as the slow tier.
. /lib/numatier-vm.sh

start_daemon
out=$(numatierctl status) || fail "numatierctl status exited $?"
echo "$out"

nodes=$(echo "$out" | awk 'NR > 2 && $1 ~ /^[0-9]+$/' | wc -l)
[ "$nodes" -eq 3 ] || fail "expected 3 nodes, status shows $nodes"

# node  tier  cpus  distances
while read -r node tier cpus dist; do
    row=$(echo "$out" | awk -v n="$node" 'NR > 2 && $1 == n')
    [ -n "$row" ] || fail "node $node missing from status"
    got_tier=$(echo "$row" | awk '{ print $2 }')
    got_cpus=$(echo "$row" | awk '{ print $3 }')
    got_dist=$(echo "$row" | awk '{ s = $7; for (i = 8; i <= NF; i++) s = s " " $i; print s }')
    [ "$got_tier" = "$tier" ] || fail "node $node: tier '$got_tier', expected '$tier'"
    [ "$got_cpus" = "$cpus" ] || fail "node $node: CPUs '$got_cpus', expected '$cpus'"
    [ "$got_dist" = "$dist" ] || fail "node $node: distances '$got_dist', expected '$dist'"
done <<TABLE
0 fast 0 10 21 30
1 fast 1 21 10 30
2 slow - 30 30 10
TABLE
pass
