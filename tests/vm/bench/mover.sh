#!/bin/sh
# topology: bench2node
# timeout: 300
#
# Benchmark (make bench): numatierd's page mover against numactl's
# `migratepages` on the same layout: MIB MiB first-touched on node 1 by a
# memhog pinned to node 0's CPU (as scenario place-pages-to-pinned), one
# workload for each, one after the other in the same guest.
#
# numatierd moves a whole process with one migrate_pages(2) call, as
# migratepages does, so the fair figure is that call's duration: both are
# timed from the syscalls:sys_enter/exit_migrate_pages tracepoints (own
# tracefs instance).  Also shown: migratepages' wall time (exec to exit), and
# for numatierd the time from its start (calibration, sampling, hysteresis)
# until 95% of the pages are local.  Both movers run on CPU 1 (taskset), so
# neither shares a CPU with the busy workload on CPU 0.
# Kernel args: numatier.bench.mib=512 numatier.bench.deadline=120
. /lib/numatier-vm.sh

MIB=$(kernel_arg numatier.bench.mib 512)
DEADLINE=$(kernel_arg numatier.bench.deadline 120)
T=/sys/kernel/tracing/instances/numatier-bench
mkdir -p "$T" || fail "no tracefs instance"
for e in sys_enter_migrate_pages sys_exit_migrate_pages; do
    echo 1 > "$T/events/syscalls/$e/enable" || fail "cannot enable syscalls/$e"
done
echo 1 > "$T/tracing_on"

# syscall_usec COMM: duration of COMM's last migrate_pages call, in us.
# Lines: "  comm-pid  [000] .....  12.345678: sys_migrate_pages(...)" and
# "... sys_migrate_pages -> 0x0".
syscall_usec() {
    awk -v c="$1" '
        index($1, c "-") == 1 {
            for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { ts = substr($i, 1, length($i) - 1); break }
            if ($0 ~ /sys_migrate_pages\(/) enter = ts
            else if ($0 ~ /sys_migrate_pages ->/ && enter != "") { d = (ts - enter) * 1e6; enter = "" }
        }
        END { if (d != "") printf "%d\n", d }' "$T/trace"
}
local_pct() {
    kill -USR2 "$1"; sleep 0.3
    _n0=$(state_get "$2" node0)
    echo $(( ${_n0:-0} * 1000 / $(state_get "$2" pages) ))
}
check_data() {
    kill -USR1 "$1"
    wait_for 30 grep -q "CHECKSUM" "$2" || fail "memhog did not verify its data"
    grep -q "CHECKSUM OK" "$2" || fail "data corrupted: $(cat "$2")"
}
mbps() { awk -v p="$1" -v us="$2" 'BEGIN { if (us > 0) printf "%.1f", p * 4096 / us; else print "n/a" }'; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1e6 }'; }

# Warm-up: under TCG the first guest use of a RAM page also costs QEMU a
# host page fault, so the first mover into node 0 would pay for it and the
# second would not (a 1.8x "difference" in a trial run).  Touch node 0's
# memory once before timing anything.
memhog --mib 700 --bind 0 --seconds 1 --hot-pct 0 > /dev/null 2>&1 3>&- ||
    fail "warm-up memhog on node 0 failed"

# ---- migratepages ----
start_memhog --mib "$MIB" --hot-pct 25 --touch-node 1 --cpu-node 0
A=$MEMHOG_PID; AS=$MEMHOG_STATE; AO=$MEMHOG_OUT
[ "$(local_pct "$A" "$AS")" -le 50 ] || fail "setup: pages already local"
mig0=$(vmstat_get pgmigrate_success)
w0=$(now_ms)
taskset -c 1 migratepages "$A" 1 0 || fail "migratepages failed"
w1=$(now_ms)
m_pages=$(( $(vmstat_get pgmigrate_success) - mig0 ))
m_us=$(syscall_usec migratepages)
pct=$(local_pct "$A" "$AS")
echo "migratepages: $m_pages pages, syscall $m_us us, wall $((w1 - w0)) ms, local $((pct / 10))%"
[ "$pct" -ge 950 ] || fail "migratepages left pages remote ($pct/1000)"
check_data "$A" "$AO"
kill "$A"; wait "$A" 2>/dev/null

# ---- numatierd ----
start_memhog --mib "$MIB" --hot-pct 25 --touch-node 1 --cpu-node 0
B=$MEMHOG_PID; BS=$MEMHOG_STATE; BO=$MEMHOG_OUT
[ "$(local_pct "$B" "$BS")" -le 50 ] || fail "setup: pages already local"
t0=$(now_ms)
start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" \
    "remote_penalty = 2000"
taskset -a -p -c 1 "$NT_DAEMON_PID" >/dev/null || fail "cannot pin numatierd to CPU 1"
local_enough() { [ "$(local_pct "$B" "$BS")" -ge 950 ]; }
wait_until "$DEADLINE" local_enough || fail "numatierd did not make the pages local within $DEADLINE s"
t1=$(now_ms)
wait_for 10 grep -q "moved [0-9]* pages" "$NT_DAEMON_LOG" || fail "no 'moved N pages' in numatierd's log"
grep "placement:" "$NT_DAEMON_LOG"
d_pages=$(sed -n 's/.*moved \([0-9]*\) pages.*/\1/p' "$NT_DAEMON_LOG" | awk '{ s += $1 } END { print s }')
d_us=$(syscall_usec numatierd)
echo "numatierd: $d_pages pages, syscall $d_us us, start to 95% local $((t1 - t0)) ms"
check_data "$B" "$BO"

ratio=$(awk -v a="$(mbps "$d_pages" "$d_us")" -v b="$(mbps "$m_pages" "$m_us")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
bench_out "| mover | taskset -c 1 migratepages PID 1 0 | $m_pages | $(secs "$m_us") | $(mbps "$m_pages" "$m_us") | $(secs $(( (w1 - w0) * 1000 ))) s wall (exec to exit): $(mbps "$m_pages" $(( (w1 - w0) * 1000 ))) MB/s |"
bench_out "| mover | numatierd on CPU 1 (migrate_pages, whole process) | $d_pages | $(secs "$d_us") | $(mbps "$d_pages" "$d_us") | $(secs $(( (t1 - t0) * 1000 ))) s from daemon start to 95% local (startup calibration, sampling, hysteresis 2) |"
bench_out "| mover-ratio | $ratio |"
pass
