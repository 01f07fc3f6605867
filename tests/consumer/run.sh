#!/usr/bin/env bash
# Installs the already-built isrn into a scratch prefix, then builds and runs the consumer against
# it with find_package(isrn), and again with add_subdirectory(<source tree>).
# Usage: run.sh <isrn build dir> <isrn source dir> <scratch dir>
set -euo pipefail
build=$1 src=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/tests/consumer" -B "$scratch/pkg" "${gen[@]}" -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/pkg" >/dev/null
"$scratch/pkg/consumer"
# The subdirectory build finds isrn's dependencies where the parent build found them (a staged .deps/
# on the GPU machine rather than the system's include directories).
forward=()
for var in CMAKE_PREFIX_PATH ISRN_STB_INCLUDE CMAKE_CXX_FLAGS; do
  value=$(sed -n "s/^$var:[A-Z]*=//p" "$build/CMakeCache.txt" | head -1)
  [ -n "$value" ] && [ "${value%NOTFOUND}" = "$value" ] && forward+=("-D$var=$value")
done
cmake -S "$src/tests/consumer" -B "$scratch/sub" "${gen[@]}" "${launcher[@]}" "${forward[@]}" -DISRN_CONSUMER_MODE=subdirectory \
      -DISRN_SOURCE_DIR="$src" -DISRN_WITH_CUDA=OFF -DISRN_BUILD_TESTS=OFF -DISRN_BUILD_BENCHMARKS=OFF \
      -DISRN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$scratch/sub" >/dev/null
"$scratch/sub/consumer"
