#!/usr/bin/env bash
# The main job: installs the dependencies, builds the training program (CPU only, so the build stays short),
# trains a small ISRN on generated faces (configs/demo_synthetic.json), evaluates it on held-out generated images
# with the WIDER protocol's arithmetic and writes pictures of its detections. Extra arguments go to isrn-train
# (e.g. --max-iters 200 for a shorter run, --data ../shared/data/widerface for real data).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DISRN_WITH_CUDA=OFF -DISRN_BUILD_TESTS=OFF \
      -DISRN_BUILD_BENCHMARKS=OFF -DISRN_BUILD_EXAMPLES=OFF "${launcher[@]}" >/dev/null
cmake --build build-demo -j"$(nproc)" --target isrn-train
out=${ISRN_DEMO_OUT:-runs/demo}
data=(--synthetic 800)
for arg in "$@"; do
  [ "$arg" = "--data" ] && data=()
done
# A fresh demo each time, unless it is resumed.
[[ " $* " == *" --resume "* ]] || rm -rf "$out"
./build-demo/tools/isrn-train --config configs/demo_synthetic.json "${data[@]}" --out "$out" "$@"
