#!/bin/sh
# topology: tiered
# timeout: 150
#
# DAMON sampling end to end through the daemon, as `numatierctl top` shows it:
#  - a workload keeps a quarter of its buffer hot: the hottest pages that top
#    reports all lie in that hot quarter;
#  - RMA/LMA tells memory bound to the thread's own node (local) from memory
#    bound to another node (remote): two workloads, one of each.
. /lib/numatier-vm.sh

start_memhog --mib 32 --hot-pct 25 --bind 0 --cpu-node 0
LOCAL_PID=$MEMHOG_PID
LOCAL_STATE=$MEMHOG_STATE
start_memhog --mib 64 --hot-pct 25 --bind 1 --cpu-node 0
REMOTE_PID=$MEMHOG_PID
REMOTE_STATE=$MEMHOG_STATE

start_daemon "[procs]" "min_rss = 16M" "include_comm = memhog" \
    "[sampler]" "backend = damon" "interval = 200ms" \
    "[aggregate]" "heat_half_life = 20s"

# "PID key value" lines from the pretty-printed JSON: lma, rma, and one
# "PID page VADDR HEAT" per listed page.
top_lines() {
    numatierctl top --once --json --pages "${1:-64}" | awk '
        /"pid":/   { gsub(/[",]/, "", $2); pid = $2 }
        /"lma":/   { gsub(/,/, "", $2); print pid, "lma", $2 }
        /"rma":/   { gsub(/,/, "", $2); print pid, "rma", $2 }
        /"vaddr":/ { gsub(/,/, "", $2); va = $2 }
        /"heat":/  { gsub(/,/, "", $2); print pid, "page", va, $2 }'
}

has_pages() { top_lines | awk -v p="$1" '$1 == p && $2 == "page" { n++ } END { exit !(n >= 16) }'; }
wait_for 90 has_pages "$LOCAL_PID" || {
    numatierctl status --json | grep -A12 '"sampler"'
    numatierctl top --once
    fail "no heat for memhog $LOCAL_PID after 90 s"
}
wait_for 30 has_pages "$REMOTE_PID" || fail "no heat for memhog $REMOTE_PID after 30 s"
sleep 5
numatierctl top --once
top_lines 4096 > /tmp/top.txt

# 1. Hot pages rank above cold ones. Only the buffer's pages are ranked:
#    memhog's stack and data pages are accessed on every pass and rightly
#    rank hot, but they are neither of the buffer's quarters. DAMON estimates
#    heat per region and every page of a region gets the region's heat, so a
#    region straddling the hot/cold boundary lends heat to the cold pages just
#    past it (the buffer's cold pages are never touched after the first fill:
#    those listed carry heat that way). The test is therefore statistical,
#    with the boundary allowed for: of the buffer's 64 hottest pages at least
#    62 lie in the hot quarter and any other lies within 5 MiB after it
#    (DAMON merges regions up to the watched memory over its minimum
#    number of regions: ~100 MiB over 2 x 10 here); at
#    least 95% of the 1024 hottest do (the local workload has 8192 pages, 2048
#    of them hot, and top lists up to 4096 so cold pages show when they carry
#    any heat); and the hot quarter holds at least 80% of the listed heat
#    (pages never seen accessed are not listed at all). Typical run: 1600-1900
#    hot pages with 1.5 M, 400-850 cold pages with 35-120 k. A ranking that
#    ignored heat would put a quarter of the 64 in the hot quarter.
addr=$(state_get "$LOCAL_STATE" addr)
hot_end=$(state_get "$LOCAL_STATE" hot_end)
buf_end=$((addr + $(state_get "$LOCAL_STATE" pages) * 4096))
verdict=$(awk -v p="$LOCAL_PID" -v lo="$addr" -v hi="$hot_end" -v end="$buf_end" '
    $1 == p && $2 == "page" {
        va = $3 + 0; h = $4 + 0; rank++
        if (va < lo || va >= end) { if (!other++) other_rank = rank; next }
        n++
        if (va < hi) { hot++; hsum += h; if (n <= 64) top64++; if (n <= 1024) top1k++; next }
        cold++; csum += h
        if (n <= 64) {
            off = (va - hi) / 1024
            intruders = intruders sprintf(" +%.0fKiB", off)
            if (off >= 5 * 1024) far++
        }
    }
    END {
        if (intruders != "") print "cold pages among the 64 hottest, past the hot end by:" intruders > "/dev/stderr"
        if (top64 < 62 || far > 0) { print "only " top64 " of the 64 hottest pages are in the hot quarter (" far + 0 " far from it)"; exit }
        if (n >= 1024 && top1k < 973) { print "only " top1k " of the 1024 hottest pages are in the hot quarter"; exit }
        stats = sprintf("%d hot pages listed (heat %.0f), %d cold (heat %.0f), %d outside the buffer (the hottest ranked %d); %d of the 64 and %d of the 1024 hottest are hot", hot, hsum, cold, csum, other, other_rank, top64, top1k)
        if (hsum < 4 * csum) { print "the hot quarter holds under 80% of the heat: " stats; exit }
        print "ok " stats
    }' /tmp/top.txt)
echo "hot/cold: $verdict"
case "$verdict" in ok*) ;; *) fail "hot/cold ranking: $verdict" ;; esac

# 2. RMA/LMA: local workload mostly local, remote workload mostly remote.
get() { awk -v p="$1" -v k="$2" '$1 == p && $2 == k { print $3 }' /tmp/top.txt; }
l_lma=$(get "$LOCAL_PID" lma); l_rma=$(get "$LOCAL_PID" rma)
r_lma=$(get "$REMOTE_PID" lma); r_rma=$(get "$REMOTE_PID" rma)
echo "local memhog: LMA $l_lma RMA $l_rma; remote memhog: LMA $r_lma RMA $r_rma"
awk -v a="$l_lma" -v b="$l_rma" 'BEGIN { exit !(a > 0 && a > 4 * b) }' ||
    fail "memhog bound to its own node: LMA $l_lma not well above RMA $l_rma"
awk -v a="$r_rma" -v b="$r_lma" 'BEGIN { exit !(a > 0 && a > 4 * b) }' ||
    fail "memhog bound to the other node: RMA $r_rma not well above LMA $r_lma"
pass
