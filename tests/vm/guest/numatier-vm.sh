# Helpers for VM scenarios (busybox sh).  Source with: . /lib/numatier-vm.sh
#
# Result:   pass                 print "PASS name", report to host, exit 0
#           fail REASON          print "FAIL name: REASON", report, exit 1
# Host:     host VERB ARGS...    ask the host runner (QMP); prints its reply,
#                                returns non-zero on an error reply.  Verbs:
#                                mce, dimm-add, dimm-del, hmp, raw (see qmp.py)
# Daemon:   start_daemon [INI LINES...]  start numatierd, wait until it answers
# Workload: start_memhog ARGS...  start memhog, wait for its state; sets
#                                MEMHOG_PID and MEMHOG_STATE
# Misc:     wait_for SECONDS CMD...  retry CMD every 0.2 s until it succeeds
#           wait_until SECONDS CMD... the same, by the clock (slow CMDs)
#           state_get FILE KEY       value of KEY in a key=value file
#           status_row NODE          the `numatierctl status` row of NODE
# Workload output goes to MEMHOG_OUT (e.g. CHECKSUM OK after kill -USR1).

NT_NAME=${NT_NAME:-$(basename "$0" .sh)}
NT_DAEMON_LOG=/tmp/numatierd.log
NT_DAEMON_PID=

# fd 3 is the host channel; open it if this shell did not inherit it.
_nt_chan() {
    [ -n "${NT_CHANNEL:-}" ] || return 1
    { true >&3; } 2>/dev/null || exec 3<>"$NT_CHANNEL"
}

_nt_report() {
    _nt_chan 2>/dev/null && echo "@@RESULT $*" >&3
    return 0
}

pass() {
    trap - EXIT
    echo "PASS $NT_NAME"
    _nt_report "PASS $NT_NAME"
    exit 0
}

fail() {
    trap - EXIT
    if [ -n "$NT_DAEMON_PID" ] && [ -s "$NT_DAEMON_LOG" ]; then
        echo "---- numatierd log (tail) ----"
        tail -n 40 "$NT_DAEMON_LOG"
        echo "------------------------------"
    fi
    echo "FAIL $NT_NAME: $*"
    _nt_report "FAIL $NT_NAME: $*"
    exit 1
}

# A scenario that ends without pass/fail (e.g. set -e tripped) fails; an
# interactive shell that sourced these helpers just exits.
case $- in
    *i*) ;;
    *) trap 'fail "scenario exited without a verdict (status $?)"' EXIT ;;
esac

host() {
    _nt_chan || { echo "host: no host channel" >&2; return 2; }
    echo "@@HOST $*" >&3
    IFS= read -r _nt_reply <&3 || { echo "host: channel closed" >&2; return 2; }
    case $_nt_reply in
        "@@OK"*)  echo "${_nt_reply#@@OK }"; return 0 ;;
        "@@ERR"*) echo "${_nt_reply#@@ERR }" >&2; return 1 ;;
        *)        echo "host: bad reply: $_nt_reply" >&2; return 2 ;;
    esac
}

wait_for() {
    _nt_tries=$(( $1 * 5 )); shift
    while [ "$_nt_tries" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        _nt_tries=$((_nt_tries - 1))
        sleep 0.2
    done
    return 1
}

# wait_until SECONDS CMD...: like wait_for, but by the clock, for commands
# that take time themselves.
wait_until() {
    _nt_end=$(( $(date +%s) + $1 )); shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s)" -ge "$_nt_end" ] && return 1
        sleep 0.2
    done
}

state_get() { sed -n "s/^$2=//p" "$1"; }

status_row() { numatierctl status | awk -v n="$1" 'NR > 2 && $1 == n'; }

# start_daemon [INI LINES...]: extra lines are appended to the [daemon]
# section, e.g. start_daemon "mode = advise".
start_daemon() {
    mkdir -p /tmp/numatierd.conf.d
    {
        echo "[daemon]"
        echo "cycle_interval = 1s"
        for l in "$@"; do echo "$l"; done
    } > /tmp/numatierd.conf
    numatierd --config /tmp/numatierd.conf --config-dir /tmp/numatierd.conf.d \
        > "$NT_DAEMON_LOG" 2>&1 3>&- &
    NT_DAEMON_PID=$!
    if ! wait_for 20 numatierctl status; then
        kill -0 "$NT_DAEMON_PID" 2>/dev/null || fail "numatierd exited at start"
        fail "numatierd did not answer within 20 s"
    fi
}

