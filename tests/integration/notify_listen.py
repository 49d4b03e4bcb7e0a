#!/usr/bin/env python3
"""Stand in for systemd's notify socket: append each datagram to a file."""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        data = sock.recv(4096)
        f.write(data.decode(errors="replace").replace("\n", " ") + "\n")
