#!/bin/sh
# {{function}}: one process per call.
set -eu
input=$(cat)
echo "counting the words of ${#input} bytes of input" >&2
text=$(printf '%s' "$input" | sed -n 's/.*"text"[[:space:]]*:[[:space:]]*"\(.*\)".*/\1/p')
printf '{"words": %d}\n' "$(printf '%s' "$text" | wc -w)"
