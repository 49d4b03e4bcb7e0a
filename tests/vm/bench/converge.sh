#!/bin/sh
# topology: bench2node
# timeout: 240
#
# Benchmark (make bench): how fast does a mover bring a misplaced workload's
# memory and its threads together?  One guest per contender.  Kernel args
# (run.py --append) choose it:
#   numatier.bench.mover=numatierd|numad|autonuma|none
#   numatier.bench.variant=free|pinned
#   numatier.bench.mib=512  numatier.bench.deadline=120  numatier.bench.hot=25
#   numatier.bench.hog=1|0  (free variant: busy loop on CPU 1, see below)
#   numatier.bench.damon_min_regions=N  (numatierd's [sampler] setting; unset:
#           its default)
#
# Setup: memhog first-touches MiB on node 1, then runs on node 0's CPU.
#   free:   its threads are free (no affinity); moving the threads or the
#           pages both count.  A nice-19 busy loop on CPU 1 (hog=1, the
#           default) keeps the scheduler from moving memhog there by itself
#           (as in scenario place-threads-to-memory): without it, an idle
#           CPU 1 draws memhog over within seconds whatever the mover does.
#           numad counts that CPU as busy, though.
#   pinned: its threads are pinned to node 0's CPU (explicit affinity), so
#           only moving the pages helps.
# Locality is measured against the node of the CPU memhog last ran on (its
# state file's cpu=), for all its pages and for its hot part.  Time 0 is
# when the mover starts (numatierd's includes its startup calibration).
# Output: one `@@BENCH |...|` row (see tests/vm/bench/vmbench.py).
. /lib/numatier-vm.sh

MOVER=$(kernel_arg numatier.bench.mover none)
VARIANT=$(kernel_arg numatier.bench.variant free)
MIB=$(kernel_arg numatier.bench.mib 512)
DEADLINE=$(kernel_arg numatier.bench.deadline 120)
HOT=$(kernel_arg numatier.bench.hot 25)
MIN_REGIONS=$(kernel_arg numatier.bench.damon_min_regions "")

if [ "$VARIANT" = free ] && [ "$(kernel_arg numatier.bench.hog 1)" = 1 ]; then
    taskset -c 1 sh -c 'while :; do :; done' 3>&- &
    HOG=$!
    renice -n 19 -p "$HOG" >/dev/null
fi
if [ "$VARIANT" = free ]; then
    start_memhog --mib "$MIB" --hot-pct "$HOT" --touch-node 1 --cpu-node 0 --free
else
    start_memhog --mib "$MIB" --hot-pct "$HOT" --touch-node 1 --cpu-node 0
fi
PID=$MEMHOG_PID
PAGES=$(state_get "$MEMHOG_STATE" pages)
HOTP=$(state_get "$MEMHOG_STATE" hot_pages)
echo "setup: $VARIANT, $MIB MiB, hot $HOT%: node0=$(state_get "$MEMHOG_STATE" node0) node1=$(state_get "$MEMHOG_STATE" node1) cpu=$(state_get "$MEMHOG_STATE" cpu) affinity $(taskset -p "$PID" | sed 's/.*: //')"
[ "$(state_get "$MEMHOG_STATE" node1)" -ge $((PAGES * 95 / 100)) ] || fail "setup: pages not on node 1"

mig0=$(vmstat_get pgmigrate_success); nmig0=$(vmstat_get numa_pages_migrated)
MOVER_PID=
note=
T0=$(now_ms)
case $MOVER in
numatierd)
    start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
        "[sampler]" "backend = damon" ${MIN_REGIONS:+"damon_min_regions = $MIN_REGIONS"} \
        "[placement]" "hysteresis = 2" "remote_penalty = 2000"
    MOVER_PID=$NT_DAEMON_PID ;;
