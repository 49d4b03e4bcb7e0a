#!/bin/sh
# topology: 2node
# cpu: max,vendor=GenuineIntel
# append: ras=cec_disable movablecore=256M nokaslr
# boots: 2
# timeout: 120
#
# ECC scenario d): the ledger outlives a reboot. It lives on the scenario's
# disk (virtio-blk, ext2 through the ext4 driver). Boot 1: two corrected
# errors at a workload's frame, numatierd soft-offlines it, stops cleanly,
# the disk is unmounted. Boot 2: the kernel has forgotten the soft offline
# (HardwareCorrupted 0); numatierd, started on the same ledger, offlines
# the frame again at startup (HardwareCorrupted 4 kB, the ledger and its
# log say re-offline after reboot), acts on nothing else, and the ledger
# check passes: two successful offlines of one frame, one per boot.
# After a reboot the frame holds whatever the new boot put there, at times
# a page the kernel cannot move just then (being allocated, freed or
# migrated: EIO, "unhandlable page"); numatierd retries a re-offline after
# EIO with backoff. What must not be there is the kernel itself: so the
# frame is taken from ZONE_MOVABLE (movablecore=), where the kernel
# allocates nothing once booted, and both boots lay out memory alike
# (nokaslr: physical KASLR could load the kernel image on that frame, and
# then no retry helps).
. /lib/numatier-vm.sh

DISK=/mnt/disk
LEDGER=$DISK/ledger.db
hc() { awk '/HardwareCorrupted/ { print $2 }' /proc/meminfo; }
conf() { start_daemon "[procs]" "include_comm = nothing" "[ras]" "ledger = $LEDGER"; }
ras_json() { numatierctl ras --json; }
offlined() { ras_json | grep -q '"state": "offlined"'; }
# A number from the daemon's own counters ("daemon" comes first).
daemon_count() { ras_json | awk -v k="\"$1\":" '$1 == k { gsub(/,/, "", $2); print $2; exit }'; }
# Is the pfn in a node's Movable zone?
in_movable() {
    awk -v p="$1" '/^Node .* zone/ { m = ($4 == "Movable") }
        m && $1 == "spanned" { n = $2 } m && $1 == "start_pfn:" { if (p >= $2 && p < $2 + n) ok = 1 }
        END { exit !ok }' /proc/zoneinfo
}
stop_daemon() {
    kill -TERM "$NT_DAEMON_PID"
    wait "$NT_DAEMON_PID"
    rc=$?
    NT_DAEMON_PID=
    [ "$rc" = 0 ] || fail "numatierd exited with status $rc on SIGTERM"
}

mount_disk "$DISK"
echo "boot $(boot_number): boot id $(cat /proc/sys/kernel/random/boot_id)"

if [ "$(boot_number)" = 1 ]; then
    for f in /sys/devices/system/machinecheck/machinecheck*/check_interval; do echo 1 > "$f"; done
    start_memhog --mib 8 --hot-pct 0
    pfn=$(state_get "$MEMHOG_STATE" pfn0)
    [ "${pfn:-0}" -gt 0 ] || fail "no frame for memhog's page"
    in_movable "$pfn" || fail "memhog's frame $pfn is not in ZONE_MOVABLE: $(grep -A8 Movable /proc/zoneinfo)"
    ADDR=$(printf '0x%x' $((pfn * 4096)))
    HC0=$(hc)
    conf
    inject() { host mce 0 8 0x9c0000000000009f 0 "$ADDR" 0x8c >/dev/null || fail "host mce injection failed"; }
    inject; sleep 2; inject
    wait_until 30 offlined || fail "frame not offlined after two errors: $(numatierctl ras)"
    [ "$(hc)" -eq $((HC0 + 4)) ] || fail "HardwareCorrupted is $(hc) kB, expected $((HC0 + 4))"
    numatierctl ras | head -n 8
    echo "$ADDR" > "$DISK/frame"
    stop_daemon
    kill "$MEMHOG_PID"
    sync
    umount "$DISK" || fail "cannot unmount $DISK"
    echo "boot 1: frame $ADDR offlined, ledger on the disk; rebooting"
    pass
fi

# ---- boot 2 ----------------------------------------------------------------
ADDR=$(cat "$DISK/frame") || fail "boot 1 left no frame on the disk"
[ -s "$LEDGER" ] || fail "boot 1 left no ledger on the disk"
HC0=$(hc)
echo "boot 2: frame $ADDR from boot 1; HardwareCorrupted ${HC0} kB"
[ "$HC0" -eq 0 ] || fail "HardwareCorrupted is $HC0 kB before numatierd started: not a fresh boot?"
conf
wait_until 90 offlined || fail "the frame was not offlined again: $(numatierctl ras | head -n 12)"
numatierctl ras --check > /tmp/ras.txt; rc=$?
cat /tmp/ras.txt
[ "$rc" = 0 ] || fail "the ledger check failed after the reboot (numatierctl ras --check: $rc)"

grep -q "$(printf '0x%014x' $((ADDR)))" /tmp/ras.txt || fail "numatierctl ras does not list $ADDR"
grep -q "re-offline after reboot: soft-offlined" /tmp/ras.txt || fail "the ledger does not say the frame was offlined again"
grep -q "frame $(printf '0x%x' $((ADDR >> 12))).*re-offline after reboot" "$NT_DAEMON_LOG" ||
    fail "no re-offline line in numatierd's log"
[ "$(hc)" -eq $((HC0 + 4)) ] || fail "HardwareCorrupted is $(hc) kB after the restart, expected $((HC0 + 4))"

# Nothing else acted on: one frame offline, one action this boot, no new events.
[ "$(daemon_count offlined)" = 1 ] || fail "numatierd offlined $(daemon_count offlined) frames in boot 2"
[ "$(daemon_count failed)" = 0 ] || fail "numatierd failed $(daemon_count failed) offlines in boot 2"
[ "$(numatierctl ras --check --json | awk '$1 == "\"frames_offline\":" { gsub(/,/, "", $2); print $2 }')" = 1 ] ||
    fail "the ledger has more than one frame offline"
[ "$(numatierctl ras --check --json | awk '$1 == "\"offlines_done\":" { gsub(/,/, "", $2); print $2 }')" = 2 ] ||
    fail "the ledger does not hold exactly two successful offlines (one per boot)"
attempts=$(ras_json | awk '/"offlined"/ { o = 1 } o && /"attempts":/ { gsub(/,/, "", $2); print $2; exit }')
echo "the frame's attempts: $attempts (one in boot 1; in boot 2 one, or more after EIO)"
[ "$attempts" -ge 2 ] || fail "the frame has $attempts attempts, expected one per boot at least"
stop_daemon
pass
