#!/bin/sh
# topology: hotplug
# append: memhp_default_state=offline
# timeout: 300
#
# Issue 7, scenario a: hot-remove of a node's memory. A 512 MiB DIMM is
# hot-added on node 2 (no boot memory) and onlined movable; a workload
# fills 256 MiB there. `numatierctl offline node 2` must succeed while
# status keeps answering: the workload's data intact and on nodes 0/1,
# moved by numatierd before the offline (bytes_moved), every block of
# node 2 offline, the job journaled as succeeded. While the one
# migrate_pages call runs, the job's bytes_moved must show values between
# 0 and the total (the daemon's estimate), never going back, and the
# piped output progress lines. Then QEMU's device_del
# completes with DEVICE_DELETED: the memory is really gone.
. /lib/numatier-vm.sh

SYS=/sys/devices/system
bs=$(( 0x$(cat $SYS/memory/block_size_bytes) ))
want=$(( 512 * 1024 * 1024 / bs ))

node2_blocks() { ls -d $SYS/node/node2/memory[0-9]* 2>/dev/null | sed 's/.*memory//' | sort -n; }
count2() { node2_blocks | wc -l; }
grown() { [ "$(count2)" -ge $want ]; }
gone() { [ "$(count2)" -eq 0 ]; }
state_of() { cat $SYS/memory/memory$1/state; }

host dimm-add dimm1 512M 2 >/dev/null || fail "host could not add the DIMM"
wait_for 20 grown || fail "kernel shows $(count2) blocks on node 2, expected $want"
for b in $(node2_blocks); do
    [ "$(state_of $b)" = offline ] || fail "block $b is $(state_of $b) at hot-add (memhp_default_state=offline)"
    echo online_movable > $SYS/memory/memory$b/state || fail "cannot online block $b movable"
    zones=$(cat $SYS/memory/memory$b/valid_zones)
    [ "$zones" = Movable ] || fail "block $b is in zone $zones, not Movable"
done
echo "node 2 blocks, online movable: $(node2_blocks | tr '\n' ' ')"

# Placement and tiering watch nothing: only the offline job moves pages.
start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db"
start_memhog --bind 2 --unbind --mib 256 --hot-pct 10
pages=$(state_get "$MEMHOG_STATE" pages)
on2=$(state_get "$MEMHOG_STATE" node2)
[ "${on2:-0}" -ge $((pages * 95 / 100)) ] || fail "memhog has ${on2:-0} of $pages pages on node 2"
echo "memhog: $on2 of $pages pages on node 2"

numatierctl offline node 2 --dry-run || fail "the dry run failed (exit $?)"
for b in $(node2_blocks); do
    [ "$(state_of $b)" = online ] || fail "the dry run changed block $b"
done

# Progress: one migrate_pages moves the workload's 256 MiB in seconds, so
# only the daemon's estimate of the call in flight can show bytes_moved
# between 0 and the total. Poll it as an operator would: "phase bytes_moved
# bytes_to_move" a line (the last only while the job runs).
poll_progress() {
    while :; do
        if numatierctl jobs --json > /tmp/poll.json 2>/dev/null; then
            ph=$(sed -n 's/.*"phase": *"\([a-z-]*\)".*/\1/p' /tmp/poll.json | head -n 1)
            b=$(sed -n 's/.*"bytes_moved": *\([0-9]*\).*/\1/p' /tmp/poll.json | head -n 1)
            t=$(sed -n 's/.*"bytes_to_move": *\([0-9]*\).*/\1/p' /tmp/poll.json | head -n 1)
            [ -n "$b" ] && echo "$ph $b ${t:--}" >> /tmp/progress.seen
        fi
        sleep 0.3
    done
}
: > /tmp/progress.seen

