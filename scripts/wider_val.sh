#!/usr/bin/env bash
# Runs a detector checkpoint over the WIDER FACE validation images and scores it with the official protocol:
#
#   scripts/wider_val.sh CKPT [WIDER_ROOT [OUT]] [extra isrn-detect flags...]
#
# WIDER_ROOT (default ../shared/data/widerface, relative to the repository) holds WIDER_val/images/<event>/*.jpg
# and ground_truth/wider_{face,easy,medium,hard}_val.mat. OUT (default out/wider_val) receives
# predictions/<event>/<name>.txt (replaced on every run), detect.log (isrn-detect's time report) and eval.log.
# Extra flags go to isrn-detect, e.g. --device cuda --multiscale. The binaries come from $ISRN_BIN
# (default build/tools). ALL_IMAGES=1 scores every validation image, one without a prediction file as having no
# detections (the official rule; leave it off on a slice of the validation set).
#
# The last line printed is isrn-eval's: easy <AP> medium <AP> hard <AP>. Exit status: isrn-eval's, or
# isrn-detect's when it failed; images isrn-detect could not read are named, and the run goes on without them.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi
ckpt="$1"
shift
# WIDER_ROOT and OUT are positional but optional: the first argument starting with '-' begins the isrn-detect flags.
root="$repo/../shared/data/widerface"
out="out/wider_val"
if [[ $# -gt 0 && "$1" != -* ]]; then root="$1"; shift; fi
if [[ $# -gt 0 && "$1" != -* ]]; then out="$1"; shift; fi
bin="${ISRN_BIN:-$repo/build/tools}"

for f in "$bin/isrn-detect" "$bin/isrn-eval"; do
  [[ -x "$f" ]] || { echo "wider_val.sh: $f not found (build first, or set ISRN_BIN)" >&2; exit 1; }
done
[[ -d "$root/WIDER_val/images" ]] || { echo "wider_val.sh: no $root/WIDER_val/images" >&2; exit 1; }
[[ -f "$root/ground_truth/wider_face_val.mat" ]] || { echo "wider_val.sh: no $root/ground_truth/wider_face_val.mat" >&2; exit 1; }

mkdir -p "$out"
# Only the predictions folder this script owns is replaced: stale files from an earlier run would be scored too.
rm -rf "$out/predictions"

status=0
"$bin/isrn-detect" --model "$ckpt" --input "$root/WIDER_val/images" --output "$out/predictions" --format wider "$@" \
  | tee "$out/detect.log" || status=${PIPESTATUS[0]}
if [[ $status -eq 3 ]]; then
  echo "wider_val.sh: some images could not be read and have no prediction file (see above); scoring the rest" >&2
elif [[ $status -ne 0 ]]; then
  exit "$status"
fi

eval_flags=()
[[ "${ALL_IMAGES:-0}" == 1 ]] && eval_flags+=(--all-images)
"$bin/isrn-eval" --pred "$out/predictions" --gt "$root/ground_truth" "${eval_flags[@]}" | tee "$out/eval.log"
exit "${PIPESTATUS[0]}"
