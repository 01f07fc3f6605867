#!/usr/bin/python3
"""Writes the fixed WIDER evaluation cross-check case: a non-trivial prediction set over the validation images
present in the WIDER FACE sample, then scores it with the independent reference (wider_eval_reference.py) and
writes the expected APs for the C++ evaluator's tests.

    /usr/bin/python3 data_tools/make_wider_eval_case.py [--data ../shared/data/widerface] [--out tests/golden]

Writes <out>/wider_eval_case/<event>/<name>.txt and <out>/wider_eval_case.json. The predictions are made to
exercise every branch of the protocol:
  - noisy ground-truth boxes with fractional coordinates (one decimal, so .5 roundings occur), missed faces
    (more often the smaller they are), scores that rise with face size plus noise, rounded to three decimals so
    that equal scores occur and the stable sort matters;
  - duplicate detections of found faces (false positives once the face is recalled), detections of faces
    outside a setting's keep list (dropped, not false positives), and random false positives;
  - lines written in random order (the evaluator sorts), one image with an empty prediction file, and a few
    images with no file at all (not scored unless --all-images).
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wider_eval_reference as ref  # noqa: E402

SEED = 20250611
MISSING_FILES = 5


def noisy_face(rng, box):
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    cx = x + w / 2 + rng.normal(0, 0.08 * w)
    cy = y + h / 2 + rng.normal(0, 0.08 * h)
    nw = w * np.exp(rng.normal(0, 0.12))
    nh = h * np.exp(rng.normal(0, 0.12))
    return [cx - nw / 2, cy - nh / 2, nw, nh]


def face_score(rng, h):
    logit = -2.0 + 0.9 * np.log(max(h, 1.0)) + rng.normal(0, 1.0)
    return 1.0 / (1.0 + np.exp(-logit))


def make_predictions(rng, boxes, width, height):
    rows = []
    for box in boxes:
        h = float(box[3])
        miss = 0.7 if h < 10 else 0.35 if h < 25 else 0.12
        if rng.random() < miss:
            continue
        s = face_score(rng, h)
        rows.append(noisy_face(rng, box) + [s])
        if rng.random() < 0.08:  # a second, shifted detection of the same face
            x, y, w, hh = noisy_face(rng, box)
            rows.append([x + 0.3 * w, y, w, hh, s * rng.uniform(0.3, 0.9)])
    for _ in range(rng.poisson(3)):
        w = float(np.exp(rng.uniform(np.log(6), np.log(160))))
        h = w * rng.uniform(0.8, 1.4)
        x = rng.uniform(0, max(width - w, 1))
        y = rng.uniform(0, max(height - h, 1))
        rows.append([x, y, w, h, rng.beta(1.5, 4.0)])
    rng.shuffle(rows)
    return rows


def write_prediction(path, name, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("%s\n%d\n" % (name, len(rows)))
        for x, y, w, h, s in rows:
            f.write("%.1f %.1f %.1f %.1f %.3f\n" % (x, y, w, h, s))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "widerface"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"))
    args = ap.parse_args()

    gt_dir = os.path.join(args.data, "ground_truth")
    gt = ref.load_ground_truth(gt_dir)
    image_root = os.path.join(args.data, "WIDER_val", "images")
    present = [im for im in gt["images"] if os.path.isfile(os.path.join(image_root, im[0], im[1] + ".jpg"))]
    if not present:
        sys.exit("no validation images under %s" % image_root)

    case_dir = os.path.join(args.out, "wider_eval_case")
    if os.path.isdir(case_dir):
        for event in os.listdir(case_dir):
            for f in os.listdir(os.path.join(case_dir, event)):
                os.remove(os.path.join(case_dir, event, f))
            os.rmdir(os.path.join(case_dir, event))
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(present))
    without_file = set(order[:MISSING_FILES].tolist())
    empty_file = int(order[MISSING_FILES])
    for i, (event, name, boxes, _) in enumerate(present):
        if i in without_file:
            continue
        with Image.open(os.path.join(image_root, event, name + ".jpg")) as img:
            width, height = img.size
        rows = [] if i == empty_file else make_predictions(rng, boxes, width, height)
        write_prediction(os.path.join(case_dir, event, name + ".txt"), name, rows)

    events_subset = ["19--Couple", "20--Family_Group"]
    expected = {
        "seed": SEED,
        "images_present": len(present),
        "images_without_file": sorted("%s/%s" % (present[i][0], present[i][1]) for i in without_file),
        "image_with_empty_file": "%s/%s" % (present[empty_file][0], present[empty_file][1]),
        "events_subset": events_subset,
    }
    runs = {
        "matlab": dict(arithmetic="matlab"),
        "float64": dict(arithmetic="float64"),
        "matlab_all_images": dict(arithmetic="matlab", all_images=True),
        "matlab_events_subset": dict(arithmetic="matlab", events=events_subset),
    }
    for key, kwargs in runs.items():
        expected[key] = ref.evaluate(gt, case_dir, **kwargs)
        print(key, " ".join("%s %.6f" % (s, expected[key][s]["ap"]) for s in ref.SETTINGS))
    with open(os.path.join(args.out, "wider_eval_case.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
