#!/bin/bash
# Host integration tests: the real daemon and CLI on this machine.
# Usage: tests/integration/run.sh BUILD_DIR
set -u
BUILD=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
D=$BUILD/numatierd
CTL=$BUILD/numatierctl

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# check NAME COMMAND...: pass when the command succeeds.
check() { local n=$1; shift; if "$@" >/dev/null; then pass "$n"; else fail "$n" "'$*' failed"; fi; }

TMP=$(mktemp -d /tmp/numatier-it.XXXXXX)
chmod 755 "$TMP"
DPID=
NPID=
SLEEPER=
cleanup() {
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
    [ -n "$NPID" ] && kill "$NPID" 2>/dev/null
    [ -n "$SLEEPER" ] && kill "$SLEEPER" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

SOCK=$TMP/run/numatierd.sock
CONF=$TMP/numatierd.conf
write_conf() {    # write_conf CYCLE [EXTRA_LINE]
    cat > "$CONF.new" <<EOF
[daemon]
cycle_interval = $1
log_level = debug

[control]
socket = $SOCK
max_clients = 100
request_timeout = 1s
max_request_size = 4K
${2:-}

[procs]
# Watch nothing on the host: these tests are about the daemon, not this machine.
include_comm = numatier-it-nothing

[ras]
ledger = $TMP/ledger.db
EOF
    mv "$CONF.new" "$CONF"
}

wait_for() {      # wait_for SECONDS COMMAND...
    local end=$((SECONDS + $1)); shift
    while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

# ---- configuration checks ---------------------------------------------------
write_conf 1s
check "check-config-valid" "$D" --config "$CONF" --config-dir "$TMP/none" --check-config
"$D" --config "$CONF" --config-dir "$TMP/none" --check-config > "$TMP/eff.txt"
check "check-config-origin" grep -q "cycle_interval = 1s.*$CONF:2" "$TMP/eff.txt"
check "check-config-default-origin" grep -q "mode = enforce.*default" "$TMP/eff.txt"
printf '[daemon]\ncycle_interval = 3 parsecs\n' > "$TMP/bad.conf"
"$D" --config "$TMP/bad.conf" --config-dir "$TMP/none" --check-config 2> "$TMP/bad.err"
rc=$?
[ $rc -eq 78 ] && pass "check-config-invalid-exit-78" || fail "check-config-invalid-exit-78" "exit $rc"
check "check-config-invalid-names-line" grep -q "bad.conf:2" "$TMP/bad.err"
"$D" --config "$TMP/missing.conf" --check-config 2>/dev/null
rc=$?
[ $rc -eq 78 ] && pass "explicit-config-missing" || fail "explicit-config-missing" "exit $rc"

# ---- start the daemon with a stand-in notify socket --------------------------
# A socket file left behind by a crashed instance must not stop a start.
mkdir -p "$TMP/run"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SOCK"
python3 "$HERE/notify_listen.py" "$TMP/notify.sock" "$TMP/notify.log" &
NPID=$!
wait_for 5 test -S "$TMP/notify.sock"
NOTIFY_SOCKET=$TMP/notify.sock WATCHDOG_USEC=2000000 \
    "$D" --config "$CONF" --config-dir "$TMP/none" 2> "$TMP/daemon.log" &
DPID=$!
check "daemon-answers" wait_for 10 "$CTL" --socket "$SOCK" ping
check "notify-ready" wait_for 5 grep -q "READY=1" "$TMP/notify.log"
check "notify-status" wait_for 5 grep -q "STATUS=enforce mode" "$TMP/notify.log"
check "log-priority-prefix" grep -q '^<6>numatierd' "$TMP/daemon.log"

"$CTL" --socket "$SOCK" status > "$TMP/status.txt"
check "status-table" grep -Eq '^ +0  (fast|slow) ' "$TMP/status.txt"
check "status-header" grep -q "^numatierd .*, up .*, mode enforce, cycle 1s" "$TMP/status.txt"
"$CTL" --socket "$SOCK" status --json > "$TMP/status.json"
check "status-json" python3 -c '
import json,sys
s = json.load(open(sys.argv[1]))
t = s["topology"]
assert s["mode"] == "enforce" and s["cycle_interval_usec"] == 1000000
assert len(t["nodes"]) >= 1 and t["nodes"][0]["mem_total_kb"] > 0
assert t["nodes"][0]["distances"][0] == 10
' "$TMP/status.json"
sleep 1.5
check "cycles-advance" python3 -c '
import json,subprocess,sys
s = json.loads(subprocess.check_output([sys.argv[1], "--socket", sys.argv[2], "--json", "status"]))
assert s["cycles"] >= 2, s["cycles"]
' "$CTL" "$SOCK"

# A second instance must not steal the socket of a live one.
"$D" --config "$CONF" --config-dir "$TMP/none" 2> "$TMP/second.log"
rc=$?
[ $rc -eq 1 ] && pass "second-instance-refused" || fail "second-instance-refused" "exit $rc"
check "second-instance-message" grep -q "another numatierd is already answering" "$TMP/second.log"
check "first-instance-still-answers" "$CTL" --socket "$SOCK" ping

# ---- sampling backends on a machine without a PMU ---------------------------
check "status-sampler-json" python3 -c '
import json,subprocess,sys
s = json.loads(subprocess.check_output([sys.argv[1], "--socket", sys.argv[2], "--json", "status"]))
smp = s["watch"]["sampler"]
if smp["backend"] is None:
    # auto with nothing usable: it must say what each backend lacks
    assert "perf:" in smp["unavailable"] and "damon:" in smp["unavailable"], smp
else:
    assert smp["backend"] in ("perf", "damon"), smp
    if smp["backend"] == "damon":
        assert smp["perf_unavailable"], smp
' "$CTL" "$SOCK"
if [ ! -e /sys/bus/event_source/devices/cpu ] && [ ! -e /sys/bus/event_source/devices/ibs_op ]; then
    check "auto-says-why-not-perf" grep -Eq "perf: no PMU with memory sampling.*(falling back to damon|watching processes without sampling)|sampler: no backend can run \(perf: no PMU" "$TMP/daemon.log"
    printf '[sampler]\nbackend = perf\n[control]\nsocket = %s/perf.sock\n' "$TMP" > "$TMP/perf.conf"
    "$D" --config "$TMP/perf.conf" --config-dir "$TMP/none" 2> "$TMP/perf.log"
    rc=$?
    [ $rc -ne 0 ] && pass "backend-perf-refuses-to-start" || fail "backend-perf-refuses-to-start" "exit $rc"
    check "backend-perf-says-why" grep -q "sampler: perf: no PMU with memory sampling" "$TMP/perf.log"
fi
check "status-text-sampler-line" sh -c "'$CTL' --socket '$SOCK' status | grep -Eq '^Sampler: (none \\(perf: |perf, |damon, )'"
check "top-once" "$CTL" --socket "$SOCK" top --once
check "top-bad-pages-refused" python3 -c '
import json,socket,sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
for bad in (-1, 4097, "16"):
    s.sendall((json.dumps({"cmd": "top", "args": {"pages": bad}}) + "\n").encode())
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(4096)
    r = json.loads(line)
    assert r.get("ok") is False and "pages" in json.dumps(r), r
' "$SOCK"
check "top-json" sh -c "'$CTL' --socket '$SOCK' top --once --json | python3 -c 'import json,sys; t=json.load(sys.stdin); assert t[\"procs\"] == [], t'"
"$CTL" --socket "$SOCK" top --sort bogus >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] && pass "top-bad-sort-usage" || fail "top-bad-sort-usage" "exit $rc"

# ---- placement views on a host where nothing is watched ---------------------
check "status-costs-line" sh -c "'$CTL' --socket '$SOCK' status | grep -Eq '^Costs: C_mem [0-9.]+ us/page \\((default|measured|config)'"
check "status-moves-line" sh -c "'$CTL' --socket '$SOCK' status | grep -q '^Moves: 0 thread moves'"
check "plan-empty" sh -c "'$CTL' --socket '$SOCK' plan | grep -q 'nothing to do'"
check "explain-unwatched" sh -c "'$CTL' --socket '$SOCK' explain $$ | grep -q 'not watched'"
"$CTL" --socket "$SOCK" explain notapid >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] && pass "explain-bad-pid-usage" || fail "explain-bad-pid-usage" "exit $rc"
"$CTL" --socket "$SOCK" restore $$ 2> "$TMP/restore.txt"
rc=$?
[ $rc -eq 1 ] && pass "restore-untouched-refused" || fail "restore-untouched-refused" "exit $rc"
check "restore-untouched-message" grep -q "did not change the affinity" "$TMP/restore.txt"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$CTL" --socket "$SOCK" restore $$ 2>/dev/null
rc=$?
[ $rc -eq 4 ] && pass "nonroot-restore-refused" || fail "nonroot-restore-refused" "exit $rc"
check "calibration-in-status" python3 -c '
import json,subprocess,sys
s = json.loads(subprocess.check_output([sys.argv[1], "--socket", sys.argv[2], "--json", "status"]))
cal = s["placement"]["calibration"]
assert cal["c_mem"]["origin"] in ("measured", "default") and cal["c_mem"]["reason"], cal
assert cal["c_thread"]["reason"], cal
' "$CTL" "$SOCK"

