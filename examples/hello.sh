#!/bin/sh
# hello.sh — the smallest stdio network service: greet the peer, then echo
# one line back in upper case.
#
# Run it:   superd examples/hello.yaml
#    or:    superd --listen 127.0.0.1:7101 -- examples/hello.sh
#           (as root add --set user=nobody)
# Try it:   printf 'superd\n' | nc 127.0.0.1 7101
#
# superd puts the connection on stdin/stdout and tells us who is calling in
# REMOTE_ADDR / REMOTE_PORT (tcpserver's TCPREMOTEIP works too).
echo "hello ${REMOTE_ADDR:-stranger}:${REMOTE_PORT:-?}, this is ${SUPERD_SERVICE:-superd}"
read -r line || exit 0
printf '%s\n' "$line" | tr '[:lower:]' '[:upper:]'
