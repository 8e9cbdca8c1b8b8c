#!/bin/sh
# Greets its arguments; --selftest checks the greeting format at build time.
set -eu
greet() { echo "Hello, $*! (from $(id -un) in a kiln-built image)"; }
if [ "${1:-}" = "--selftest" ]; then
  out=$(greet test)
  case "$out" in "Hello, test!"*) echo "selftest ok" ;; *) echo "selftest failed: $out" >&2; exit 1 ;; esac
  exit 0
fi
greet "$@"