# ---- RAS on the host: says what it cannot watch, keeps its ledger ----------
check "ras-runs" "$CTL" --socket "$SOCK" ras
check "ras-ledger-created" test -s "$TMP/ledger.db"
check "ras-json-ledger" python3 -c '
import json,subprocess,sys
r = json.loads(subprocess.check_output([sys.argv[1], "--socket", sys.argv[2], "--json", "ras"]))
d = r["daemon"]
assert d["ledger"] is True, d
assert d["events_enabled"] or d["unavailable"], d        # one or the other, said plainly
assert r["ledger"]["schema"] >= 2 and r["ledger"]["stats"]["events"] == 0, r["ledger"]
' "$CTL" "$SOCK"
check "ras-check" "$CTL" --socket "$SOCK" ras --check
check "ras-check-json" python3 -c '
import json,subprocess,sys
r = json.loads(subprocess.check_output([sys.argv[1], "--socket", sys.argv[2], "--json", "ras", "--check"]))
assert r["integrity"]["ok"] is True and r["integrity"]["problems"] == [], r["integrity"]
' "$CTL" "$SOCK"

# ---- numastat parity -------------------------------------------------------
"$CTL" stat > "$TMP/stat.txt"; numastat -m > "$TMP/numastat-m.txt"
check "stat-m-parity" python3 "$HERE/compare_numastat.py" m "$TMP/stat.txt" "$TMP/numastat-m.txt"
sleep 600 &
SLEEPER=$!
sleep 0.2
"$CTL" stat -p $SLEEPER > "$TMP/statp.txt"; numastat -p $SLEEPER > "$TMP/numastat-p.txt"
check "stat-p-parity" python3 "$HERE/compare_numastat.py" p "$TMP/statp.txt" "$TMP/numastat-p.txt"
"$CTL" stat -p $$ > "$TMP/statp2.txt"; numastat -p $$ > "$TMP/numastat-p2.txt"
check "stat-p-self-shell-parity" python3 "$HERE/compare_numastat.py" p "$TMP/statp2.txt" "$TMP/numastat-p2.txt"
check "stat-p-json" sh -c "'$CTL' stat -p $SLEEPER --json | python3 -c 'import json,sys; json.load(sys.stdin)'"
"$CTL" stat -p 999999999 >/dev/null 2>&1
rc=$?
[ $rc -eq 5 ] && pass "stat-p-no-such-pid" || fail "stat-p-no-such-pid" "exit $rc"

