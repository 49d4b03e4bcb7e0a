#!/bin/sh
# Build the VM test bed's initramfs.
#
#   tests/vm/mkinitramfs.sh OUT KERNEL_DIR WORKLOAD_BIN_DIR [BINARY...]
#
# OUT               the cpio archive to write (gzip-compressed)
# KERNEL_DIR        the cache dir made by fetch-kernel.sh (kver, modules/)
# WORKLOAD_BIN_DIR  the static workloads (memhog, ...), copied to /usr/bin
# BINARY...         dynamic binaries (numatierd, numatierctl, numactl,
#                   numastat): copied to /usr/bin with every library ldd
#                   names and the loader.  A missing one is skipped with a
#                   warning, so the bed runs before the daemon is built.
#
# Also packs /init, /lib/numatier-vm.sh, /scenarios/*.sh, /bench/*.sh,
# /demo/*.sh and busybox-static.
# The archive is rewritten only when the hash of all inputs changed
# (OUT.stamp), so calling this on every run is cheap.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 OUT KERNEL_DIR WORKLOAD_BIN_DIR [BINARY...]" >&2; exit 2; }
OUT=$1; KDIR=$2; WBIN=$3; shift 3
VMDIR=$(cd "$(dirname "$0")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
KVER=$(cat "$KDIR/kver")

file "$BUSYBOX" | grep -q 'statically linked' ||
    { echo "mkinitramfs: $BUSYBOX is not static (apt-get install busybox-static)" >&2; exit 1; }

# Every input as "dest<TAB>source"; libraries are found through ldd.
list=$(mktemp); trap 'rm -f "$list"' EXIT
{
    printf '/init\t%s\n' "$VMDIR/guest/init"
    printf '/lib/numatier-vm.sh\t%s\n' "$VMDIR/guest/numatier-vm.sh"
    printf '/bin/busybox\t%s\n' "$BUSYBOX"
    for d in scenarios bench demo; do
        for s in "$VMDIR/$d"/*.sh; do
            [ -e "$s" ] && printf '/%s/%s\t%s\n' "$d" "${s##*/}" "$s"
        done
    done
    for w in "$WBIN"/*; do
        [ -f "$w" ] && [ -x "$w" ] && printf '/usr/bin/%s\t%s\n' "${w##*/}" "$w"
    done
    for m in "$KDIR"/modules/*; do
        printf '/lib/modules/%s/%s\t%s\n' "$KVER" "${m##*/}" "$m"
    done
    for b in "$@"; do
        if [ ! -x "$b" ]; then
            echo "mkinitramfs: warning: $b missing, not packed" >&2
            continue
        fi
        printf '/usr/bin/%s\t%s\n' "${b##*/}" "$b"
        # "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
        ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
        while read -r lib; do printf '%s\t%s\n' "$lib" "$lib"; done
    done
} | sort -u > "$list"

stamp=$( { sha256sum "$0"; cut -f1 "$list"; cut -f2 "$list" | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi

root=$(mktemp -d); trap 'rm -f "$list"; rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" \
         "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" "$root/root" \
         "$root/var/lib/numatier" "$root/etc/numatier"
while IFS="$(printf '\t')" read -r dest src; do
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$src" "$root$dest"
done < "$list"
ln -s busybox "$root/bin/sh"
chmod 0755 "$root/init" "$root"/scenarios/*.sh "$root"/bench/*.sh "$root"/demo/*.sh 2>/dev/null || true
mkdir -p "$root/var/run" "$root/var/log"     # numad's pid file and log
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
: > "$root/etc/ld.so.conf"

mkdir -p "$(dirname "$OUT")"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$stamp" > "$OUT.stamp"
echo "mkinitramfs: wrote $OUT ($(du -k "$OUT" | cut -f1) KiB)" >&2
