#!/usr/bin/env bash
# Installs the dependencies, builds everything (the CUDA backend too when nvcc is present, GPU or not)
# and runs every test. CUDA test cases skip with a stated reason when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
# The fuzz corpora (fuzz/README.md) once more under AddressSanitizer and UBSan, where a reader that strays out
# of bounds without crashing fails too. Debug (-O0) compiles in 1.5 min on 2 cores; the corpora are small.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DISRN_SANITIZE=ON -DISRN_WITH_CUDA=OFF \
  -DISRN_BUILD_BENCHMARKS=OFF -DISRN_BUILD_EXAMPLES=OFF -DISRN_BUILD_TOOLS=OFF "${launcher[@]}"
cmake --build build-asan -j"$(nproc)" --target fuzz_targets
ctest --test-dir build-asan --output-on-failure -R '^fuzz_corpus_'

