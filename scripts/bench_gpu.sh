#!/usr/bin/env bash
# The GPU bench (`just bench-gpu`): didact's student on burn's CUDA backend
# beside PyTorch on the same GPU, at three shapes (the 1M-parameter
# reference configuration, SmolLM2-135M-Instruct's and Qwen2.5-0.5B-Instruct's,
# random weights, fp32), one process per shape and side, with the GPU memory
# each process held sampled by nvidia-smi every 100 ms. Writes
# bench/gpu/{didact,torch}-SHAPE.json, mem-*.txt, results.md and results.json.
#
# Usage: scripts/bench_gpu.sh BENCH_BINARY [OUT_DIR]
# BENCH_BINARY is the throughput bench built with `--features cuda`
# (`cargo bench --no-run --features cuda -p didact-student` prints its path).
# PYTHON (default python3) needs torch with CUDA and transformers.
set -uo pipefail
bin=${1:?usage: scripts/bench_gpu.sh BENCH_BINARY [OUT_DIR]}
out=${2:-bench/gpu}
python=${PYTHON:-python3}
shapes=${SHAPES:-reference smollm2_135m qwen2.5_0.5b}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)

# Runs "$@" while sampling the GPU's used memory; writes the peak (MiB) to $1.
sampled() {
    local mem=$1
    shift
    nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$mem.log" 2>/dev/null &
    local sampler=$!
    "$@"
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    sort -n "$mem.log" | tail -1 >"$mem"
    rm -f "$mem.log"
    return $rc
}

# Seconds a process may run: SHAPE_TIMEOUT (default 240), and no later than
# DEADLINE (seconds since the epoch) where the caller sets one.
limit() {
    local l=${SHAPE_TIMEOUT:-240}
    if [ -n "${DEADLINE:-}" ]; then
        local d=$((DEADLINE - $(date +%s)))
        [ "$d" -lt "$l" ] && l=$d
    fi
    [ "$l" -lt 1 ] && l=1
    echo "$l"
}

# The bench runs on cuda:0, the GPU both readings are of.
idle=$(nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits)
echo "$idle" >"$out/mem-idle.txt"
failed=0
for shape in $shapes; do
    # A shape that fails now must not be reported with an earlier run's files.
    rm -f "$out/didact-$shape.json" "$out/torch-$shape.json" "$out/mem-didact-$shape.txt" "$out/mem-torch-$shape.txt"
    echo "== $shape: didact" >&2
    DIDACT_BENCH_DEVICE=cuda DIDACT_BENCH_SHAPE=$shape DIDACT_BENCH_OUT="$out/didact-$shape.json" \
        sampled "$out/mem-didact-$shape.txt" timeout "$(limit)" "$bin" --bench ||
        { echo "didact $shape failed" >&2; failed=1; }
    [ -f "$out/didact-$shape.json" ] || continue
    echo "== $shape: PyTorch" >&2
    sampled "$out/mem-torch-$shape.txt" timeout "$(limit)" "$python" "$here/bench_torch.py" \
        --device cuda --didact "$out/didact-$shape.json" --out "$out/torch-$shape.json" >/dev/null ||
        { echo "PyTorch $shape failed" >&2; failed=1; }
done
"$python" "$here/bench_gpu_report.py" "$out" || failed=1
exit $failed
