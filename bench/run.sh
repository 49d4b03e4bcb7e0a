#!/bin/sh
# Run every benchmark binary; each prints Markdown table rows
# "| benchmark | figure | unit | notes |". Collect them into one table.
set -eu
out=$1; shift
{
    echo "Measured on $(uname -m), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
    echo
    echo "| benchmark | figure | unit | notes |"
    echo "|---|---|---|---|"
    for b in "$@"; do "$b"; done
} | tee "$out"
