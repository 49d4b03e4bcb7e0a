#!/bin/sh
# topology: tiered
# timeout: 75
#
# The DAMON sysfs behaviour that numatier's DAMON backend
# (daemon/sampler-damon.c) relies on, driven by hand the way the backend
# drives it, on the guest's 6.12 kernel:
#  - another user's kdamond runs: nr_kdamonds is EBUSY, and we take the
#    idle kdamond slot without touching theirs;
#  - one kdamond, one context (nr_contexts 2 is EINVAL), one vaddr target
#    per process, one `stat` scheme per target with a `target` filter:
#    schemes/I/tried_regions holds target I's regions only, and a hot
#    quarter shows more nr_accesses than the cold rest;
#  - region directory numbers count across schemes;
#  - commit while on with a target removed (the last moves into its place)
#    and with one added;
#  - commit with a dead pid "succeeds" and DAMON drops the kdamond; `on`
#    with a dead pid is EINVAL; rebuilt without it, it runs;
#  - a kdamond whose only target exits stops by itself;
#  - a stale kdamond named by /run/numatier/damon.kdamond (index and pid)
#    is turned off on "restart", and the other user's kdamond is left alone.
. /lib/numatier-vm.sh

K=/sys/kernel/mm/damon/admin/kdamonds
MIB=1048576
[ -d /sys/kernel/mm/damon ] || fail "no /sys/kernel/mm/damon: kernel without CONFIG_DAMON_SYSFS"

w() { echo "$2" > "$1" 2>/tmp/w.err || fail "echo $2 > $1: $(cat /tmp/w.err)"; }
# w_fails FILE VALUE PATTERN: the write must fail with an error matching PATTERN.
w_fails() {
    if echo "$2" > "$1" 2>/tmp/w.err; then fail "echo $2 > $1 succeeded"; fi
    grep -q "$3" /tmp/w.err || fail "echo $2 > $1: expected '$3', got: $(cat /tmp/w.err)"
}
state() { cat "$K/$1/state"; }
is_off() { [ "$(state "$1")" = off ]; }

# The backend's context setup, targets and schemes (see write_scheme()).
setup_context() {
    CT=$K/$1/contexts
    w $CT/nr_contexts 1
    w $CT/0/operations vaddr
    w $CT/0/monitoring_attrs/intervals/sample_us 5000
    w $CT/0/monitoring_attrs/intervals/aggr_us 200000
    w $CT/0/monitoring_attrs/intervals/update_us 1000000
    w $CT/0/monitoring_attrs/nr_regions/min 20
    w $CT/0/monitoring_attrs/nr_regions/max 1000
}
scheme() {
    S=$K/$1/contexts/0/schemes/$2
    w $S/action stat
    w $S/access_pattern/sz/max 18446744073709551615
    w $S/access_pattern/nr_accesses/max 4294967295
    w $S/access_pattern/age/max 4294967295
    w $S/filters/nr_filters 1
    w $S/filters/0/type target
    w $S/filters/0/damon_target_idx $2
    w $S/filters/0/matching N
}
# set_targets KD PID...: nr_targets and every pid, nr_schemes and every scheme.
set_targets() {
    kd=$1; shift
    T=$K/$kd/contexts/0/targets
    w $T/nr_targets $#
    i=0; for p in "$@"; do w $T/$i/pid_target $p; i=$((i + 1)); done
    w $K/$kd/contexts/0/schemes/nr_schemes $#
    i=0; for p in "$@"; do scheme $kd $i; i=$((i + 1)); done
}
# regions KD SCHEME: "id start end nr_accesses age" per tried region.
regions() {
    T=$K/$1/contexts/0/schemes/$2/tried_regions
    for n in $(ls $T | grep -v total_bytes | sort -n); do
        echo "$n $(cat $T/$n/start) $(cat $T/$n/end) $(cat $T/$n/nr_accesses) $(cat $T/$n/age)"
    done
}
update() { w $K/$1/state update_schemes_tried_regions; }
# avg_acc FILE LO HI: nr_accesses averaged over the bytes of [LO, HI) the
# regions cover, or "none".
avg_acc() {
    awk -v lo="$2" -v hi="$3" '{
        s = $2 > lo ? $2 : lo; e = $3 < hi ? $3 : hi
        if (e > s) { b += e - s; a += (e - s) * $4 }
    } END { if (b > 0) printf "%.2f\n", a / b; else print "none" }' "$1"
}
# overlaps FILE LO HI: does any region overlap [LO, HI)?
overlaps() { awk -v lo="$2" -v hi="$3" '$2 < hi && $3 > lo { f = 1 } END { exit !f }' "$1"; }
buf() { echo "$(state_get "$1" addr) $(( $(state_get "$1" addr) + $(state_get "$1" mib) * MIB ))"; }