NT_MEMHOG_N=0
start_memhog() {
    NT_MEMHOG_N=$((NT_MEMHOG_N + 1))
    MEMHOG_STATE=/tmp/memhog.$NT_MEMHOG_N.state
    MEMHOG_OUT=/tmp/memhog.$NT_MEMHOG_N.out
    rm -f "$MEMHOG_STATE"
    memhog --state "$MEMHOG_STATE" "$@" > "$MEMHOG_OUT" 2>&1 3>&- &
    MEMHOG_PID=$!
    if ! wait_for 30 test -s "$MEMHOG_STATE"; then
        cat "$MEMHOG_OUT"
        fail "memhog $* did not become ready"
    fi
}

# ---- for benchmarks and demos (tests/vm/bench/, tests/vm/demo/) ----------
# kernel_arg KEY [DEFAULT]   value of KEY=VALUE on the kernel command line
#                            (run.py --append 'KEY=VALUE'), else DEFAULT
# bench_out TEXT...          print TEXT and send `@@BENCH TEXT` to the host,
#                            which appends it to run.py --bench-out FILE
# vmstat_get KEY             a counter from /proc/vmstat
# cpu_ticks PID              utime + stime of PID in clock ticks (USER_HZ)
# now_ms                     monotonic-enough wall clock in milliseconds
kernel_arg() {
    for _nt_a in $(cat /proc/cmdline); do
        case $_nt_a in "$1="*) echo "${_nt_a#*=}"; return 0 ;; esac
    done
    echo "${2:-}"
}

bench_out() {
    echo "$*"
    _nt_chan 2>/dev/null && echo "@@BENCH $*" >&3
    return 0
}

vmstat_get() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }

# Fields 14 and 15 of /proc/PID/stat; the comm (field 2) may hold blanks, so
# count from after its closing parenthesis.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'; }

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# ---- memory blocks, offline jobs and JSON (offline-*.sh) -----------------
# json_get FILE KEY          value of "KEY" in numatierctl's pretty JSON: the
#                            occurrence nearest the top level wins; strings
#                            unquoted; fails if absent
# json_array FILE NAME KEY...  one line per element of array NAME (flat
#                            objects): the KEYs' values joined by '|'
# block_states               "ID state zones" for every memory block (zones:
#                            valid_zones with commas), sorted by ID
# node_blocks NODE           the memory block ids of NODE, ascending
# block_set ID WORD          write WORD (online_movable, offline, ...) to the
#                            block's state under a 30 s timeout
# checksum_ok PID OUT        ask a memhog/pinhog for its checksum (SIGUSR1)
#                            and succeed if OUT gains "CHECKSUM OK"
# ctl_run FILE ARGS...       run `numatierctl ARGS` with stdout+stderr in
#                            FILE, echo it, return numatierctl's exit code
# start_pinhog ARGS...       start a pinhog (pinned pages), wait for its
#                            state; sets PINHOG_PID, PINHOG_STATE, PINHOG_OUT
json_get() {
    awk -v k="$2" '
        BEGIN { pat = "^ *\"" k "\": " }
        $0 ~ pat {
            ind = match($0, /[^ ]/)
            if (found && ind >= best_ind)
                next
            v = $0; sub(pat, "", v); sub(/,$/, "", v)
            if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\"/, "\"", v) }
            best = v; best_ind = ind; found = 1
        }
        END { if (!found) exit 1; print best }' "$1"
}

json_array() {
    _nt_f=$1; _nt_n=$2; shift 2
    awk -v name="$_nt_n" -v keys="$*" '
        BEGIN { nk = split(keys, K, " "); split("", V) }
        !inarr && $0 ~ "^ *\"" name "\": \\[" { inarr = 1; next }
        !inarr { next }
        /^ *\],?$/ { exit }
        /^ *\{$/ { split("", V); next }
        /^ *\},?$/ {
            out = ""
            for (i = 1; i <= nk; i++) out = out (i > 1 ? "|" : "") V[K[i]]
            print out; next
        }
        match($0, /^ *"[A-Za-z0-9_]+": /) {
            kv = substr($0, RSTART, RLENGTH); sub(/^ *"/, "", kv); sub(/": $/, "", kv)
            v = substr($0, RSTART + RLENGTH); sub(/,$/, "", v)
            if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\"/, "\"", v) }
            V[kv] = v
        }' "$_nt_f"
}

