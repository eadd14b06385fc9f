#!/usr/bin/env bash
# The GPU checks, run once on a CUDA machine from a fresh copy of the repository (see
# tests/gpu/README.md): `bash tests/gpu/run.sh OUT_DIR`. Every step runs whatever an earlier one
# did, so one run always brings back everything it could measure; OUT_DIR/summary.txt holds the
# results and each step's exit status, and the script exits 1 when any step failed.
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash tests/gpu/run.sh OUT_DIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
export PYTHONUNBUFFERED=1 # a step killed by its timeout still leaves its output

# The machine: driver, GPU and the torch that will run the tests.
{
    nvidia-smi
    echo "nvidia-smi: exit $?"
} >"$out/env.txt" 2>&1

if [[ -x .venv/bin/python ]]; then
    install_rc="skipped (.venv present)"
else
    python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' 2>&1 | tee "$out/install.txt"
    install_rc=$?
fi

.venv/bin/python -c \
    'import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))' \
    >>"$out/env.txt" 2>&1
torch_rc=$?

# One process (-o addopts= drops the suite's two xdist workers: the GPU machine may lack xdist).
timeout -k 10 240 .venv/bin/pytest -o addopts= -m cuda -rs -q tests/test_cuda.py tests/test_package.py \
    >"$out/cuda_tests.txt" 2>&1
tests_rc=$?

# The training bench, with the GPU's utilisation and memory sampled every 0.5 s meanwhile.
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 \
    >"$out/gpu_util.csv" 2>"$out/gpu_util.err" &
sampler=$!
timeout -k 10 300 .venv/bin/python -m segsweep.bench train >"$out/bench.txt" 2>&1
bench_rc=$?
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null

# pytest -q ends with e.g. "5 passed, 1 skipped in 3.2s"; a count it leaves out is 0.
count() {
    grep -oE "[0-9]+ $1" "$out/cuda_tests.txt" | tail -n 1 | cut -d' ' -f1 | grep . || echo 0
}
# Rows "timestamp, 37 %, 1234 MiB" after the header; [N/A] and partial rows are left out.
utilisation=$(awk -F', *' '
    NR > 1 && $2 ~ /^[0-9.]+ *%?$/ { u = $2 + 0; n++; sum += u; if (u > max) max = u }
    END { if (n) printf "mean=%.1f%% max=%d%% samples=%d", sum / n, max, n; else print "no samples" }
' "$out/gpu_util.csv")
bench_line=$(grep '^train:' "$out/bench.txt" | tail -n 1)

{
    echo "bench: ${bench_line:-no 'train:' line (see bench.txt)}"
    echo "cuda_tests: passed=$(count passed) failed=$(count failed) skipped=$(count skipped)" \
        "errors=$(count 'errors?')"
    echo "gpu_utilisation_during_bench: $utilisation"
    echo "exit: install=$install_rc torch=$torch_rc cuda_tests=$tests_rc bench=$bench_rc"
} >"$out/summary.txt"
cat "$out/summary.txt"

for rc in "$install_rc" "$torch_rc" "$tests_rc" "$bench_rc"; do
    [[ $rc == 0 || $rc == skipped* ]] || exit 1
done