# ---- permissions: read-only for everyone, changes for root only --------------
NOBODY="setpriv --reuid=nobody --regid=nogroup --clear-groups"
check "nonroot-status-allowed" $NOBODY "$CTL" --socket "$SOCK" status
$NOBODY "$CTL" --socket "$SOCK" reload 2> "$TMP/denied.txt"
rc=$?
[ $rc -eq 4 ] && pass "nonroot-reload-refused" || fail "nonroot-reload-refused" "exit $rc"
check "nonroot-refusal-message" grep -q "needs root" "$TMP/denied.txt"
check "nonroot-mode-read" sh -c "$NOBODY '$CTL' --socket '$SOCK' mode | grep -qx enforce"
$NOBODY "$CTL" --socket "$SOCK" mode advise 2>/dev/null
rc=$?
[ $rc -eq 4 ] && pass "nonroot-mode-set-refused" || fail "nonroot-mode-set-refused" "exit $rc"

# ---- mode: switched at run time by root, until the next reload -------------
check "mode-set-advise" sh -c "'$CTL' --socket '$SOCK' mode advise | grep -qx advise"
check "mode-status-advise" sh -c "'$CTL' --socket '$SOCK' status | grep -q 'mode advise'"
check "mode-logged" wait_for 5 grep -q "mode enforce -> advise, asked by pid" "$TMP/daemon.log"
"$CTL" --socket "$SOCK" mode bogus 2>/dev/null
rc=$?
[ $rc -eq 2 ] && pass "mode-bogus-usage" || fail "mode-bogus-usage" "exit $rc"
check "mode-bogus-over-socket" python3 -c '
import json,socket,sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"{\"cmd\": \"mode\", \"args\": {\"mode\": \"fast\"}}\n")
r = json.loads(s.makefile().readline())
assert r["ok"] is False and "enforce or advise" in json.dumps(r), r
' "$SOCK"