block_states() {
    for _nt_d in /sys/devices/system/memory/memory[0-9]*; do
        echo "${_nt_d##*/memory} $(cat "$_nt_d/state") $(cat "$_nt_d/valid_zones" 2>/dev/null | tr ' ' ,)"
    done | sort -n
}

node_blocks() {
    ls -d /sys/devices/system/node/node"$1"/memory[0-9]* 2>/dev/null | sed 's/.*memory//' | sort -n
}

# holed_blocks NODE: its online blocks that System RAM in /proc/iomem does
# not cover whole (a firmware reservation inside, as QEMU makes at the top
# of low memory): the kernel refuses to offline them, and so does the plan.
holed_blocks() {
    _nt_bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
    sed -n 's/^ *\([0-9a-f]*\)-\([0-9a-f]*\) : System RAM.*/\1 \2/p' /proc/iomem > /tmp/.nt_ram
    for _nt_b in $(node_blocks "$1"); do
        [ "$(cat /sys/devices/system/memory/memory"$_nt_b"/state)" = online ] || continue
        _nt_lo=$((_nt_b * _nt_bs)) _nt_cov=0
        _nt_hi=$((_nt_lo + _nt_bs))
        while read -r _nt_s _nt_e; do
            _nt_s=$((0x$_nt_s)) _nt_e=$((0x$_nt_e + 1))
            [ "$_nt_s" -lt "$_nt_lo" ] && _nt_s=$_nt_lo
            [ "$_nt_e" -gt "$_nt_hi" ] && _nt_e=$_nt_hi
            [ "$_nt_e" -gt "$_nt_s" ] && _nt_cov=$((_nt_cov + _nt_e - _nt_s))
        done < /tmp/.nt_ram
        if [ "$_nt_cov" -lt "$_nt_bs" ]; then echo "$_nt_b"; fi
    done
    return 0
}

block_set() {
    timeout 30 sh -c "echo $2 > /sys/devices/system/memory/memory$1/state"
}

checksum_ok() {
    _nt_n=$(grep -c CHECKSUM "$2" 2>/dev/null)
    kill -USR1 "$1" 2>/dev/null || return 1
    wait_for 30 sh -c "[ \$(grep -c CHECKSUM '$2') -gt ${_nt_n:-0} ]" || return 1
    tail -n 5 "$2" | grep CHECKSUM | tail -n 1 | grep -q "CHECKSUM OK"
}

ctl_run() {
    _nt_out=$1; shift
    numatierctl "$@" > "$_nt_out" 2>&1
    _nt_rc=$?
    echo "\$ numatierctl $* -> exit $_nt_rc"
    cat "$_nt_out"
    return $_nt_rc
}

NT_PINHOG_N=0
start_pinhog() {
    NT_PINHOG_N=$((NT_PINHOG_N + 1))
    PINHOG_STATE=/tmp/pinhog.$NT_PINHOG_N.state
    PINHOG_OUT=/tmp/pinhog.$NT_PINHOG_N.out
    rm -f "$PINHOG_STATE"
    pinhog --state "$PINHOG_STATE" "$@" > "$PINHOG_OUT" 2>&1 3>&- &
    PINHOG_PID=$!
    if ! wait_for 30 test -s "$PINHOG_STATE"; then
        cat "$PINHOG_OUT"
        fail "pinhog $* did not become ready"
    fi
}

# ---- scenarios with several boots (run.py header `# boots: N`) -----------
# boot_number                the boot this is, 1..N (kernel arg numatier.boot)
# mount_disk DIR             mount the scenario's disk (/dev/vda, blank at
#                            first) on DIR, formatting it in boot 1; the
#                            guest's /init unmounts it before power-off
boot_number() { kernel_arg numatier.boot 1; }

mount_disk() {
    # ext4 mounts the ext2 file system busybox makes; it wants crc32c from
    # the crypto API, whose module alias the initramfs cannot resolve.
    for m in virtio-blk crc32c-generic ext4; do
        modprobe "$m" || fail "cannot load module $m"
    done
    wait_for 10 test -b /dev/vda || fail "no disk /dev/vda (is the scenario's header '# boots: N'?)"
    if [ "$(boot_number)" = 1 ]; then
        mke2fs -q /dev/vda >/dev/null || fail "mke2fs /dev/vda failed"
    fi
    mkdir -p "$1"
    mount -t ext4 /dev/vda "$1" || fail "cannot mount /dev/vda on $1"
}
