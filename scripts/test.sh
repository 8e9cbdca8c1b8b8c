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

# Differential conformance against buildah (and docker+BuildKit when its daemon answers) with
# the debug kiln binary cargo test just built; one "conformance kiln vs PEER: N passed, M
# failed" line per peer.
if [ -x tests/conformance/run.sh ]; then
  step "differential conformance (tests/conformance)"
  set +e
  KILN="$CARGO_TARGET_DIR/debug/kiln" tests/conformance/run.sh 2>&1 | tee -a "$log"
  s=${PIPESTATUS[0]}
  set -e
  [ "$s" = 0 ] || status=$s
fi

counts() { # cargo's "test result" lines, the "rootless: N passed, M failed" line and the
           # "conformance kiln vs PEER: N passed, M failed" lines
  { grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{print $4, $6}'
    grep -Eo '^rootless: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{print $2, $4}'
    grep -Eo '^conformance kiln vs [a-z]+: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{print $5, $7}'; } |
    awk '{p+=$1; f+=$2} END {print p+0, f+0}'
}
read -r passed failed < <(counts)
rm -f "$log"
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