numad)
    # -i 1:2: scan every 1-2 s instead of 5-15 s; it still acts only on
    # processes over 300 MB RSS and half a CPU.
    numad -i 1:2 -l 6 3>&- || fail "numad did not start"
    wait_for 10 test -s /var/run/numad.pid || fail "numad wrote no pid file"
    MOVER_PID=$(cat /var/run/numad.pid) ;;
autonuma)
    echo 1 > /proc/sys/kernel/numa_balancing || fail "cannot enable numa_balancing"
    note="numa_balancing=1, default scan settings" ;;
none) ;;
*) fail "unknown mover $MOVER" ;;
esac

# cpu -> node, from sysfs
cpu_node() { for _n in /sys/devices/system/cpu/cpu$1/node*; do echo "${_n##*node}"; return; done; }

t_all=; t_hot=; last=; local_pct=0; hot_pct=0
while :; do
    kill -USR2 "$PID"; sleep 0.3
    cpu=$(state_get "$MEMHOG_STATE" cpu); n=$(cpu_node "$cpu")
    l=$(state_get "$MEMHOG_STATE" "node$n"); h=$(state_get "$MEMHOG_STATE" "hot_node$n")
    now=$(now_ms); el=$((now - T0))
    local_pct=$(( ${l:-0} * 1000 / PAGES )); hot_pct=$(( ${h:-0} * 1000 / (HOTP > 0 ? HOTP : 1) ))
    cur="cpu=$cpu local=$((local_pct / 10)).$((local_pct % 10))% hot_local=$((hot_pct / 10)).$((hot_pct % 10))%"
    [ "$cur" != "$last" ] && echo "t=$((el / 1000)).$(( (el % 1000) / 100 ))s $cur" && last=$cur
    [ -z "$t_hot" ] && [ "$hot_pct" -ge 950 ] && t_hot=$el
    if [ "$local_pct" -ge 950 ]; then t_all=$el; break; fi
    [ "$el" -ge $((DEADLINE * 1000)) ] && break
    # Hot part local but the cold rest never moves (NUMA balancing migrates
    # only what is touched): stop 20 s later rather than at the deadline.
    [ -n "$t_hot" ] && [ "$el" -ge $((t_hot + 20000)) ] && { note="${note:+$note; }cold pages never moved"; break; }
    sleep 0.7
done
secs() { [ -n "$1" ] && echo "$(($1 / 1000)).$(( ($1 % 1000) / 100 )) s" || echo "not within $((el / 1000)) s"; }

ticks=n/a
if [ -n "$MOVER_PID" ]; then
    tk=$(cpu_ticks "$MOVER_PID")
    [ -n "$tk" ] && ticks="$((tk / 100)).$(( (tk % 100) / 10 ))$(( tk % 10 )) s"
fi
[ "$MOVER" = numad ] && { echo "---- numad log ----"; tail -n 15 /var/log/numad.log; }
[ "$MOVER" = numatierd ] && grep "placement:" "$NT_DAEMON_LOG"
mig=$(( $(vmstat_get pgmigrate_success) - mig0 )); nmig=$(( $(vmstat_get numa_pages_migrated) - nmig0 ))
aff=$(taskset -p "$PID" | sed 's/.*: //')
kill -USR1 "$PID"
wait_for 30 grep -q "CHECKSUM" "$MEMHOG_OUT" || fail "memhog did not verify its data"
grep -q "CHECKSUM OK" "$MEMHOG_OUT" && sum=OK || sum=BAD
[ -n "$t_all" ] || [ "$MOVER" = none ] || [ -n "$note" ] || note="${note:+$note; }did not act within $((el / 1000)) s"
bench_out "| converge | $VARIANT | $MOVER | $(secs "$t_all") | $(secs "$t_hot") | $((local_pct / 10)).$((local_pct % 10))% | cpu $cpu, mask $aff | $mig | $nmig | $ticks | $sum | $note |"
[ "$sum" = OK ] || fail "data corrupted"
pass
