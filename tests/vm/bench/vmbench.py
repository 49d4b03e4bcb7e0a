#!/usr/bin/env python3
"""VM benchmarks for `make bench`: boot one guest per contender, collect the
guests' `@@BENCH | ... |` rows and append Markdown tables to OUT.

    tests/vm/bench/vmbench.py --kernel-dir K --initrd I --logdir D OUT

Guest scripts: tests/vm/bench/converge.sh (one guest per mover and variant)
and tests/vm/bench/mover.sh (numatierd vs migratepages).  Environment:
VM_BENCH_MIB (default 512), VM_BENCH_DEADLINE (s, default 120),
VM_BENCH_ONLY (e.g. "converge" or "mover").
"""
import argparse
import datetime
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "run.py")
TOPOLOGY = "bench2node"  # tests/vm/run.py TOPOLOGIES: node0 cpu 0, node1 cpu 1, 1 GiB each, distance 21
MOVERS = ["numatierd", "numad", "autonuma", "none"]
VARIANTS = ["free", "pinned"]


def guest(args, script, tag, append, rows_file):
    cmd = [sys.executable, RUN, "--kernel-dir", args.kernel_dir, "--initrd", args.initrd,
           "--logdir", args.logdir, "--scenarios", HERE, "--tag", tag,
           "--append", append, "--bench-out", rows_file, script]
    print("vm-bench: %s %s (%s)" % (script, tag, append), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in r.stdout.splitlines():
        if line.startswith(("PASS", "FAIL", "---", "    |")):
            print("  " + line, flush=True)
    return r.returncode == 0


def rows(path, kind):
    out = []
    if os.path.exists(path):
        for line in open(path):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == kind:
                out.append(cells[1:])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel-dir", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--logdir", default="build/vm/logs/bench")
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(args.logdir, exist_ok=True)
    mib = int(os.environ.get("VM_BENCH_MIB", "512"))
    deadline = int(os.environ.get("VM_BENCH_DEADLINE", "120"))
    only = os.environ.get("VM_BENCH_ONLY", "")
    common = "numatier.bench.mib=%d numatier.bench.deadline=%d" % (mib, deadline)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        rf = os.path.join(tmp, "rows")
        if only in ("", "converge"):
            for v in VARIANTS:
                for m in MOVERS:
                    # The baseline only has to show that nothing moves.
                    dl = min(deadline, 30) if m == "none" else deadline
                    app = "numatier.bench.mover=%s numatier.bench.variant=%s numatier.bench.mib=%d " \
                          "numatier.bench.deadline=%d" % (m, v, mib, dl)
                    if not guest(args, "converge", "%s-%s" % (v, m), app, rf):
                        failed.append("converge %s %s" % (v, m))
        if only in ("", "mover"):
            if not guest(args, "mover", "throughput", common, rf):
                failed.append("mover")
        conv, mov, ratio = rows(rf, "converge"), rows(rf, "mover"), rows(rf, "mover-ratio")

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = "QEMU/TCG guest, topology %s (node0 cpu 0, node1 cpu 1, 1 GiB each, distance 21), " \
           "%d MiB, measured %s on %s (`make bench`)" % (TOPOLOGY, mib, date, os.uname().nodename)
    md = ["", "## VM benchmarks", "", head, ""]
    if conv:
        md += [
            "### Convergence: a misplaced workload (memory first-touched on node 1, threads on node 0)", "",
            "memhog, %d MiB, 25%% of it hot (rewritten in a loop), one fresh guest per row. "
            "`free`: threads with no affinity (`--touch-node 1 --cpu-node 0 --free`), so moving "
            "the threads to the memory counts; a nice-19 busy loop on CPU 1 keeps the scheduler "
            "from moving memhog there by itself (without it, an idle CPU 1 drew memhog over within "
            "2 s in a trial run, whatever the mover); `pinned`: threads pinned to node 0's CPU "
            "(`--touch-node 1 --cpu-node 0`), so only moving the pages helps. Local = pages on the node "
            "of the CPU memhog last ran on (its state file, `move_pages` query, polled about once a "
            "second: times are +-1.5 s). Time 0 = mover started. Deadline %d s (30 s for `none`). "
            "Pages migrated = /proc/vmstat `pgmigrate_success` delta (numatierd's includes the pages "
            "of its startup C_mem calibration) and `numa_pages_migrated` (NUMA balancing's). "
            "CPU = the mover's utime+stime (migrate_pages runs in the caller, so the kernel's copy "
            "work counts); `autonuma`'s work runs in the task itself and kworkers: n/a." % (mib, deadline), "",
            "numatierd: `[procs] min_rss = 16M, include_comm = memhog`, `[sampler] backend = damon`, "
            "`[placement] hysteresis = 2, remote_penalty = 2000`: the remote penalty is raised "
            "because under TCG a remote access costs no more than a local one, so with the default "
            "no move would ever pay off. numad: `numad -i 1:2 -l 6` (scans every 1-2 s rather than "
            "5-15 s; it manages only processes over 300 MB and half a CPU). autonuma: "
            "`echo 1 > /proc/sys/kernel/numa_balancing` (guests boot with numa_balancing=disable), "
            "default scan settings. none: nothing moves anything.", "",
            "| variant | mover | 95% of pages local | 95% of hot pages local | local at end | "
            "threads at end | pgmigrate_success | numa_pages_migrated | mover CPU | checksum | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
        md += ["| " + " | ".join(r) + " |" for r in conv]
        md.append("")
    if mov:
        md += [
            "### Mover throughput: numatierd vs migratepages, %d MiB from node 1 to node 0" % mib, "",
            "Same guest, one memhog each (pinned to node 0's CPU, memory on node 1), migratepages "
            "first, after a warm-up that touches 700 MiB of node 0 once (under TCG a guest page's first "
            "use also costs QEMU a host page fault, which otherwise only the first mover pays). "
            "Both movers run on CPU 1 (taskset), away from the busy workload. Both move the "
            "whole process with one migrate_pages(2) call; `syscall` is that call's duration from "
            "the syscalls:sys_enter/exit_migrate_pages tracepoints, and MB/s = pages x 4096 / that "
            "time. So the ratio compares the same kernel work; "
            "what numatierd adds is the time to decide (last column). Under TCG page copies are "
            "emulated: the absolute MB/s are far below hardware's.", "",
            "| tool | pages moved | syscall (s) | MB/s | end to end |",
            "|---|---|---|---|---|"]
        md += ["| " + " | ".join(r) + " |" for r in mov]
        if ratio:
            md += ["", "numatierd / migratepages throughput ratio (syscall time): **%s**" % ratio[0][0]]
        md.append("")
    if failed:
        md += ["Failed guests (see %s): %s" % (args.logdir, ", ".join(failed)), ""]
    text = "\n".join(md) + "\n"
    with open(args.out, "a") as f:
        f.write(text)
    sys.stdout.write(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
