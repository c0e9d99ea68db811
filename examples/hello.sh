#!/bin/sh
# hello.sh — the smallest stdio network service: greet the peer, then echo
# one line back in upper case.
#
# Run it:   superd services.d            (services.d/hello.yaml serves it)
#    or:    superd --listen 127.0.0.1:7008 -- examples/hello.sh
# Try it:   printf 'superd\n' | nc 127.0.0.1 7008
#
# superd puts the connection on stdin/stdout and tells us who is calling in
# REMOTE_ADDR / REMOTE_PORT (tcpserver's TCPREMOTEIP works too).
echo "hello ${REMOTE_ADDR:-stranger}:${REMOTE_PORT:-?}, this is ${SUPERD_SERVICE:-superd}"
read -r line || exit 0
printf '%s\n' "$line" | tr '[:lower:]' '[:upper:]'