start_memhog --mib 16 --hot-pct 50
F=$MEMHOG_PID
start_memhog --mib 64 --hot-pct 25
A=$MEMHOG_PID; A_STATE=$MEMHOG_STATE
start_memhog --mib 32 --hot-pct 50
B=$MEMHOG_PID; B_STATE=$MEMHOG_STATE
start_memhog --mib 16 --hot-pct 100
C=$MEMHOG_PID; C_STATE=$MEMHOG_STATE
[ -n "$(state_get "$A_STATE" hot_end)" ] || fail "memhog state has no addr/hot_end"
set -- $(buf "$A_STATE"); A_LO=$1; A_HI=$2; A_HOT=$(state_get "$A_STATE" hot_end)
set -- $(buf "$B_STATE"); B_LO=$1; B_HI=$2
set -- $(buf "$C_STATE"); C_LO=$1; C_HI=$2
echo "A=$A [$A_LO, $A_HOT hot, $A_HI)  B=$B [$B_LO, $B_HI)  C=$C [$C_LO, $C_HI)  foreign target F=$F"

echo "== another user's kdamond 0 runs; ours is the idle kdamond 1"
w $K/nr_kdamonds 2
setup_context 0
set_targets 0 $F
w $K/0/contexts/0/schemes/nr_schemes 0
w $K/0/state on
[ "$(state 0)" = on ] || fail "foreign kdamond 0 did not start"
FOREIGN_PID=$(cat $K/0/pid)
w_fails $K/nr_kdamonds 3 "busy"
grep -qw vaddr $K/1/contexts/0/avail_operations 2>/dev/null ||
    { w $K/1/contexts/nr_contexts 1; grep -qw vaddr $K/1/contexts/0/avail_operations ||
      fail "avail_operations lacks vaddr: $(cat $K/1/contexts/0/avail_operations)"; }
w_fails $K/1/contexts/nr_contexts 2 "Invalid argument"
setup_context 1

echo "== two targets, a scheme with a target filter each"
w_fails $K/1/state update_schemes_tried_regions "Invalid argument"    # not running yet
set_targets 1 $A $B
w $K/1/state on
[ "$(state 1)" = on ] || fail "our kdamond did not start"
OURS=$(cat $K/1/pid)
mkdir -p /run/numatier
printf 'kdamond=1\npid=%s\n' "$OURS" > /run/numatier/damon.kdamond
echo "kdamond 1 runs as pid $OURS ($(cat /proc/$OURS/comm))"
sleep 3
update 1
regions 1 0 > /tmp/s0
regions 1 1 > /tmp/s1
echo "scheme 0 (A):"; cat /tmp/s0
echo "scheme 1 (B):"; cat /tmp/s1
[ -s /tmp/s0 ] && [ -s /tmp/s1 ] || fail "no tried regions"
overlaps /tmp/s0 $A_LO $A_HI || fail "scheme 0 has no region of A's buffer"
overlaps /tmp/s0 $B_LO $B_HI && fail "scheme 0 (target 0 = A) has a region of B's buffer"
overlaps /tmp/s1 $B_LO $B_HI || fail "scheme 1 has no region of B's buffer"
overlaps /tmp/s1 $A_LO $A_HI && fail "scheme 1 (target 1 = B) has a region of A's buffer"
first1=$(head -n 1 /tmp/s1 | cut -d' ' -f1)
[ "$first1" -gt 0 ] || fail "scheme 1's region directories start at 0: numbering is per scheme after all"
echo "scheme 1's first region directory is $first1: numbered across schemes"

hot=$(avg_acc /tmp/s0 $A_LO $A_HOT); cold=$(avg_acc /tmp/s0 $A_HOT $A_HI)
echo "A: hot quarter averages $hot accesses, the cold rest $cold (of 40 per aggregation)"
awk -v h="$hot" -v c="$cold" 'BEGIN { exit !(h != "none" && c != "none" && h >= 5 && h > 3 * c + 1) }' ||
    fail "hot quarter ($hot) not well above the cold rest ($cold)"

