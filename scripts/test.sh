#!/usr/bin/env bash
# Builds the didact binary, runs every test of the workspace in release mode
# (the tests train and generate; debug builds are too slow for that), and ends
# with one line that says how many tests passed.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v python3 >/dev/null 2>&1; then
  python3 scripts/house_check.py
else
  echo "python3 not found: skipping scripts/house_check.py"
fi
cargo build --release --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
if [ "$status" -ne 0 ]; then
  echo "TESTS FAILED: $passed passed, $failed failed (cargo test exit $status)"
  exit "$status"
fi
echo "ALL TESTS PASSED: $passed passed, $failed failed"
