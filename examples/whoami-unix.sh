#!/bin/sh
# whoami-unix.sh — a unix-socket service that tells the caller who the kernel
# says it is: superd fills UNIXREMOTEEUID/EGID/PID from SO_PEERCRED, which the
# caller cannot forge.
#
# Run:  superd examples/whoami-unix.yaml
# Try:  nc -U /tmp/superd-whoami.sock    (or: socat - UNIX:/tmp/superd-whoami.sock)
name=$(getent passwd "$UNIXREMOTEEUID" | cut -d: -f1)
echo "uid=${UNIXREMOTEEUID:-?} user=${name:-?} gid=${UNIXREMOTEEGID:-?} pid=${UNIXREMOTEPID:-?}"
