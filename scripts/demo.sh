#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build -j"$(nproc)" --target isrn-demo
./build/examples/isrn-demo "$@"
