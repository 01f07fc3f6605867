#!/usr/bin/env bash
# Fuzzes isrn's readers of outside bytes with libFuzzer, AddressSanitizer and UBSan (fuzz/README.md).
#   scripts/fuzz.sh [TARGET...]      default: every target; ISRN_FUZZ_SECONDS per target (default 60)
# Builds build-fuzz with clang, runs each target from its committed corpus (fuzz/corpus/<target>) plus a working
# corpus (build-fuzz/corpus/<target>), and copies every failing input into fuzz/corpus/<target>/crash_<hash>, so
# that the CTest replay keeps it fixed once it is. Exits 1 when any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${ISRN_FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wider_annotations train_config safetensors image coco prediction_file)

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; }
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DISRN_WITH_CUDA=OFF -DISRN_FUZZ=ON -DISRN_BUILD_TESTS=OFF -DISRN_BUILD_BENCHMARKS=OFF \
  -DISRN_BUILD_EXAMPLES=OFF -DISRN_BUILD_TOOLS=OFF >/dev/null
ninja -C build-fuzz -j"${ISRN_JOBS:-2}" $(printf 'fuzz_%s ' "${targets[@]}")

failed=()
for target in "${targets[@]}"; do
  work=build-fuzz/corpus/$target artifacts=build-fuzz/artifacts/$target
  rm -rf "$artifacts"; mkdir -p "$work" "$artifacts"
  echo "== $target: ${seconds} s"
  # The detector's readers hold small files; 1 MiB inputs keep the search on structure, not size.
  if ./build-fuzz/fuzz/fuzz_"$target" "$work" "fuzz/corpus/$target" -max_total_time="$seconds" -max_len=1048576 \
       -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 -artifact_prefix="$artifacts/" \
       >"build-fuzz/$target.log" 2>&1; then
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" "build-fuzz/$target.log" | tr '\n' ' '; echo
  else
    failed+=("$target")
    grep -E "fuzz target:|ERROR:|SUMMARY:" "build-fuzz/$target.log" | head -5
    for input in "$artifacts"/*; do
      [ -f "$input" ] || continue
      cp "$input" "fuzz/corpus/$target/crash_$(sha1sum "$input" | cut -c1-12)"
      echo "   kept fuzz/corpus/$target/crash_$(sha1sum "$input" | cut -c1-12)"
    done
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in ${failed[*]} (logs: build-fuzz/<target>.log)" >&2
  exit 1
fi
echo "fuzz.sh: no failures"
