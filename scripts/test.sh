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
