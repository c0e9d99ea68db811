#!/usr/bin/env python3
# activated.py — a program written for systemd's socket activation
# (sd_listen_fds(3)), run by superd with `pass: listen_fds`: it takes its
# listening sockets from fd 3 on, checks that LISTEN_PID is its own pid,
# and greets every connection on any of them until it has been idle for
# 30 seconds; then it exits and superd watches the sockets again.
#
# Run:  superd examples/activated.yaml
# Try:  nc 127.0.0.1 7110
import os
import select
import socket
import sys

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit("activated.py: LISTEN_PID is not mine: not started by socket activation")
count = int(os.environ.get("LISTEN_FDS", "0"))
names = os.environ.get("LISTEN_FDNAMES", "").split(":")
socks = {3 + i: socket.socket(fileno=3 + i) for i in range(count)}
served = 0
while True:
    ready, _, _ = select.select(list(socks.values()), [], [], 30.0)
    if not ready:
        break
    for s in ready:
        conn, peer = s.accept()
        served += 1
        name = names[s.fileno() - 3] if s.fileno() - 3 < len(names) else "?"
        with conn:
            conn.sendall(
                f"hello {peer[0]} from pid {os.getpid()} on {name}, connection {served}\n".encode()
            )
