#!/bin/sh
# http.sh — an HTTP/1.0 responder in ten lines of shell: answers every GET
# with a plain-text page naming the path asked for and the caller.
#
# Run:  superd examples/http.yaml
# Try:  curl -0 http://127.0.0.1:7180/hello    (or: printf 'GET / HTTP/1.0\r\n\r\n' | nc 127.0.0.1 7180)
read -r method path _ || exit 0
while IFS= read -r h && [ -n "$(printf %s "$h" | tr -d '\r')" ]; do :; done
if [ "$method" != GET ]; then
    printf 'HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n'; exit 0
fi
body="hello from superd: you asked for $path, you are ${REMOTE_ADDR:-?}"
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n' "$((${#body} + 1))"
printf 'Connection: close\r\n\r\n%s\n' "$body"
