#!/usr/bin/env python3
"""Throw malformed, oversized, half-sent and concurrent requests at the
control socket. Each check prints 'ok NAME' or 'FAIL NAME: why'; exit 1 on
any failure. Usage: ctl_abuse.py SOCKET MAX_REQUEST_BYTES REQUEST_TIMEOUT_S"""
import json
import socket
import sys
import time

SOCK, MAX_REQ, TIMEOUT = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
failures = 0


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(SOCK)
    return s


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def call(s, raw):
    s.sendall(raw)
    line = read_line(s)
    return json.loads(line) if line else None


def check(name, cond, why=""):
    global failures
    if cond:
        print(f"ok {name}")
    else:
        failures += 1
        print(f"FAIL {name}: {why}")


def error_code(resp):
    return (resp or {}).get("error", {}).get("code")


def test_malformed():
    s = connect()
    cases = {
        "not-json": b"hello\n",
        "truncated-json": b'{"cmd":\n',
        "array": b'["status"]\n',
        "no-cmd": b'{"command":"status"}\n',
        "cmd-not-string": b'{"cmd":42}\n',
        "args-not-object": b'{"cmd":"status","args":[1]}\n',
        "trailing-garbage": b'{"cmd":"status"} xyz\n',
        "binary": b'\x00\xff\xfe{"cmd"\x00:1}\n',
    }
    for name, raw in cases.items():
        resp = call(s, raw)
        check(f"malformed-{name}", resp and resp.get("ok") is False
              and error_code(resp) == "malformed-request", repr(resp))
    resp = call(s, b'{"cmd":"no-such-command"}\n')
    check("unknown-command", error_code(resp) == "unknown-command", repr(resp))
    # The same connection still works after all that.
    resp = call(s, b'{"cmd":"status"}\n')
    check("usable-after-errors", resp and resp.get("ok") is True, repr(resp))
    s.close()


def test_pipelined():
    s = connect()
    s.sendall(b'{"cmd":"ping"}\n{"cmd":"status"}\r\n{"cmd":"ping"}\n')
    got = b""
    deadline = time.time() + 5
    while got.count(b"\n") < 3 and time.time() < deadline:
        got += s.recv(65536)
    lines = [json.loads(x) for x in got.splitlines()]
    check("pipelined", len(lines) == 3 and all(x["ok"] for x in lines), repr(got[:200]))
    s.close()


def test_oversized():
    s = connect()
    try:
        s.sendall(b"{" + b" " * (MAX_REQ * 4))
    except (BrokenPipeError, ConnectionResetError):
        pass
    line = read_line(s)
    resp = json.loads(line) if line else None
    check("oversized-refused", error_code(resp) == "request-too-large", repr(line[:200]))
    rest = s.recv(10)
    check("oversized-closed", rest == b"", repr(rest))
    s.close()


def test_half_sent_does_not_block():
    slow = connect()
    slow.sendall(b'{"cmd":"sta')        # never finished
    t0 = time.time()
    fast = connect()
    resp = call(fast, b'{"cmd":"status"}\n')
    elapsed = time.time() - t0
    check("half-sent-others-served", resp and resp["ok"] and elapsed < 1.0, f"{elapsed:.2f}s")
    fast.close()
    slow.settimeout(TIMEOUT + 5)
    t0 = time.time()
    data = slow.recv(100)
    check("half-sent-closed", data == b"" and time.time() - t0 < TIMEOUT + 4,
          f"{data!r} after {time.time() - t0:.1f}s")
    slow.close()


def test_many_clients(n=60):
    socks = [connect() for _ in range(n)]
    for s in socks:
        s.sendall(b'{"cmd":"ping"}\n')
    ok = 0
    for s in socks:
        line = read_line(s)
        if line and json.loads(line).get("ok"):
            ok += 1
        s.close()
    check("many-clients", ok == n, f"{ok}/{n} answered")


def test_vanishing_client():
    for _ in range(20):
        s = connect()
        s.sendall(b'{"cmd":"status"}\n')
        s.close()                           # gone before the answer
    s = connect()
    resp = call(s, b'{"cmd":"status"}\n')
    check("vanishing-clients", resp and resp["ok"], repr(resp))
    s.close()


for t in (test_malformed, test_pipelined, test_oversized, test_half_sent_does_not_block,
          test_many_clients, test_vanishing_client):
    try:
        t()
    except Exception as e:  # a crash of the daemon shows up here
        failures += 1
        print(f"FAIL {t.__name__}: {type(e).__name__}: {e}")
sys.exit(1 if failures else 0)
