#!/bin/sh
# The command is a plain program: test it as one (`./test.sh`).
set -eu
got=$(echo '{"text": "one two three"}' | ./main.sh 2>/dev/null)
[ "$got" = '{"words": 3}' ] || { echo "expected {\"words\": 3}, got $got" >&2; exit 1; }
echo ok