# The job runs in the background of the daemon: status answers throughout
# (timed by ctlprobe from connect to reply: the pollers' own numatierctl
# start-ups load this 2-CPU guest, and they are not the daemon's time).
numatierctl offline node 2 > /tmp/offline.out 2>&1 &
off=$!
ctlprobe --cmd status --interval-ms 200 --until /tmp/offline.done > /tmp/probe.txt 3>&- &
probe=$!
poll_progress &
poller=$!
while kill -0 $off 2>/dev/null; do
    numatierctl status > /dev/null || fail "status failed while the job ran"
    sleep 0.5
done
wait $off
rc=$?
touch /tmp/offline.done
kill $poller 2>/dev/null
wait $poller 2>/dev/null
wait $probe || fail "the daemon did not answer status while the job ran: $(tail -n 2 /tmp/probe.txt)"
cat /tmp/offline.out
slowest=$(awk '$1 == "rounds" { print $4 }' /tmp/probe.txt)
echo "status during the job: $(awk '$1 == "rounds" { print $2 }' /tmp/probe.txt) answers, slowest $slowest ms"
[ $rc -eq 0 ] || fail "numatierctl offline node 2 exited $rc"
[ "$slowest" -lt 2000 ] || fail "status took $slowest ms while the job ran"

for b in $(node2_blocks); do
    [ "$(state_of $b)" = offline ] || fail "block $b is $(state_of $b) after the job"
done

numatierctl jobs --json > /tmp/jobs.json || fail "numatierctl jobs failed"
numatierctl jobs
grep -q '"state": *"succeeded"' /tmp/jobs.json || fail "the job is not journaled as succeeded"
moved=$(sed -n 's/.*"bytes_moved": *\([0-9]*\).*/\1/p' /tmp/jobs.json | head -n 1)
[ "${moved:-0}" -ge $((200 * 1024 * 1024)) ] ||
    fail "numatierd moved ${moved:-0} bytes before offlining, expected the workload's 256 MiB"
to_move=$(awk '$3 != "-" { t = $3 } END { print t }' /tmp/progress.seen)
echo "bytes_moved seen while the job ran (phase MiB), of ${to_move:-?} bytes to move:"
awk '{ printf "  %s %.1f\n", $1, $2 / 1048576 }' /tmp/progress.seen | uniq
between=$(awk -v t="$moved" '$2 > 0 && $2 < t + 0' /tmp/progress.seen | wc -l)
[ "$between" -ge 1 ] || fail "no poll saw bytes_moved between 0 and the final $moved: no progress shown"
awk '$1 == "evacuating" { if ($2 < last) exit 1; last = $2 }' /tmp/progress.seen ||
    fail "bytes_moved went back while evacuating"
grep -q '^\[ *[0-9.]*s\] evacuating: [0-9]* MiB moved$' /tmp/offline.out ||
    fail "numatierctl printed no evacuating progress line to the pipe"
[ "${to_move:-0}" -ge $((200 * 1024 * 1024)) ] || fail "bytes_to_move is ${to_move:-absent}, expected the plan's ~256 MiB"

# The workload: every page now on node 0 or 1, and its data intact.
pages_on() { n=$(state_get "$MEMHOG_STATE" node$1); echo "${n:-0}"; }
placed() {
    kill -USR2 "$MEMHOG_PID"
    sleep 0.3
    [ "$(pages_on 2)" -eq 0 ] && [ $(( $(pages_on 0) + $(pages_on 1) )) -eq "$pages" ]
}
wait_for 10 placed || { cat "$MEMHOG_STATE"; fail "memhog's pages are not all on nodes 0 and 1"; }
echo "memhog: node0=$(pages_on 0) node1=$(pages_on 1) pages"
kill -USR1 "$MEMHOG_PID"
wait_for 20 grep -q CHECKSUM "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" || fail "$(grep CHECKSUM "$MEMHOG_OUT")"

host dimm-del dimm1 60 || fail "device_del did not complete with DEVICE_DELETED"
wait_for 10 gone || fail "node 2 still has $(count2) memory blocks after the DIMM left"
kill -0 "$NT_DAEMON_PID" || fail "numatierd died"
pass
