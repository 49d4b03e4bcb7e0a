#!/bin/sh
# topology: hotplug
# timeout: 90
#
# A 512 MiB DIMM hot-added on node 2 (which has no boot memory) shows up in
# `numatierctl status` as new memory blocks on node 2 within a daemon cycle.
. /lib/numatier-vm.sh

SYS=/sys/devices/system
block=$(( $(cat $SYS/memory/block_size_bytes | sed 's/^/0x/') ))
want=$(( 512 * 1024 * 1024 / block ))

# Blocks "online/total" of node 2 in status; "0/0" while the node is absent.
blocks2() {
    b=$(status_row 2 | awk '{ print $6 }')
    echo "${b:-0/0}"
}
total_of() { echo "${1#*/}"; }
sys_blocks2() { ls -d $SYS/node/node2/memory[0-9]* 2>/dev/null | wc -l; }
sys_grown() { [ "$(sys_blocks2)" -ge $want ]; }

start_daemon
before=$(blocks2)
echo "node 2 blocks before: $before"

host dimm-add dimm1 512M 2 || fail "host could not add the DIMM"
wait_for 20 sys_grown ||
    fail "kernel shows $(sys_blocks2) blocks on node 2, expected $want"

expect=$(( $(total_of "$before") + want ))
grown() { [ "$(total_of "$(blocks2)")" -ge $expect ]; }
# cycle_interval is 1 s: the next cycles must see the new blocks.
wait_for 10 grown || { numatierctl status; fail "status shows node 2 blocks $(blocks2), expected total $expect"; }
numatierctl status
after=$(total_of "$(blocks2)")
[ "$after" -eq "$expect" ] || fail "node 2 has $after blocks in status, expected exactly $expect"
pass
