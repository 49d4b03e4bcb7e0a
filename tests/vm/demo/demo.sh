#!/bin/sh
# topology: tiered
# timeout: 300
#
# `make demo`: a guided tour of numatierd for a newcomer, in the `tiered`
# guest (node 0: CPU 0, node 1: CPU 1, node 2: no CPU, the slow tier;
# 512 MiB each).  Two workloads:
#   misplaced  memhog, 96 MiB first-touched on node 1, then pinned by the
#              user to node 0's CPU: every access is remote, and only
#              moving the pages can fix it;
#   tiered     memhog, 64 MiB placed on the CPU-less node 2 (by an mbind it
#              then drops, so no binding is left) with a 25% hot region:
#              tiering promotes the hot pages to fast memory, the cold
#              ones stay on the slow tier.
# numatierd starts in advise mode, so the "before" state holds still; then
# it switches to enforce and the demo waits until 95% of the misplaced
# workload's pages are local (or a deadline) and shows "after".
# Exit: pass if the pages came, the hot pages were promoted (the cold ones
# stayed on node 2) and the data is intact; fail otherwise (make demo then
# exits non-zero).
. /lib/numatier-vm.sh

DEADLINE=$(kernel_arg numatier.demo.deadline 120)
heading() { printf '\n======== %s ========\n' "$*"; }
say() { printf '%s\n' "$*" | fold -s -w 78; }
show() { printf '\n$ %s\n' "$*"; "$@"; }

heading "numatier demo: the guest"
say "A QEMU guest with three NUMA nodes: node 0 (CPU 0) and node 1 (CPU 1) are the fast tier; node 2 has memory but no CPU, as CXL or PMEM memory appears: the slow tier."
numactl --hardware | grep -E 'available|node [0-9] (cpus|size)'

heading "Starting two workloads"
say "'misplaced': 96 MiB written while running on node 1 (so its pages are on node 1), then pinned by its user to node 0's CPU. Every access it makes is remote."
start_memhog --mib 96 --hot-pct 50 --touch-node 1 --cpu-node 0
MIS=$MEMHOG_PID; MIS_STATE=$MEMHOG_STATE; MIS_OUT=$MEMHOG_OUT
say "'tiered': 64 MiB placed on node 2, the CPU-less slow tier (no binding left), running on node 1's CPU; its first 25% is hot."
start_memhog --mib 64 --hot-pct 25 --bind 2 --unbind --cpu-node 1
TIER=$MEMHOG_PID; TIER_STATE=$MEMHOG_STATE; TIER_OUT=$MEMHOG_OUT
echo "misplaced: pid $MIS; tiered: pid $TIER"

heading "Starting numatierd (advise mode: it plans, moves nothing)"
say "Configuration: watch processes named memhog over 16 MiB, sample with DAMON (a VM has no PMU for perf), act after 2 cycles in agreement. remote_penalty = 2000: under QEMU's emulation a remote access costs nothing extra, so we tell the daemon what it costs on real hardware."
cat <<'CONF'
  [daemon]     cycle_interval = 1s, mode = advise
  [procs]      min_rss = 16M, include_comm = memhog
  [sampler]    backend = damon
  [placement]  hysteresis = 2, remote_penalty = 2000
CONF
start_daemon "mode = advise" "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "[placement]" "hysteresis = 2" "remote_penalty = 2000"
say "Waiting until the daemon has sampled enough to plan a move..."
planned() { numatierctl plan --json > /tmp/plan.json && grep -q '"action": "move-pages"' /tmp/plan.json; }
wait_until 90 planned || { numatierctl explain "$MIS"; fail "numatierd never planned to move the misplaced pages"; }

heading "BEFORE: numatierctl status (nodes, tiers, costs, moves so far)"
show numatierctl status
heading "BEFORE: numatierctl stat -p memhog (MiB per node, as numastat -p)"
show numatierctl stat -p memhog
heading "BEFORE: numatierctl top --once (accesses: RMA remote, LMA local; hot pages per node)"
show numatierctl top --once
heading "BEFORE: numatierctl plan (what enforce mode would do now)"
show numatierctl plan
heading "BEFORE: numatierctl explain $MIS (the misplaced workload)"
show numatierctl explain "$MIS"
heading "BEFORE: numatierctl explain $TIER (the tiered workload)"
show numatierctl explain "$TIER"

heading "Switching to enforce mode"
show numatierctl mode enforce
T0=$(date +%s)
local_enough() {
    kill -USR2 "$MIS" "$TIER"; sleep 0.3
    n0=$(state_get "$MIS_STATE" node0); pages=$(state_get "$MIS_STATE" pages)
    h2=$(state_get "$TIER_STATE" hot_node2); hp=$(state_get "$TIER_STATE" hot_pages)
    [ "${n0:-0}" -ge $((pages * 95 / 100)) ] && [ "${h2:-0}" -le $((hp * 20 / 100)) ]
}
say "Waiting (up to $DEADLINE s) until 95% of the misplaced workload's pages are on node 0, where its CPU is, and 80% of the tiered workload's hot pages are on fast memory..."
ok=1
wait_until "$DEADLINE" local_enough || ok=0
n1=$(state_get "$MIS_STATE" node1)
echo "after $(( $(date +%s) - T0 )) s: misplaced has $(state_get "$MIS_STATE" node0) pages on node 0, ${n1:-0} on node 1 (of $(state_get "$MIS_STATE" pages))"
heading "What numatierd did (its log)"
grep -E "placement|tiering" "$NT_DAEMON_LOG" | tail -n 12
sleep 3     # a few cycles for top's decayed access counts to catch up

heading "AFTER: numatierctl status"
show numatierctl status
heading "AFTER: numatierctl stat -p memhog"
show numatierctl stat -p memhog
heading "AFTER: numatierctl top --once"
show numatierctl top --once
heading "AFTER: numatierctl explain $MIS"
show numatierctl explain "$MIS"
heading "AFTER: numatierctl explain $TIER"
show numatierctl explain "$TIER"

heading "Checks"
[ "$ok" = 1 ] || fail "the misplaced workload's pages were not local after $DEADLINE s"
echo "ok: 95% of the misplaced workload's pages are local"
mask=$(taskset -p "$MIS" | sed 's/.*: //')
[ "$mask" = 1 ] || fail "numatierd changed the user's CPU affinity (mask $mask)"
echo "ok: its CPU affinity is still the user's (mask $mask)"
kill -USR2 "$TIER"; sleep 0.5
h2=$(state_get "$TIER_STATE" hot_node2); hp=$(state_get "$TIER_STATE" hot_pages)
t2=$(state_get "$TIER_STATE" node2)
[ "${h2:-0}" -le $((hp * 20 / 100)) ] || fail "the tiered workload's hot pages are still on node 2: ${h2:-0} of $hp"
[ "$(( ${t2:-0} - ${h2:-0} ))" -ge $((hp * 2)) ] || fail "the tiered workload's cold pages left node 2"
echo "ok: $(( hp - ${h2:-0} )) of the tiered workload's $hp hot pages were promoted; its cold pages stayed on node 2"
for p in "$MIS:$MIS_OUT" "$TIER:$TIER_OUT"; do
    kill -USR1 "${p%%:*}"
    wait_for 10 grep -q CHECKSUM "${p#*:}" || fail "memhog ${p%%:*} did not verify its data"
    grep -q "CHECKSUM OK" "${p#*:}" || fail "memhog ${p%%:*}: data corrupted"
done
echo "ok: both workloads verified their data (CHECKSUM OK)"
pass
