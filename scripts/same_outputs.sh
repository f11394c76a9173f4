#!/usr/bin/env bash
# Checks that two runs of the pipeline wrote the same results: the report's
# tables (summary, gains, contrasts, contrasts by seed, revisions) and every
# training seed's eval/turns.parquet, byte for byte.
#
# A change of structure (issue 18) must not change what a run computes:
# run the default pipeline with the binary from before the change into one
# directory and with the binary after it into another, then compare them:
#
#   cp target/release/didact /tmp/didact-before        # at the old commit
#   /tmp/didact-before pipeline --config configs/default.toml --run-dir /tmp/before
#   cargo build --release --bin didact                  # at the new commit
#   target/release/didact pipeline --config configs/default.toml --run-dir /tmp/after
#   bash scripts/same_outputs.sh /tmp/before /tmp/after
#
# Exits 1 and names the files that differ (or are missing) otherwise.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 RUN_DIR_BEFORE RUN_DIR_AFTER" >&2
  exit 2
fi
before=$1
after=$2

files=(report/summary.parquet report/gains.parquet report/contrasts.parquet
  report/contrasts_by_seed.parquet report/revisions.parquet)
while IFS= read -r f; do
  files+=("${f#"$before"/}")
done < <(find "$before" -path '*eval/turns.parquet' | sort)

differ=0
for f in "${files[@]}"; do
  if [ ! -f "$before/$f" ] || [ ! -f "$after/$f" ]; then
    echo "MISSING  $f"
    differ=1
  elif cmp -s "$before/$f" "$after/$f"; then
    echo "same     $f ($(wc -c <"$before/$f") bytes)"
  else
    echo "DIFFERS  $f"
    differ=1
  fi
done
if [ "$differ" -ne 0 ]; then
  echo "the runs differ"
  exit 1
fi
echo "identical: ${#files[@]} files"
