#!/usr/bin/env python3
# A socket-activated server for the tests (sd_listen_fds(3) done by hand):
# takes its sockets from LISTEN_FDS, refuses to run unless LISTEN_PID is its
# own pid, and serves the connections of its first stream socket one after
# another: it answers each with `pid=… fds=… names=… line=<what it read>`,
# and exits after answering a connection that sent `quit`.
import os
import socket
import sys

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit(2)
n = int(os.environ.get("LISTEN_FDS", "0"))
names = os.environ.get("LISTEN_FDNAMES", "")
socks = [socket.socket(fileno=3 + i) for i in range(n)]
stream = next(s for s in socks if s.type == socket.SOCK_STREAM)
while True:
    conn, _ = stream.accept()
    with conn:
        line = conn.makefile("rb").readline().decode().strip()
        conn.sendall(f"pid={os.getpid()} fds={n} names={names} line={line}\n".encode())
    if line == "quit":
        break
