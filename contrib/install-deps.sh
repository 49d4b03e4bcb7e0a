#!/bin/sh
# Install every Debian package numatier needs to build, test and demo.
# Idempotent: does nothing (and touches no network) when all are present.
set -eu

PACKAGES="build-essential pkg-config
libnuma-dev libpfm4-dev libsystemd-dev libinih-dev libjson-c-dev
libsqlite3-dev libcmocka-dev
qemu-system-x86 busybox-static cpio socat python3 xz-utils kmod
numactl numad systemd util-linux procps"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
