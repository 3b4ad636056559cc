#!/usr/bin/env bash
# Every measurement of results/gpu.md in one sitting, on a machine with one NVIDIA GPU and 16 CPU cores.
# Three lanes on separate cores, so that no timing shares its cores, and no CUDA timing its GPU, with
# anything heavy:
#   cores 0-3   the CUDA timings, one after another: native envs, one update, the LLM demo, training
#   cores 4-7   their CPU halves (torch on 1 thread, sppo.py's default)
#   cores 8-15  the whole test suite, the CUDA tests included, on 8 pytest-xdist workers; a test that
#               fails there is run again alone, so a failure that only parallel runs cause shows as such
# The test suite's only GPU users are its CUDA tests (every other test passes --device cpu).
#     TOKENIZER=~/.cache/sppo/SmolLM2-135M-Instruct bash benchmarks/gpu_all.sh
# Logs: results/gpu/logs/; then results/gpu.md is rebuilt from results/gpu/*.json.
set -u
cd "$(dirname "$0")/.."
TOKENIZER=${TOKENIZER:?set TOKENIZER to the default model folder (its tokenizer and config)}
LOGS=results/gpu/logs
mkdir -p "$LOGS"
stamp() { echo "[$(date +%T)] $*"; }

cuda_lane() {
    stamp "cuda: envs and update"
    timeout 150 taskset -c 0-3 python benchmarks/gpu.py --part envs update --devices cuda
    stamp "cuda: llm"
    timeout 300 taskset -c 0-3 python benchmarks/llm_gpu.py --tokenizer "$TOKENIZER" --shapes qwen0.5b
    stamp "cuda: train"
    timeout 150 taskset -c 0-3 python benchmarks/gpu.py --part train --devices cuda --long-updates 6
    stamp "cuda: done"
}
cpu_lane() {
    stamp "cpu: envs, update, train"
    timeout 500 taskset -c 4-7 python benchmarks/gpu.py --part envs update train --devices cpu \
        --cpu-sizes 64 1024 16384 262144 --update-sizes 64 1024 --long-updates 6 \
        --note "CPU half measured on cores 4-7 while the test suite ran on cores 8-15"
    stamp "cpu: done"
}
test_lane() {
    stamp "tests"
    # not here: the notebooks (no Jupyter kernel on the GPU machine) and the real default model (its 98 MB
    # package cannot reach the GPU machine); CI runs both
    OMP_NUM_THREADS=1 timeout 420 taskset -c 8-15 python -m pytest -q -n 8 tests --ignore tests/test_notebooks.py \
        --deselect tests/test_llm_demo.py::test_default_model_smoke_run -rs
    stamp "tests: failures again, alone"
    OMP_NUM_THREADS=1 timeout 120 taskset -c 8-15 python -m pytest -q -p no:xdist --lf --last-failed-no-failures none \
        tests --ignore tests/test_notebooks.py --deselect tests/test_llm_demo.py::test_default_model_smoke_run
    stamp "tests: done"
}
cuda_lane > "$LOGS/cuda.log" 2>&1 &
cpu_lane > "$LOGS/cpu.log" 2>&1 &
test_lane > "$LOGS/tests.log" 2>&1 &
wait
python benchmarks/gpu.py --render > /dev/null
stamp "all done"