# ---- reload: good, then bad, over SIGHUP and over the socket ------------------
write_conf 2s
kill -HUP $DPID
check "sighup-good-reload" wait_for 5 sh -c "'$CTL' --socket '$SOCK' status | grep -q 'cycle 2s'"
check "notify-reloading" grep -q "RELOADING=1" "$TMP/notify.log"
write_conf 2s "bogus_key = 1"
kill -HUP $DPID
check "sighup-bad-reload-logged" wait_for 5 grep -q "numatierd.conf:10" "$TMP/daemon.log"
check "bad-reload-keeps-old" sh -c "'$CTL' --socket '$SOCK' status | grep -q 'cycle 2s'"
check "bad-reload-reported" sh -c "'$CTL' --socket '$SOCK' status | grep -q 'Reloads: .* 1 failed'"
"$CTL" --socket "$SOCK" reload 2> "$TMP/reload-bad.txt"
rc=$?
[ $rc -eq 1 ] && pass "ctl-bad-reload-refused" || fail "ctl-bad-reload-refused" "exit $rc"
check "ctl-bad-reload-message" grep -q "numatierd.conf:10" "$TMP/reload-bad.txt"
write_conf 1s
check "ctl-good-reload" "$CTL" --socket "$SOCK" reload
check "ctl-good-reload-applied" sh -c "'$CTL' --socket '$SOCK' status | grep -q 'cycle 1s'"
check "reload-restores-config-mode" sh -c "'$CTL' --socket '$SOCK' mode | grep -qx enforce"

# ---- protocol abuse --------------------------------------------------------
if python3 "$HERE/ctl_abuse.py" "$SOCK" 4096 1 > "$TMP/abuse.txt" 2>&1; then
    pass "ctl-abuse"
else
    fail "ctl-abuse" "$(grep FAIL "$TMP/abuse.txt" | tr '\n' ';')"
fi
check "alive-after-abuse" "$CTL" --socket "$SOCK" status