echo "== state is EBUSY while an update is in flight (the backend retries)"
( update 1 ) & UPD=$!
sleep 0.05
if cat $K/1/state >/dev/null 2>/tmp/r.err; then echo "(state readable this time)";
else echo "state read: $(cat /tmp/r.err)"; fi
wait $UPD

echo "== commit without A: B moves into place 0"
set_targets 1 $B
w $K/1/state commit
[ "$(state 1)" = on ] || fail "kdamond stopped on a valid commit"
[ "$(cat $K/1/pid)" = "$OURS" ] || fail "commit restarted the kdamond"
sleep 1.5                                      # update_us: vaddr re-reads the mappings
update 1
regions 1 0 > /tmp/s0
overlaps /tmp/s0 $B_LO $B_HI || { cat /tmp/s0; fail "after commit, scheme 0 has no region of B"; }
overlaps /tmp/s0 $A_LO $A_HI && { cat /tmp/s0; fail "after commit, scheme 0 still has A's regions"; }
echo "ok: scheme 0 now reports B"

echo "== commit with C added"
set_targets 1 $B $C
w $K/1/state commit
[ "$(state 1)" = on ] || fail "kdamond stopped on commit adding C"
sleep 1.5
update 1
regions 1 1 > /tmp/s1
cat /tmp/s1
overlaps /tmp/s1 $C_LO $C_HI || fail "scheme 1 has no region of C after commit"
hot=$(avg_acc /tmp/s1 $C_LO $C_HI)
echo "C (all hot) averages $hot accesses"
awk -v h="$hot" 'BEGIN { exit !(h != "none" && h >= 5) }' || fail "C not hot ($hot)"

echo "== commit with a dead pid"
kill $C; wait $C 2>/dev/null
w $K/1/state commit                       # the write itself succeeds ...
wait_for 3 is_off 1 || fail "kdamond still $(state 1) after a commit naming dead pid $C"
echo "... and DAMON dropped the kdamond (state $(state 1), pid $(cat $K/1/pid))"
w_fails $K/1/state on "Invalid argument"      # `on` names the dead pid too
set_targets 1 $B
w $K/1/state on
[ "$(state 1)" = on ] || fail "rebuilt kdamond did not start"
OURS=$(cat $K/1/pid)
printf 'kdamond=1\npid=%s\n' "$OURS" > /run/numatier/damon.kdamond
[ "$(state 0)" = on ] && [ "$(cat $K/0/pid)" = "$FOREIGN_PID" ] || fail "foreign kdamond 0 was disturbed"

echo "== a daemon crash leaves kdamond 1 running; the restart stops it"
idx=$(state_get /run/numatier/damon.kdamond kdamond)
pid=$(state_get /run/numatier/damon.kdamond pid)
[ "$(state $idx)" = on ] && [ "$(cat $K/$idx/pid)" = "$pid" ] || fail "state file does not name a running kdamond"
w $K/$idx/state off
is_off $idx || fail "stale kdamond $idx still $(state $idx)"
w_fails $K/$idx/state off "not permitted"       # off twice: EPERM
rm /run/numatier/damon.kdamond
[ "$(state 0)" = on ] && [ "$(cat $K/0/pid)" = "$FOREIGN_PID" ] || fail "foreign kdamond 0 was disturbed"
echo "ok: kdamond $idx (pid $pid) off, kdamond 0 (pid $FOREIGN_PID) untouched"

echo "== the only target exits: the kdamond stops by itself"
w $K/1/state on
[ "$(state 1)" = on ] || fail "kdamond 1 did not restart"
kill $B; wait $B 2>/dev/null
wait_for 5 is_off 1 || fail "kdamond 1 still $(state 1) after its only target exited"
w_fails $K/1/state update_schemes_tried_regions "Invalid argument"
w $K/1/contexts/0/targets/nr_targets 0
w $K/1/state on                                 # no targets: "succeeds" ...
is_off 1 || fail "kdamond 1 runs without targets"  # ... and stays off

w $K/0/state off
w $K/nr_kdamonds 0
kill $A $F
pass
