#!/usr/bin/env bash
# Copies the Debian-packaged dependencies (headers, CMake package files, Google Benchmark's library)
# into .deps/usr, keeping their layout, so a machine without apt (the lent GPU machine) can build isrn
# with CMAKE_PREFIX_PATH=$PWD/.deps/usr. Run after scripts/install_deps.sh; .deps is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
dst=.deps/usr
rm -rf .deps
mkdir -p "$dst"
copy() { mkdir -p "$dst/$(dirname "$1")"; cp -a "/usr/$1" "$dst/$1"; }
for p in include/eigen3 share/eigen3 include/doctest lib/cmake/doctest include/nlohmann share/cmake/nlohmann_json \
         include/CLI share/cmake/CLI11 include/benchmark lib/x86_64-linux-gnu/cmake/benchmark include/stb; do
  copy "$p"
done
for f in /usr/lib/x86_64-linux-gnu/libbenchmark*; do copy "${f#/usr/}"; done
du -sh .deps
