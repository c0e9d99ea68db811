#!/bin/sh
# ctf.sh — a toy capture-the-flag challenge: answer the question, get the
# flag. Stands for the untrusted program a CTF host runs for every player,
# fenced in by superd (see ctf.yaml and FENCES in superd.yaml(5)).
#
# Run it:   superd examples/ctf.yaml          (as root: the fences need it)
# Try it:   printf '42\n' | nc 127.0.0.1 7105
#
# Only shell builtins: the fences leave it no network, a read-only host, a
# /tmp of its own and no way to gain privileges, and rlimits bound the rest.
printf 'What is 6 * 7? '
read -r answer || exit 0
if [ "$answer" = 42 ]; then
    echo "flag{${FLAG:-superd-fences}}"
else
    echo "no"
fi
