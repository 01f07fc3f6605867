#!/usr/bin/env bash
# Builds isrn with CUDA (and cuDNN when found), runs the whole test suite with the CUDA cases executing,
# runs compute-sanitizer (memcheck) over the CUDA tests, and runs the CUDA benchmarks with the PyTorch
# comparison — in one call, on a machine with a GPU and no package manager (the lent GPU machine).
# Needs the header-only dependencies staged by scripts/stage_deps.sh in .deps/ (carried along).
# Logs go to $OUT (or ./gpu_check_out).
#   scripts/gpu_check.sh [all|build|test|sanitize|bench|e2e]...
# (`build` alone builds and stops.) On the lent H100 (2026-11-23) one call fits in its 10 minutes: the build
# ~80 s; test ~2 min; bench ~4 min; each e2e run ~2.5 min; sanitize of the whole suite several minutes. The
# machine stays warm 30 s after a call, so the next call right away reuses build-gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
want() { for s in "${steps[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

export PATH=/usr/local/cuda/bin:$PATH
deps=$PWD/.deps/usr
[ -d "$deps" ] || { echo "gpu_check: .deps/ is missing: run scripts/stage_deps.sh here and carry .deps"; exit 2; }
# cuDNN ships inside the Python venv's nvidia packages there, not under /usr/local/cuda.
cudnn_lib=$(find / -path /proc -prune -o -name 'libcudnn.so.9' -print 2>/dev/null | head -1)
cudnn_args=()
if [ -n "$cudnn_lib" ]; then
  cudnn_dir=$(dirname "$cudnn_lib")
  cudnn_args=(-DISRN_CUDNN_LIB="$cudnn_lib" -DISRN_CUDNN_INCLUDE="$(dirname "$cudnn_dir")/include")
  export LD_LIBRARY_PATH=$cudnn_dir:${LD_LIBRARY_PATH:-}
fi
export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$OUT/device.txt"

status=0
set -o pipefail
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DISRN_WITH_CUDA=ON -DCMAKE_PREFIX_PATH="$deps" \
      -DCMAKE_CXX_FLAGS="-isystem $deps/include" "${cudnn_args[@]}" 2>&1 | tail -5 || exit 3
cmake --build build-gpu -j16 2>&1 | tee "$OUT/build.log" | grep -E 'error|warning: .*cuda' | head -50
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu_check: build failed"; tail -40 "$OUT/build.log"; exit 4; }

if want test; then
  (cd build-gpu && timeout ${ISRN_TEST_LIMIT:-300} ctest -j8 --output-on-failure --timeout 300 2>&1) | tee "$OUT/ctest.log" | tail -25
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # The CUDA-only run: its summary shows that the CUDA cases executed; a failure's report is kept whole.
  ISRN_TEST_DEVICE=cuda ./build-gpu/tests/isrn_tests > "$OUT/cuda_cases.log" 2>&1 || status=1
  grep -B3 -A12 -E "ERROR|FATAL" "$OUT/cuda_cases.log" | head -80
  tail -4 "$OUT/cuda_cases.log"
fi
if want sanitize; then
  # Direct cudaMalloc per tensor so memcheck sees every allocation's bounds. No leak check: the
  # cuBLAS/cuDNN handles and their workspaces live for the whole process by design. Left out by default:
  # the out-of-memory case (it provokes cudaErrorMemoryAllocation on purpose, which memcheck reports)
  # and the two 100-iteration training runs (their kernels are the other cases' kernels, and under
  # memcheck they alone would take minutes). ISRN_SANITIZE_CASES / ISRN_SANITIZE_EXCLUDE choose otherwise.
  ISRN_CUDA_NO_CACHE=1 ISRN_TEST_DEVICE=cuda timeout ${ISRN_SANITIZE_LIMIT:-300} compute-sanitizer --tool memcheck \
    --error-exitcode 9 ./build-gpu/tests/isrn_tests -tc="${ISRN_SANITIZE_CASES:-*}" \
    -tce="${ISRN_SANITIZE_EXCLUDE:-*running out of device memory*,detector learning:*}" 2>&1 | tail -30 \
    | tee "$OUT/sanitizer.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if want bench; then
  if [ -x build-gpu/bench/isrn_bench ]; then
    ./build-gpu/bench/isrn_bench --benchmark_filter='cuda' --benchmark_format=json \
      --benchmark_out="$OUT/bench_cuda.json" 2>&1 | tail -60 | tee "$OUT/bench.log"
    if [ -f bench/compare_pytorch_gpu.py ]; then
      python3 bench/compare_pytorch_gpu.py --isrn-json "$OUT/bench_cuda.json" --markdown 2>&1 | tee "$OUT/compare.log"
    fi
  fi
fi
if want e2e; then
  # The whole detector at the paper's configuration (ResNet-50, 1024x1024; train batch 4, detect batch 1) against
  # the same network in this machine's PyTorch, then the per-op profile of its training step.
  if [ -x build-gpu/bench/isrn_bench ]; then
    # float32 (TF32 off on both sides); mixed precision (bfloat16 autocast on both sides); float32 with TF32
    # allowed on both sides; float32 once more with isrn's convolutions on the path measured faster per problem
    # and cuDNN's FFT/Winograd algorithms allowed, the settings PyTorch's side runs with (cudnn.benchmark, every
    # algorithm); then the per-op profile. ISRN_E2E_RUNS picks some of them (one device call may not hold all).
    for run in ${ISRN_E2E_RUNS:-paper_gpu paper_gpu_bf16 paper_gpu_tf32 paper_gpu_measured profile}; do
      echo "--- e2e: $run ---" | tee -a "$OUT/e2e_gpu.log"
      case "$run" in
        profile)
          ./build-gpu/bench/isrn_bench --profile --e2e_case=paper_gpu --profile_device=cuda --profile_steps=3 2>&1 \
            | tee "$OUT/e2e_gpu_profile.log"
          continue ;;
        paper_gpu_measured) e2e_case=paper_gpu; conv_env=(ISRN_CONV_BACKEND=benchmark ISRN_CONV_TRANSFORMS=1) ;;
        *) e2e_case=$run; conv_env=() ;;
      esac
      env "${conv_env[@]}" python3 bench/compare_e2e.py --bench build-gpu/bench/isrn_bench --case "$e2e_case" \
        --min-time 2 --repetitions 5 --json "$OUT/e2e_$run.json" 2>&1 | tee -a "$OUT/e2e_gpu.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
  fi
fi
exit $status
