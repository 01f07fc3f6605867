#!/bin/sh
# Regenerates every golden file under tests/golden by running each data_tools/golden_*.py with
# Debian's python3 (it has python3-torch; a pyenv python usually lacks it). golden_io.py is the
# shared writer, not a generator. golden_detector.py is the whole-model check (the detector_tiny
# weights and case files, about 2 MB each).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p tests/golden
for script in data_tools/golden_*.py; do
  [ "$(basename "$script")" = "golden_io.py" ] && continue
  echo "== $script"
  "$PYTHON" "$script"
done
