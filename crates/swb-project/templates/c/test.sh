#!/bin/sh
# Builds the test natively and runs it.
set -eu
cc -Wall -Werror -o /tmp/{{name}}-test test.c
/tmp/{{name}}-test
