#!/usr/bin/env python3
# greet.py — a Python service that greets its peer by address, then answers
# each line with its length, until the peer closes.
#
# Run:  superd examples/greet.yaml
#  or:  superd --listen 127.0.0.1:7102 -- examples/greet.py
#       (as root add --set user=nobody)
# Try:  nc 127.0.0.1 7102
#
# The peer comes from superd's environment (REMOTE_ADDR, REMOTE_PORT); the
# connection is stdin/stdout. No dependencies beyond the standard library.
import os
import sys

peer = os.environ.get("REMOTE_ADDR", "stranger")
port = os.environ.get("REMOTE_PORT", "?")
print(f"hello {peer} (port {port}), I count characters. Type a line.", flush=True)
for line in sys.stdin:
    text = line.rstrip("\r\n")
    print(f"{len(text)} characters: {text}", flush=True)