# ---- offline / online / drain / jobs (issue 7) --------------------------------
# Nothing here changes a memory block: on the host only dry runs, refusals
# and argument errors. The real jobs run in the VM scenarios (offline-*).
# usage_error NAME ARGS...: exit 2 and a message naming the problem on stderr.
usage_error() {
    local n=$1; shift
    "$CTL" --socket "$SOCK" "$@" > /dev/null 2> "$TMP/usage.err"
    local rc=$?
    if [ $rc -eq 2 ] && grep -q "^numatierctl: " "$TMP/usage.err" && grep -q "usage:" "$TMP/usage.err"; then
        pass "$n"
    else
        fail "$n" "exit $rc: $(head -1 "$TMP/usage.err")"
    fi
}
usage_error "offline-block-backwards" offline block 5-3
check "offline-block-backwards-says-why" grep -q "ends before it starts" "$TMP/usage.err"
usage_error "offline-range-without-end" offline range 0x1000
check "offline-range-without-end-says-why" grep -q "START-END" "$TMP/usage.err"
usage_error "offline-unknown-option" offline node 0 --bogus
check "offline-unknown-option-named" grep -q -- '"--bogus"' "$TMP/usage.err"
usage_error "offline-no-target" offline
usage_error "offline-bad-timeout" offline node 0 --timeout 0
usage_error "offline-wait-and-detach" offline node 0 --wait --detach
usage_error "drain-only-nodes" drain block 3
usage_error "jobs-bad-id" jobs x1
check "offline-help" sh -c "'$CTL' offline --help | grep -q 'block N\\[-M\\] | range START-END | node N'"

# The rest needs the daemon side of the protocol (daemon/hotplug*.c and the
# "offline"/"online"/"drain"/"jobs" commands in daemon/manager.c).
check "jobs-fresh-daemon-empty" sh -c "$NOBODY '$CTL' --socket '$SOCK' jobs | grep -qx '(no jobs)'"
check "jobs-json-any-user" sh -c "$NOBODY '$CTL' --socket '$SOCK' jobs --json | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"jobs\"] == []'"
"$CTL" --socket "$SOCK" jobs 4242 2> "$TMP/jobs-missing.err"
rc=$?
[ $rc -eq 1 ] && pass "jobs-unknown-id-exit-1" || fail "jobs-unknown-id-exit-1" "exit $rc"
check "jobs-unknown-id-message" grep -qi "job" "$TMP/jobs-missing.err"
for args in "offline block 0 --dry-run" "online node 0 --dry-run" "drain node 0 --dry-run"; do
    $NOBODY "$CTL" --socket "$SOCK" $args > /dev/null 2> "$TMP/denied-offline.txt"
    rc=$?
    [ $rc -eq 4 ] && pass "nonroot-${args%% *}-refused" || fail "nonroot-${args%% *}-refused" "exit $rc"
done
check "nonroot-offline-needs-root-message" grep -q "needs root" "$TMP/denied-offline.txt"
# A block that does not exist: the plan refuses (no-targets), exit 6.
"$CTL" --socket "$SOCK" offline block 2147483647 --dry-run 2> "$TMP/no-targets.err"
rc=$?
[ $rc -eq 6 ] && pass "offline-no-such-block-refused-6" || fail "offline-no-such-block-refused-6" "exit $rc"
check "offline-refusal-message" grep -q "^numatierctl: offline refused (no-targets): " "$TMP/no-targets.err"
# Block 0 is boot memory: the plan either lays out a dry run or refuses;
# either way with a verdict and a reason for it, and nothing changes.
cat /sys/devices/system/memory/memory0/state > "$TMP/block0.before" 2>/dev/null
"$CTL" --socket "$SOCK" offline block 0 --dry-run --json > "$TMP/dry0.json" 2> "$TMP/dry0.err"
rc=$?
if [ $rc -eq 0 ]; then
    check "offline-dry-run-plan-json" python3 -c '
