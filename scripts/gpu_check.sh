#!/usr/bin/env bash
# The checks a GPU machine is for, as one script (the device machine has no
# cargo and no registry: build here with `--features cuda`, carry the two
# binaries): the GPU bench at Qwen2.5-0.5B's shape, the smoke pipeline on
# `--device cuda`, then the bench's two smaller shapes (scripts/bench_gpu.sh).
# Every phase ends by the deadline (BUDGET seconds from the start, default
# 540), so that a slow one costs the phases after it, not the results before
# it. Writes OUT_DIR/env.log, bench.log, bench.tar.gz, smoke.log and
# smoke-report.tar.gz.
#
# Usage: scripts/gpu_check.sh DIDACT_BINARY BENCH_BINARY OUT_DIR
set -uo pipefail
didact=${1:?usage: scripts/gpu_check.sh DIDACT_BINARY BENCH_BINARY OUT_DIR}
bench=${2:?}
out=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
deadline=$(($(date +%s) + ${BUDGET:-540}))
mkdir -p "$out"
chmod +x "$didact" "$bench"
# Seconds left before the deadline, at most $1.
left() {
    local l=$((deadline - $(date +%s)))
    [ "$l" -gt "$1" ] && l=$1
    [ "$l" -lt 1 ] && l=1
    echo "$l"
}
# burn's CUDA runtime loads the driver and NVRTC at run time.
nvrtc=$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null)
# (An empty entry would put the working directory on the search path.)
libs=/usr/local/cuda/lib64:/usr/local/nvidia/lib64
[ -n "$nvrtc" ] && libs=$libs:$nvrtc
[ -n "${LD_LIBRARY_PATH:-}" ] && libs=$libs:$LD_LIBRARY_PATH
export LD_LIBRARY_PATH=$libs
{
    nvidia-smi -L
    nvidia-smi --query-gpu=driver_version,memory.total --format=csv
    ldconfig -p | grep -E 'libcuda\.so|libnvrtc' | head
    ls /usr/local/cuda/lib64 2>/dev/null | grep -E nvrtc | head -3
    echo "nvrtc from pip: $nvrtc"
} >"$out/env.log" 2>&1

failed=0
bench_phase() {
    SHAPES="$1" SHAPE_TIMEOUT=$2 DEADLINE=$deadline bash "$here/bench_gpu.sh" "$bench" /tmp/bench-gpu >>"$out/bench.log" 2>&1 ||
        failed=1
    tar -czf "$out/bench.tar.gz" -C /tmp bench-gpu
}

# Qwen2.5-0.5B's shape first: the figures no CPU run can give.
bench_phase qwen2.5_0.5b 120

start=$(date +%s)
timeout "$(left 150)" "$didact" pipeline --config configs/smoke.toml --run-dir /tmp/smoke-cuda \
    --device cuda -q >"$out/smoke.log" 2>&1
rc=$?
[ "$rc" -ne 0 ] && failed=1
echo "smoke pipeline on cuda: rc=$rc in $(($(date +%s) - start)) s" >>"$out/smoke.log"
tar -czf "$out/smoke-report.tar.gz" -C /tmp/smoke-cuda --exclude='*.safetensors' --exclude='*.mpk' . 2>/dev/null

bench_phase "smollm2_135m reference" 75
ls -la "$out"
exit $failed
