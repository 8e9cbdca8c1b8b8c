#!/usr/bin/env bash
# The whole test suite: setup (idempotent), format, lint, unit + integration + end-to-end tests.
# Prints one "N passed, N failed" line at the end.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KILN_REPO"

"$KILN_REPO/scripts/setup.sh"

step() { printf '\n== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
log=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Rootless sandbox tests run as an unprivileged user created by setup.sh.
if [ -x crates/kiln-sandbox/tests/run-unprivileged.sh ]; then
  step "sandbox tests as unprivileged user"
  set +e
  crates/kiln-sandbox/tests/run-unprivileged.sh 2>&1 | tee -a "$log"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" = 0 ] || status=$s
fi

# Rootless builds end to end (layers must record container ids), as the same user.
if [ -x crates/kiln-cli/tests/rootless-build.sh ]; then
  step "rootless build end to end"
  set +e
  crates/kiln-cli/tests/rootless-build.sh 2>&1 | tee -a "$log"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" = 0 ] || status=$s
fi

counts() { # cargo's "test result" lines, plus the "rootless: N passed, M failed" line
  { grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{print $4, $6}'
    grep -Eo '^rootless: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{print $2, $4}'; } |
    awk '{p+=$1; f+=$2} END {print p+0, f+0}'
}
read -r passed failed < <(counts)
rm -f "$log"
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