import json,sys
p = json.load(open(sys.argv[1]))
assert p["op"] == "offline" and p["message"], p
assert [s["block"] for s in p["steps"]] == [0], p["steps"]
assert p["steps"][0]["verdict"] in ("do", "may-fail", "skip") and p["steps"][0]["reason"], p["steps"]
' "$TMP/dry0.json"
    check "offline-dry-run-plan-table" sh -c "'$CTL' --socket '$SOCK' offline block 0 --dry-run | grep -Eq '^ +0 +[0-9]+  (do|may-fail|skip) '"
elif [ $rc -eq 6 ]; then
    check "offline-dry-run-refusal-json" python3 -c '
import json,sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is False and r["error"]["code"] in ("infeasible", "insufficient-capacity", "bound-processes"), r
assert "0" in r["error"]["message"], r
' "$TMP/dry0.json"
else
    fail "offline-dry-run-block-0" "exit $rc: $(cat "$TMP/dry0.err")"
fi
check "offline-dry-run-changed-nothing" sh -c "cat /sys/devices/system/memory/memory0/state 2>/dev/null | cmp -s - '$TMP/block0.before'"
check "jobs-still-empty-after-dry-runs" sh -c "'$CTL' --socket '$SOCK' jobs | grep -qx '(no jobs)'"

# ---- clean exit -------------------------------------------------------------
kill -TERM $DPID
wait $DPID
rc=$?
DPID=
[ $rc -eq 0 ] && pass "sigterm-exit-0" || fail "sigterm-exit-0" "exit $rc"
check "socket-removed" test ! -e "$SOCK"
"$CTL" --socket "$SOCK" status 2> "$TMP/down.txt"
rc=$?
[ $rc -eq 3 ] && pass "status-daemon-down-exit-3" || fail "status-daemon-down-exit-3" "exit $rc"
check "status-daemon-down-message" grep -q "is the daemon running" "$TMP/down.txt"

# The runtime directory is created when missing.
SOCK2=$TMP/deeper/run/numatier.sock
printf '[control]\nsocket = %s\n' "$SOCK2" > "$TMP/c2.conf"
"$D" --config "$TMP/c2.conf" --config-dir "$TMP/none" 2>/dev/null &
D2=$!
check "runtime-dir-created" wait_for 5 test -S "$SOCK2"
kill -TERM $D2; wait $D2

# ---- install and the unit file ---------------------------------------------
DEST=$TMP/dest
make -s -C "$REPO" BUILD="$BUILD" DESTDIR="$DEST" PREFIX=/usr/local install >/dev/null
for f in usr/local/sbin/numatierd usr/local/bin/numatierctl etc/numatier/numatierd.conf \
         lib/systemd/system/numatierd.service usr/local/share/man/man8/numatierd.8 \
         usr/local/share/man/man8/numatierctl.8 usr/local/share/man/man5/numatierd.conf.5; do
    check "install-$f" test -f "$DEST/$f"
done
check "installed-config-valid" "$DEST/usr/local/sbin/numatierd" --config "$DEST/etc/numatier/numatierd.conf" \
    --config-dir "$TMP/none" --check-config >/dev/null
if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/local/sbin/numatierd|$DEST/usr/local/sbin/numatierd|" \
        "$REPO/contrib/systemd/numatierd.service" > "$TMP/numatierd.service"
    MANPATH=$DEST/usr/local/share/man systemd-analyze verify "$TMP/numatierd.service" > "$TMP/verify.txt" 2>&1
    if [ $? -eq 0 ] && [ ! -s "$TMP/verify.txt" ]; then
        pass "systemd-analyze-verify"
    else
        fail "systemd-analyze-verify" "$(cat "$TMP/verify.txt")"
    fi
fi

if [ $failed -gt 0 ]; then
    echo "---- daemon log (tail) ----"; tail -20 "$TMP/daemon.log"
fi
echo "integration: $passed passed, $failed failed"
[ $failed -eq 0 ]
