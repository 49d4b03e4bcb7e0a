#!/usr/bin/env python3
"""Minimal QMP client for the numatier VM test bed (Python 3 stdlib only).

As a library:
    q = QMP("/path/qmp.sock"); q.hmp("mce 0 8 ..."); q.dimm_add("d1", "512M", 2)

From a shell, against a running guest (e.g. one started by `make vm-shell`):
    tests/vm/qmp.py SOCKET hmp 'info numa'
    tests/vm/qmp.py SOCKET mce 0 8 0x9c0000000000009f 0 0x50000000 0x8c
    tests/vm/qmp.py SOCKET dimm-add dimm1 512M 2
    tests/vm/qmp.py SOCKET dimm-del dimm1 [TIMEOUT_S]
    tests/vm/qmp.py SOCKET raw '{"execute": "query-memory-devices"}'
"""
import json
import socket
import sys
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, connect_timeout=10.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError("no QMP greeting: %r" % greeting)
        self.execute("qmp_capabilities")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def _read(self, timeout=None):
        self.sock.settimeout(timeout)
        line = self.file.readline()
        if not line:
            raise QMPError("QMP connection closed")
        return json.loads(line)

    def execute(self, cmd, timeout=30.0, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            resp = self._read(max(0.01, deadline - time.monotonic()))
            if "event" in resp:
                self.events.append(resp)
            elif "error" in resp:
                raise QMPError("%s: %s" % (cmd, resp["error"].get("desc", resp["error"])))
            elif "return" in resp:
                return resp["return"]

    def wait_event(self, name, match=None, timeout=30.0):
        """Wait for event `name` whose data contains all items of `match`."""
        def ok(ev):
            data = ev.get("data", {})
            return ev["event"] == name and all(data.get(k) == v for k, v in (match or {}).items())
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ok(ev):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError("timed out waiting for %s %s" % (name, match or ""))
            try:
                resp = self._read(left)
            except socket.timeout:
                continue
            if "event" in resp:
                self.events.append(resp)

    def hmp(self, command):
        """Run a human monitor command; HMP reports errors as text."""
        out = self.execute("human-monitor-command", **{"command-line": command})
        return out.strip()

    def mce(self, cpu, bank, status, mcg_status, addr, misc, broadcast=False):
        cmd = "mce %s%s %s %s %s %s %s" % ("-b " if broadcast else "", cpu, bank,
                                          status, mcg_status, addr, misc)
        out = self.hmp(cmd)
        if out:  # the mce command prints nothing on success
            raise QMPError("mce: " + out)
        return ""

    def dimm_add(self, dimm_id, size, node):
        mem = "mem-" + dimm_id
        self.execute("object-add", **{"qom-type": "memory-backend-ram", "id": mem,
                                      "size": parse_size(size)})
        try:
            self.execute("device_add", driver="pc-dimm", id=dimm_id, memdev=mem,
                         node=int(node))
        except QMPError:
            self.execute("object-del", id=mem)
            raise
        return "added %s (%s) on node %s" % (dimm_id, size, node)

    def dimm_del(self, dimm_id, timeout=60.0):
        self.execute("device_del", id=dimm_id)
        self.wait_event("DEVICE_DELETED", {"device": dimm_id}, timeout)
        self.execute("object-del", id="mem-" + dimm_id)
        return "deleted " + dimm_id


def parse_size(s):
    s = str(s).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] == "B":
        s = s[:-1]
    if s and s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s, 0)


def do_verb(q, verb, args):
    """One host action, as requested by a guest scenario or the CLI.
    Returns a one-line result text; raises QMPError/ValueError on failure."""
    if verb == "hmp":
        return q.hmp(" ".join(args)).replace("\r", "").replace("\n", " | ")
    if verb == "mce":
        if len(args) not in (6, 7):
            raise ValueError("mce [-b] CPU BANK STATUS MCGSTATUS ADDR MISC")
        b = args[0] == "-b"
        return q.mce(*args[1:] if b else args, broadcast=b) or "injected"
    if verb == "dimm-add":
        if len(args) != 3:
            raise ValueError("dimm-add ID SIZE NODE")
        return q.dimm_add(*args)
    if verb == "dimm-del":
        if len(args) not in (1, 2):
            raise ValueError("dimm-del ID [TIMEOUT_S]")
        return q.dimm_del(args[0], float(args[1]) if len(args) > 1 else 60.0)
    if verb == "raw":
        msg = json.loads(" ".join(args))
        return json.dumps(q.execute(msg["execute"], **msg.get("arguments", {})))
    raise ValueError("unknown verb " + verb)


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    q = QMP(argv[1])
    try:
        print(do_verb(q, argv[2], argv[3:]))
    except (QMPError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    finally:
        q.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
