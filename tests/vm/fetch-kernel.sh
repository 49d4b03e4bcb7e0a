#!/bin/sh
# Fetch the guest kernel for the VM test bed into a private cache, without
# touching the host's apt sources.  Idempotent: once the cache holds an
# unpacked kernel this exits at once, with no network.
#
#   tests/vm/fetch-kernel.sh [CACHE_DIR]      (default: $HOME/.cache/numatier)
#   VM_REFRESH=1   fetch again even when cached (picks up a newer 6.12 ABI)
#   VM_MIRROR=URL  Debian mirror (default: the host's own, from its sources)
#
# Result: CACHE/kernel/current -> CACHE/kernel/<kver>/ holding vmlinuz,
# modules/ (decompressed .ko files the scenarios need, plus modules.dep),
# kver, and want (the WANT_MODULES it was made for).
set -eu

CACHE=${1:-${VM_CACHE:-${HOME}/.cache/numatier}}
KDIR=$CACHE/kernel
# Modules the scenarios load; their dependencies come along via modules.dep.
# virtio-blk, ext4 and crc32c-generic (which ext4 asks the crypto API for by
# an alias the initramfs cannot resolve) give a scenario a persistent disk.
WANT_MODULES="mce-inject hwpoison-inject virtio-blk ext4 crc32c-generic"

log() { echo "fetch-kernel: $*" >&2; }

# The cache is current when it was made for this WANT_MODULES: a change of
# the list unpacks the kernel again (from the cached package, offline, when
# it is still there), so a new scenario's modules always arrive.
DEB=
if [ "${VM_REFRESH:-0}" != 1 ] && [ -f "$KDIR/current/stamp" ]; then
    [ "$(cat "$KDIR/current/want" 2>/dev/null)" = "$WANT_MODULES" ] && exit 0
    log "modules wanted changed: unpacking the kernel again"
    PKG=linux-image-$(cat "$KDIR/current/kver")
    DEB=$(ls "$CACHE/debs/${PKG}_"*.deb 2>/dev/null | sort -V | tail -n 1)
fi

# The host's Debian mirror: the first URI ending in /debian in its sources.
host_mirror() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        sed -n -e 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' \
               -e 's/^[[:space:]]*URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]]*$/\1/p' "$f"
    done | head -n 1
}
MIRROR=${VM_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

APTDIR=$CACHE/apt
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$CACHE/debs" "$KDIR"
echo "deb $MIRROR bookworm-backports main" > "$APTDIR/sources.list"
set -- -o Dir::Etc::SourceList="$APTDIR/sources.list" \
       -o Dir::Etc::SourceParts=/dev/null \
       -o Dir::State::Lists="$APTDIR/lists" \
       -o Dir::Cache="$APTDIR/cache" \
       -o APT::Sandbox::User=root

if [ -z "$DEB" ]; then
    log "apt-get update ($MIRROR bookworm-backports)"
    apt-get -q "$@" update >&2

    PKG=$(apt-cache "$@" pkgnames linux-image-6.12. |
          grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' | sort -V | tail -n 1)
    [ -n "$PKG" ] || { log "no linux-image-6.12.*+deb12-amd64 in bookworm-backports"; exit 1; }

    if ! ls "$CACHE/debs/${PKG}_"*.deb >/dev/null 2>&1; then
        log "downloading $PKG"
        (cd "$CACHE/debs" && apt-get -q "$@" download "$PKG" >&2)
    fi
    DEB=$(ls "$CACHE/debs/${PKG}_"*.deb | sort -V | tail -n 1)
fi
KVER=${PKG#linux-image-}

# Unpack into a scratch dir, keep only what the guest needs, then publish
# atomically so an interrupted run never leaves a half-made cache.
TMP=$KDIR/.tmp.$$
trap 'rm -rf "$TMP"' EXIT INT TERM
rm -rf "$TMP"; mkdir -p "$TMP/root" "$TMP/out/modules"
log "unpacking $(basename "$DEB")"
dpkg -x "$DEB" "$TMP/root"
cp "$TMP/root/boot/vmlinuz-$KVER" "$TMP/out/vmlinuz"
cp "$TMP/root/boot/config-$KVER" "$TMP/out/config"
MODROOT=$TMP/root/lib/modules/$KVER
[ -d "$MODROOT" ] || MODROOT=$TMP/root/usr/lib/modules/$KVER

# Close WANT_MODULES over their dependencies (the package ships no
# modules.dep; modinfo reads .ko.xz) and write a modules.dep for the copies.
find_mod() {
    a=$(echo "$1" | tr _ -); b=$(echo "$1" | tr - _)
    find "$MODROOT/kernel" \( -name "$a.ko*" -o -name "$b.ko*" \) | head -n 1
}
unpack() {
    case $1 in
        *.xz)  if command -v xz >/dev/null; then xz -dc "$1"; else busybox xz -dc "$1"; fi ;;
        *.zst) zstd -dc "$1" ;;
        *.gz)  gzip -dc "$1" ;;
        *)     cat "$1" ;;
    esac
}
[ -d "$MODROOT/kernel" ] || { log "no modules in $DEB"; exit 1; }
todo=$WANT_MODULES; done_list=""
: > "$TMP/out/modules/modules.dep"
while [ -n "$todo" ]; do
    set -- $todo; m=$(echo "$1" | tr _ -); shift; todo="$*"
    case " $done_list " in *" $m "*) continue ;; esac
    done_list="$done_list $m"
    path=$(find_mod "$m")
    [ -n "$path" ] || { log "module $m not found in $DEB"; exit 1; }
    unpack "$path" > "$TMP/out/modules/$m.ko"
    names=""
    for d in $(modinfo -F depends "$path" | tr , ' '); do
        d=$(echo "$d" | tr _ -)
        names="$names $d.ko"; todo="$todo $d"
    done
    echo "$m.ko:$names" >> "$TMP/out/modules/modules.dep"
done

echo "$KVER" > "$TMP/out/kver"
echo "$WANT_MODULES" > "$TMP/out/want"
date -u +%FT%TZ > "$TMP/out/stamp"
rm -rf "${KDIR:?}/${KVER:?}"
mv "$TMP/out" "$KDIR/$KVER"
ln -sfn "$KVER" "$KDIR/current"
# Drop other kernels and packages: only the current one is ever used.
for d in "$KDIR"/*; do
    [ "${d##*/}" = current ] || [ "${d##*/}" = "$KVER" ] || rm -rf "$d"
done
for d in "$CACHE"/debs/*.deb; do
    [ "$d" = "$DEB" ] || rm -f "$d"
done
log "kernel $KVER ready in $KDIR/current"
