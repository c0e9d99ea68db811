#!/usr/bin/env python3
# udp-upper.py — a UDP service in wait mode: superd hands this program the
# bound socket itself on fd 0 when a datagram arrives; it answers every
# datagram with the same bytes in upper case, and exits after 10 idle
# seconds (superd then watches the socket again).
#
# Run:  superd examples/udp-upper.yaml
# Try:  echo hello | nc -u -w1 127.0.0.1 7104
import select
import socket

# The fd is left blocking, as superd gave it; select() gives the idle timeout.
sock = socket.socket(fileno=0)
while select.select([sock], [], [], 10.0)[0]:
    data, peer = sock.recvfrom(65535)
    sock.sendto(data.upper(), peer)
