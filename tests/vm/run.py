#!/usr/bin/env python3
"""Run numatier VM scenarios, each in a fresh QEMU guest with a NUMA topology.

    tests/vm/run.py --kernel-dir K --initrd I [--logdir D] [-j N] [-v] [NAME...]
    tests/vm/run.py --kernel-dir K --initrd I --shell --topology tiered
    tests/vm/run.py ... --scenarios tests/vm/bench --append 'numatier.bench.mover=numad' \
        --tag numad --bench-out FILE converge

--scenarios DIR other than tests/vm/scenarios runs DIR/NAME.sh, packed in the
initramfs as /<basename DIR>/NAME.sh (bench, demo; kernel arg numatier.dir=).
--append adds kernel arguments, which scripts read with `kernel_arg KEY`.
A guest line `@@BENCH TEXT` on the channel is appended to --bench-out.
--live shows the script's console output as it runs, without boot messages.

A scenario is tests/vm/scenarios/NAME.sh.  Header comments set how it runs:
    # topology: tiered           (2node | tiered | hotplug | bench2node; default 2node)
    # timeout: 60                (seconds, hard limit for each boot of the guest)
    # append: ras=cec_disable    (extra kernel command line)
    # cpu: max,vendor=GenuineIntel   (QEMU -cpu; default max)
    # boots: 2                   (default 1; see below)

With `boots: N` (N > 1) the guest is booted N times in a row, each boot
with kernel argument numatier.boot=I (1-based; `boot_number` in the
helpers) and the same blank raw disk image of DISK_MIB MiB attached as
virtio-blk (/dev/vda, `mount_disk` in the helpers), made afresh for each
run of the scenario; what a boot writes there, the next one finds.  Each
earlier boot must end cleanly (no FAIL, no kernel trouble, no timeout, the
script's exit status 0); the verdict is the last boot's.  The console log
holds every boot, each after a `# boot I of N` line.

Output: one `PASS name` or `FAIL name: reason` line per scenario, then
`N passed, N failed` alone on the last line; exit status 1 if any failed.
A guest kernel panic, oops or BUG, a timeout, or no verdict fails the
scenario; its console log stays in --logdir and its tail is printed.  A
guest that panics while booting, before the scenario starts (a TCG flake),
is booted once more, and the run says so.

Host channel: the guest writes `@@HOST VERB ARGS` on the virtio-serial port
org.numatier.ctl and reads back `@@OK TEXT` or `@@ERR TEXT`; verbs are those
of qmp.do_verb (mce, dimm-add, dimm-del, hmp, raw).  It reports its verdict
with `@@RESULT PASS name` / `@@RESULT FAIL name: reason` and `@@DONE name rc`.
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402

VMDIR = os.path.dirname(os.path.abspath(__file__))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")

# Nodes as (cpulist or None, MiB of boot memory or 0).  Node 2 of `hotplug`
# has no boot memory: it exists (ACPI SRAT hotplug range) to receive DIMMs.
TIERED_DIST = {(0, 1): 21, (0, 2): 30, (1, 2): 30}
TOPOLOGIES = {
    "2node": {"nodes": [("0", 512), ("1", 512)], "dist": {(0, 1): 21}},
    "tiered": {"nodes": [("0", 512), ("1", 512), (None, 512)], "dist": TIERED_DIST},
    "hotplug": {"nodes": [("0", 512), ("1", 512), (None, 0)], "dist": TIERED_DIST},
    # For benchmarks (tests/vm/bench/): room for a 512 MiB workload on either
    # node, above numad's 300 MB threshold.
    "bench2node": {"nodes": [("0", 1024), ("1", 1024)], "dist": {(0, 1): 21}},
}
SLOTS, MAXMEM = 4, "8G"
# numa_balancing=disable: the kernel's own NUMA balancing would move pages
# and tasks behind the daemon's back and make placement scenarios race it.
# A scenario (or benchmark) that wants it sets /proc/sys/kernel/numa_balancing.
BASE_APPEND = "console=ttyS0 quiet panic=-1 mitigations=off numa_balancing=disable"
DEFAULT_TIMEOUT = 60
DISK_MIB = 64   # the disk of a scenario with several boots (sparse)

# Console lines that fail a scenario even if it reported PASS.
KERNEL_TROUBLE = re.compile(
    r"Kernel panic|BUG: |Oops|general protection fault|soft lockup|"
    r"hard LOCKUP|blocked for more than|Attempted to kill init")
KMSG = re.compile(r"\s*(<\d>)?\[\s*\d+\.\d+\] ")  # a kernel message on the console
PANIC = re.compile(r"Kernel panic|Attempted to kill init")


def parse_header(path):
    hdr = {"topology": "2node", "timeout": str(DEFAULT_TIMEOUT), "append": "", "cpu": "max",
           "boots": "1"}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = re.match(r"#\s*(topology|timeout|append|cpu|boots)\s*:\s*(.*?)\s*$", line, re.I)
            if m:
                hdr[m.group(1).lower()] = m.group(2)
    if hdr["topology"] not in TOPOLOGIES:
        raise ValueError("%s: unknown topology %r" % (path, hdr["topology"]))
    hdr["timeout"] = int(hdr["timeout"])
    hdr["boots"] = int(hdr["boots"])
    if not 1 <= hdr["boots"] <= 9:
        raise ValueError("%s: boots must be 1..9, not %d" % (path, hdr["boots"]))
    return hdr


def qemu_cmd(topology, cpu, kernel, initrd, append, tmp, serial, disk=None):
    topo = TOPOLOGIES[topology]
    cpus = [c for c, _ in topo["nodes"] if c is not None]
    total = sum(mib for _, mib in topo["nodes"])
    cmd = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-accel", "tcg,thread=multi", "-cpu", cpu,
           # One socket per CPU: CPUs on different nodes must not share an
           # LLC, or the kernel WARNs in topology_sane() at boot.
           "-smp", "%d,sockets=%d,cores=1,threads=1" % (len(cpus), len(cpus)),
           "-m", "%dM,slots=%d,maxmem=%s" % (total, SLOTS, MAXMEM)]
    for i, (c, mib) in enumerate(topo["nodes"]):
        node = "node,nodeid=%d" % i
        if c is not None:
            node += ",cpus=" + c
        if mib:
            cmd += ["-object", "memory-backend-ram,id=m%d,size=%dM" % (i, mib)]
            node += ",memdev=m%d" % i
        cmd += ["-numa", node]
    for (a, b), d in sorted(topo["dist"].items()):
        cmd += ["-numa", "dist,src=%d,dst=%d,val=%d" % (a, b, d)]
    cmd += ["-kernel", kernel, "-initrd", initrd, "-append", append,
            "-serial", serial,
            "-qmp", "unix:%s/qmp.sock,server=on,wait=off" % tmp,
            "-device", "virtio-serial-pci",
            "-chardev", "socket,id=ctl,path=%s/ctl.sock,server=on,wait=on" % tmp,
            "-device", "virtserialport,chardev=ctl,name=org.numatier.ctl"]
    if disk:
        cmd += ["-drive", "file=%s,if=virtio,format=raw" % disk]
    return cmd


class Channel(threading.Thread):
    """Serves the guest's host requests and collects its verdict."""

    def __init__(self, tmp, log=None):
        super().__init__(daemon=True)
        self.tmp, self.log = tmp, log
        self.results, self.done_rc, self.bench = [], None, []
        self.sock = None

    def connect(self, proc, timeout=10.0):
        # QEMU waits (wait=on) for this connection before it starts the guest.
        path = os.path.join(self.tmp, "ctl.sock")
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                self.sock = s
                return True
            except OSError:
                s.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    return False
                time.sleep(0.02)

    def note(self, text):
        if self.log:
            self.log(text)

    def run(self):
        try:
            self.serve()
        except (OSError, ValueError):  # QEMU went away, or we closed the socket
            pass

    def serve(self):
        f = self.sock.makefile("rwb", buffering=0)
        for raw in f:
            line = raw.decode(errors="replace").strip()
            if line.startswith("@@HOST "):
                words = shlex.split(line[7:])
                try:
                    q = qmp.QMP(os.path.join(self.tmp, "qmp.sock"))
                    try:
                        reply = "@@OK " + qmp.do_verb(q, words[0], words[1:])
                    finally:
                        q.close()
                except Exception as e:  # any failure goes back to the guest
                    reply = "@@ERR %s" % e
                reply = reply.replace("\n", " ")
                self.note("[host] %s -> %s" % (line[2:], reply[2:]))
                f.write(reply.encode() + b"\n")
            elif line.startswith("@@BENCH "):
                self.bench.append(line[8:])
            elif line.startswith("@@RESULT "):
                self.results.append(line[9:])
            elif line.startswith("@@DONE "):
                parts = line.split()
                self.done_rc = int(parts[2]) if len(parts) > 2 and parts[2].lstrip("-").isdigit() else -1


