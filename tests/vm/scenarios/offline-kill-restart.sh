#!/bin/sh
# topology: hotplug
# append: memhp_default_state=offline
# timeout: 240
#
# Offline scenario d): numatierd is killed with SIGKILL in the middle of an
# `offline node 2` job and started again on the same ledger.
# A 512 MiB DIMM on node 2 is onlined movable as blocks K < M1 < M2 < M3.
# A pinhog holds 4 MiB of K in an unread pipe (vmsplice), so K, offlined
# last, hangs in the kernel (write_timeout 60 s) after the blocks above it
# went offline; a memhog keeps 128 MiB on node 2. The daemon is killed
# while the job runs, with blocks_done >= 1 and K's write under way.
#  1. on_restart = rollback (the default): the restarted daemon finds the
#     job, rolls it back and says so: state rolled-back, resumed true, every
#     block of node 2 online (movable), none left going-offline.
#  2. on_restart = resume: the same kill; the pin is released while the
#     daemon is down; the restarted daemon finishes the job: state
#     succeeded, resumed true, every block of node 2 offline, the memhog's
#     pages all on nodes 0 and 1.
# The memhog's data is intact after each restart.
. /lib/numatier-vm.sh

host dimm-add dimm1 512M 2 >/dev/null || fail "host could not add the DIMM"
four_blocks() { [ "$(node_blocks 2 | wc -l)" -ge 4 ]; }
wait_for 20 four_blocks || fail "node 2 has $(node_blocks 2 | wc -l) blocks after the DIMM, expected 4"
set -- $(node_blocks 2)
K=$1 M1=$2 M2=$3 M3=$4

block_set "$K" online_movable || fail "online_movable of block $K failed"
start_pinhog --mib 4 --bind 2 --unbind --pin vmsplice
PIN=$PINHOG_PID PIN_OUT=$PINHOG_OUT
[ "$(state_get "$PINHOG_STATE" blocks)" = "$K" ] || { cat "$PINHOG_STATE"; fail "setup: the pinned pages are not in block $K"; }
for b in "$M1" "$M2" "$M3"; do block_set "$b" online_movable || fail "online_movable of block $b failed"; done
start_memhog --mib 128 --bind 2 --unbind --hot-pct 10
[ "$(state_get "$MEMHOG_STATE" node2)" = "$(state_get "$MEMHOG_STATE" pages)" ] ||
    fail "setup: memhog has $(state_get "$MEMHOG_STATE" node2) of $(state_get "$MEMHOG_STATE" pages) pages on node 2"

daemon() {
    start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = /tmp/ledger.db" \
        "[offline]" "write_timeout = 60s" "ebusy_retries = 0" "on_restart = $1"
}

node2_states() { for b in $(node_blocks 2); do echo "$b $(cat /sys/devices/system/memory/memory$b/state)"; done; }
all_node2() { [ -z "$(node2_states | grep -v " $1\$")" ]; }

job_field() { numatierctl jobs "$1" --json > /tmp/job.json 2>&1 && json_get /tmp/job.json "$2"; }
job_mid() {
    [ "$(job_field "$1" state)" = running ] && [ "$(json_get /tmp/job.json blocks_done)" -ge 1 ]
}
job_final() {
    case $(job_field "$1" state) in succeeded|failed|rolled-back|interrupted) return 0 ;; esac
    return 1
}

# start_and_kill: start `offline node 2`, wait until at least one block is
# offline and the job still runs, give K's write time to begin, SIGKILL.
# Sets JOB.
start_and_kill() {
    ctl_run /tmp/start.out offline node 2 --detach --timeout 300 || fail "offline node 2 --detach exited $?"
    ctl_run /tmp/jobs.json jobs --json > /dev/null || fail "jobs --json failed"
    JOB=$(json_get /tmp/jobs.json id) || fail "no job listed after offline --detach"
    wait_until 90 job_mid "$JOB" || { cat /tmp/job.json; fail "job $JOB never ran with a block done"; }
    sleep 2
    job_field "$JOB" state > /dev/null
    echo "job $JOB before the kill: $(json_get /tmp/job.json phase), blocks_done $(json_get /tmp/job.json blocks_done)"
    node2_states
    [ "$(json_get /tmp/job.json state)" = running ] || fail "job $JOB ended before the kill: $(json_get /tmp/job.json message)"
    kill -KILL "$NT_DAEMON_PID"; wait "$NT_DAEMON_PID" 2>/dev/null
    NT_DAEMON_PID=
    sleep 1
    echo "after the kill:"; node2_states
}

# check_restarted JOB STATE: the job reached STATE after the restart, says it
# was resumed, and no block is left going-offline.
check_restarted() {
    wait_until 120 job_final "$1" || { cat /tmp/job.json; fail "job $1 did not finish after the restart"; }
    numatierctl jobs "$1"
    st=$(json_get /tmp/job.json state)
    [ "$st" = "$2" ] || fail "job $1 after the restart: state '$st', expected $2: $(json_get /tmp/job.json message)"
    [ "$(json_get /tmp/job.json resumed)" = true ] || fail "job $1 does not say it was taken over after the restart"
    node2_states | grep going-offline && fail "a block is left going-offline"
    return 0
}

# 1. Rollback.
daemon rollback
start_and_kill
daemon rollback
check_restarted "$JOB" rolled-back
all_node2 online || { node2_states; fail "after the rollback not every block of node 2 is online"; }
block_states | grep -E "^($K|$M1|$M2|$M3) " | grep -v ' online Movable$' &&
    fail "a block of node 2 came back outside ZONE_MOVABLE"
checksum_ok "$MEMHOG_PID" "$MEMHOG_OUT" || fail "memhog data corrupted after the rollback: $(cat "$MEMHOG_OUT")"
checksum_ok "$PIN" "$PIN_OUT" || fail "pinhog data corrupted after the rollback: $(cat "$PIN_OUT")"

# 2. Resume, once the pin is gone.
start_and_kill
kill "$PIN"; wait "$PIN" 2>/dev/null
daemon resume
check_restarted "$JOB" succeeded
all_node2 offline || { node2_states; fail "after the resumed job not every block of node 2 is offline"; }
kill -USR2 "$MEMHOG_PID"; sleep 1
[ -z "$(state_get "$MEMHOG_STATE" node2)" ] || fail "memhog still has $(state_get "$MEMHOG_STATE" node2) pages on node 2"
checksum_ok "$MEMHOG_PID" "$MEMHOG_OUT" || fail "memhog data corrupted after the resumed job: $(cat "$MEMHOG_OUT")"
pass