def tail(path, n=40):
    with open(path, errors="replace") as f:
        return f.readlines()[-n:]


class Boot:
    """What one boot of the guest left behind."""

    def __init__(self):
        self.chan = None
        self.lines = []       # its console, for a verdict the channel missed
        self.trouble = []     # kernel trouble lines
        self.timed_out = False
        self.returncode = None


def boot_guest(name, args, hdr, append, tmp, disk, logline, out_lock):
    """Run QEMU once, until the guest powers off or the timeout; a Boot."""
    b = Boot()
    start = time.monotonic()
    cmd = qemu_cmd(hdr["topology"], hdr["cpu"], args.kernel, args.initrd, append, tmp, "stdio", disk)
    logline("# " + " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def console():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            b.lines.append(line)
            logline(line)
            if KERNEL_TROUBLE.search(line):
                if args.live:
                    with out_lock:
                        print("[kernel] " + line, flush=True)
                b.trouble.append(line.strip())
                if PANIC.search(line):
                    # panic=-1 reboots, -no-reboot then exits; be sure.
                    t = threading.Timer(3.0, proc.kill)
                    t.daemon = True
                    t.start()

    con = threading.Thread(target=console, daemon=True)
    con.start()
    b.chan = Channel(tmp, logline)
    if b.chan.connect(proc):
        b.chan.start()
    try:
        proc.wait(timeout=max(1.0, hdr["timeout"] - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        b.timed_out = True
    finally:  # also on Ctrl-C: QEMU runs in its own session
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    con.join(5)
    if b.chan.sock:
        b.chan.sock.close()
    b.returncode = proc.returncode
    logline("# exit %s after %.1f s" % (proc.returncode, time.monotonic() - start))
    return b


def panicked_booting(b):
    """A kernel panic before the scenario's first line (@@START)."""
    return any(PANIC.search(t) for t in b.trouble) and \
        not any(line.startswith("@@START") for line in b.lines)


def judge(name, b, hdr, last):
    """Why this boot fails the scenario, or None.  Only the last boot must
    give a verdict; an earlier one must end cleanly."""
    guest = [r for r in b.chan.results if r.split(" ", 1)[-1].split(":")[0] == name]
    if not guest:  # no channel result: fall back on the console
        for line in b.lines:
            m = re.match(r"\s*((PASS|FAIL) %s\b.*)$" % re.escape(name), line)
            if m:
                guest.append(m.group(1))
    fails = [r for r in guest if r.startswith("FAIL")]
    panics = [t for t in b.trouble if PANIC.search(t)]
    if panics:
        return "guest kernel panic: " + panics[0]
    if b.timed_out:
        return "timed out after %d s (guest hang?)" % hdr["timeout"]
    if fails:
        return fails[0].split(": ", 1)[1] if ": " in fails[0] else "failed"
    if b.trouble:
        return "guest kernel trouble: " + b.trouble[0]
    if last and not guest:
        return "no verdict from guest (qemu exit %s, scenario rc %s)" % (b.returncode, b.chan.done_rc)
    if b.chan.done_rc not in ((0, None) if last else (0,)):
        return "scenario exited %s" % b.chan.done_rc
    return None


def run_scenario(name, args, out_lock):
    path = os.path.join(args.scenarios, name + ".sh")
    log_path = os.path.join(args.logdir, name + (("-" + args.tag) if args.tag else "") + ".log")
    try:
        hdr = parse_header(path)
    except (OSError, ValueError) as e:
        return False, "bad scenario: %s" % e, None
    # Scripts outside tests/vm/scenarios (bench/, demo/) sit in the
    # initramfs under /<their directory's name>/.
    gdir = os.path.basename(os.path.normpath(args.scenarios))
    append = " ".join(x for x in (BASE_APPEND, "numatier.scenario=" + name,
                                  "numatier.dir=" + gdir if gdir != "scenarios" else "",
                                  hdr["append"], args.append) if x)
    boots = hdr["boots"]
    start = time.monotonic()
    bench, reason = [], None
    with tempfile.TemporaryDirectory(prefix="numatier-vm.") as tmp, \
            open(log_path, "w", buffering=1) as log:
        loglock = threading.Lock()
        started = [False]

        def logline(text):
            with loglock:
                log.write(text + "\n")
            if args.live:
                # The script's own console output only: no kernel boot
                # messages before @@START, no channel chatter.
                if text.startswith("@@START"):
                    started[0] = True
                elif started[0] and not text.startswith(("@@", "[host]", "# exit", "# boot")) \
                        and not KMSG.match(text):
                    with out_lock:
                        print(text, flush=True)
            elif args.verbose:
                with out_lock:
                    print("[%s] %s" % (name, text), flush=True)

        disk = None
        if boots > 1:  # blank, sparse; the first boot formats it
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.truncate(DISK_MIB << 20)
        for i in range(1, boots + 1):
            for attempt in (1, 2):
                bdir = os.path.join(tmp, "boot%d.%d" % (i, attempt))  # fresh sockets for each QEMU
                os.mkdir(bdir)
                if boots > 1:
                    logline("# boot %d of %d" % (i, boots))
                    started[0] = False
                b = boot_guest(name, args, hdr, append + (" numatier.boot=%d" % i if boots > 1 else ""),
                               bdir, disk, logline, out_lock)
                if attempt == 2 or not panicked_booting(b):
                    break
                # TCG now and then crashes the kernel while it patches its
                # own text at boot (an int3 Oops in an initcall), before
                # any scenario code ran: that says nothing about numatier.
                note = "the guest kernel panicked while booting, before the scenario started: booting again"
                logline("# " + note)
                with out_lock:
                    print("--- %s: %s" % (name, note), flush=True)
            bench += b.chan.bench
            reason = judge(name, b, hdr, i == boots)
            if reason:
                if boots > 1:
                    reason = "boot %d of %d: %s" % (i, boots, reason)
                break
    elapsed = time.monotonic() - start
    if args.bench_out and bench:
        with out_lock, open(args.bench_out, "a") as bf:
            for line in bench:
                bf.write(line + "\n")
    return reason is None, reason, (log_path, elapsed)


def shell(args):
    tmp = os.path.abspath(os.path.join(args.logdir, "shell"))
    os.makedirs(tmp, exist_ok=True)
    append = " ".join(x for x in (BASE_APPEND, args.append) if x)
    cmd = qemu_cmd(args.topology, args.cpu, args.kernel, args.initrd, append, tmp, "mon:stdio")
    print("numatier vm-shell: topology %s; Ctrl-A x quits QEMU.\n"
          "QMP from another terminal: %s/qmp.py %s/qmp.sock hmp 'info numa'"
          % (args.topology, VMDIR, tmp), flush=True)
    proc = subprocess.Popen(cmd)
    chan = Channel(tmp, lambda t: None)
    if chan.connect(proc):
        chan.start()
    return proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernel-dir", required=True, help="fetch-kernel.sh's kernel/current")
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--scenarios", default=os.path.join(VMDIR, "scenarios"))
    ap.add_argument("--logdir", default="build/vm/logs")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="guests run at once")
    ap.add_argument("-v", "--verbose", action="store_true", help="stream guest consoles")
    ap.add_argument("--shell", action="store_true", help="interactive guest, no scenario")
    ap.add_argument("--topology", default="tiered", choices=sorted(TOPOLOGIES))
    ap.add_argument("--append", default="", help="extra kernel args (every guest)")
    ap.add_argument("--tag", default="", help="log file NAME-TAG.log (several runs of one script)")
    ap.add_argument("--bench-out", help="append the guest's `@@BENCH TEXT` lines (channel) to this file")
    ap.add_argument("--live", action="store_true",
                    help="show the script's console output as it runs, without boot messages")
    ap.add_argument("--cpu", default="max", help="QEMU -cpu (--shell)")
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    args = ap.parse_args()
    args.kernel = os.path.join(args.kernel_dir, "vmlinuz")
    for f in (args.kernel, args.initrd):
        if not os.path.isfile(f):
            sys.exit("run.py: %s missing (make vm-deps?)" % f)
    os.makedirs(args.logdir, exist_ok=True)
    if args.shell:
        return shell(args)

    names = args.names or sorted(f[:-3] for f in os.listdir(args.scenarios) if f.endswith(".sh"))
    out_lock = threading.Lock()
    passed = failed = 0
    t0 = time.monotonic()

    def one(name):
        ok, reason, info = run_scenario(name, args, out_lock)
        with out_lock:
            if info:
                print("--- %s: %.1f s, log %s" % (name, info[1], info[0]))
            if ok:
                print("PASS %s" % name, flush=True)
            else:
                if info:
                    print("--- %s: console tail:" % name)
                    for line in tail(info[0]):
                        print("    | " + line.rstrip())
                print("FAIL %s: %s" % (name, reason), flush=True)
        return ok

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for ok in ex.map(one, names):
            passed += ok
            failed += not ok
    print("--- %d scenario(s) in %.1f s" % (len(names), time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or not names else 0


if __name__ == "__main__":
    sys.exit(main())
