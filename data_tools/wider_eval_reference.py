#!/usr/bin/python3
"""Reference WIDER FACE evaluation, written from /work/shared/design/WIDER_EVAL.md and the official MATLAB
eval_tools (read_pred.m, norm_score.m, evaluation.m, boxoverlap.m, VOCap.m) as an independent check of the C++
evaluator (src/eval/wider_eval.cpp). It follows the MATLAB code's structure step by step and is deliberately
slow and literal: per-threshold `find(..., 'last')`, per-prediction overlap vectors, MATLAB's int32/single
arithmetic spelled out with numpy.

    /usr/bin/python3 data_tools/wider_eval_reference.py --pred DIR --gt DIR [--events a,b] [--all-images]
        [--arithmetic matlab|float64] [--json FILE]

Only images with a prediction file are scored unless --all-images is given (the official code loops over all
3,226 validation images and treats a missing file as no detections). The last line printed is
`easy <AP> medium <AP> hard <AP>`.
"""
import argparse
import json
import os
import sys

import numpy as np
import scipy.io

SETTINGS = ("easy", "medium", "hard")
THRESH_NUM = 1000  # evaluation.m: thresh_num
IOU_THRESH = 0.5   # evaluation.m: IoU_thresh
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


# ---------------------------------------------------------------------------------------------------------
# Ground truth (.mat v5, read with scipy)


def _cell_column(cell):
    """A MATLAB N x 1 (or 1 x N, or empty) cell array as a Python list of its elements."""
    return [cell.flat[i] for i in range(cell.size)]


def _matlab_string(value):
    while isinstance(value, np.ndarray) and value.dtype == object:
        value = value.flat[0]
    if isinstance(value, np.ndarray):
        return str(value.flat[0]) if value.size else ""
    return str(value)


def load_ground_truth(gt_dir):
    """{'events': [...], 'images': [(event, name, boxes int32 [K,4], {setting: 1-based keep indices})]}"""
    face = scipy.io.loadmat(os.path.join(gt_dir, "wider_face_val.mat"))
    events = [_matlab_string(e) for e in _cell_column(face["event_list"])]
    files = [[_matlab_string(f) for f in _cell_column(c)] for c in _cell_column(face["file_list"])]
    boxes = [[np.asarray(b).reshape(-1, 4) if np.asarray(b).size else np.zeros((0, 4), np.int32)
              for b in _cell_column(c)] for c in _cell_column(face["face_bbx_list"])]
    keeps = {}
    for setting in SETTINGS:
        m = scipy.io.loadmat(os.path.join(gt_dir, "wider_%s_val.mat" % setting))
        keeps[setting] = [[np.asarray(k).reshape(-1).astype(np.int64) for k in _cell_column(c)]
                          for c in _cell_column(m["gt_list"])]
    images = []
    for e, event in enumerate(events):
        for j, name in enumerate(files[e]):
            box = boxes[e][j]
            if box.dtype != np.int32:
                raise ValueError("face_bbx_list{%d}{%d} is %s, the official files hold int32" % (e + 1, j + 1, box.dtype))
            images.append((event, name, box, {s: keeps[s][e][j] for s in SETTINGS}))
    return {"events": events, "images": images}


# ---------------------------------------------------------------------------------------------------------
# Predictions (read_pred.m: `<dir>/<event>/<name>.txt`, sorted by score, descending)


def read_prediction_file(path):
    with open(path) as f:
        lines = f.read().split("\n")
    count = int(lines[1].strip())
    rows = []
    for k in range(count):
        fields = lines[2 + k].split()
        rows.append([float(v) for v in fields[:5]])
    pred = np.array(rows, dtype=np.float64).reshape(-1, 5)
    # MATLAB's sort(..., 'descend') keeps equal scores in file order: a stable sort on the negated score.
    order = np.argsort(-pred[:, 4], kind="stable")
    return pred[order]


# ---------------------------------------------------------------------------------------------------------
# MATLAB arithmetic


def matlab_int32(x):
    """MATLAB's int32(): round half away from zero, saturate, NaN -> 0 (elementwise, returned as int64)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        t = np.trunc(x)
        r = t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0.0)
    r = np.where(np.isnan(x), 0.0, r)
    return np.clip(r, INT32_MIN, INT32_MAX).astype(np.int64)


def sat(x):
    """The saturation that ends every int32 op in MATLAB."""
    return np.clip(x, INT32_MIN, INT32_MAX)


def overlap_matlab(gt, p):
    """boxoverlap(gt_bbx, pred) with gt int32 corners [K,4] (x2 = x + w) and one double pred corner row.

    int32 op double gives int32 in MATLAB, so the pred's corners are rounded where they meet the GT's, the
    pred area (double) is rounded when added to the int32 GT area, and the ratio itself is rounded to an
    int32: the overlap is 0 or 1 (or larger for degenerate boxes)."""
    x1 = matlab_int32(np.maximum(gt[:, 0].astype(np.float64), p[0]))
    y1 = matlab_int32(np.maximum(gt[:, 1].astype(np.float64), p[1]))
    x2 = matlab_int32(np.minimum(gt[:, 2].astype(np.float64), p[2]))
    y2 = matlab_int32(np.minimum(gt[:, 3].astype(np.float64), p[3]))
    w = sat(sat(x2 - x1) + 1)
    h = sat(sat(y2 - y1) + 1)
    inter = sat(w * h)
    aarea = sat(sat(sat(gt[:, 2] - gt[:, 0]) + 1) * sat(sat(gt[:, 3] - gt[:, 1]) + 1))
    barea = (p[2] - p[0] + 1) * (p[3] - p[1] + 1)
    union = sat(matlab_int32(aarea.astype(np.float64) + barea) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = matlab_int32(inter.astype(np.float64) / union.astype(np.float64))
    o[w <= 0] = 0
    o[h <= 0] = 0
    return o


def overlap_float(gt, p):
    """The Python ports' bbox_overlaps: the same +1 convention in double precision."""
    iw = np.minimum(gt[:, 2], p[2]) - np.maximum(gt[:, 0], p[0]) + 1
    ih = np.minimum(gt[:, 3], p[3]) - np.maximum(gt[:, 1], p[1]) + 1
    o = np.zeros(len(gt))
    ok = (iw > 0) & (ih > 0)
    parea = (p[2] - p[0] + 1) * (p[3] - p[1] + 1)
    garea = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    ua = garea + parea - iw * ih
    o[ok] = (iw * ih)[ok] / ua[ok]
    return o


def normalise_scores(preds, arithmetic):
    """norm_score.m: one global min/max over every score, then (s - min) / (max - min)."""
    nonempty = [p for p in preds.values() if len(p)]
    out = {}
    if arithmetic == "matlab":
        # realmin/realmax('single') start the running max/min; max(single, double) is single, so the whole
        # normalisation happens in single precision.
        hi = np.float32(np.finfo(np.float32).tiny)
        lo = np.float32(np.finfo(np.float32).max)
        for p in nonempty:
            hi = max(hi, np.float32(p[:, 4].max()))
            lo = min(lo, np.float32(p[:, 4].min()))
        with np.errstate(divide="ignore", invalid="ignore"):
            for key, p in preds.items():
                q = p.copy()
                if len(q):
                    q[:, 4] = ((q[:, 4].astype(np.float32) - lo) / (hi - lo)).astype(np.float64)
                out[key] = q
    else:
        hi, lo = 0.0, 1.0  # the Python port's starting values
        for p in nonempty:
            hi = max(hi, float(p[:, 4].max()))
            lo = min(lo, float(p[:, 4].min()))
        with np.errstate(divide="ignore", invalid="ignore"):
            for key, p in preds.items():
                q = p.copy()
                if len(q):
                    q[:, 4] = (q[:, 4] - lo) / (hi - lo)
                out[key] = q
    return out


# ---------------------------------------------------------------------------------------------------------
# evaluation.m


def image_evaluation(pred, gt_boxes, keep_mask, arithmetic):
    n = len(pred)
    pred_recall = np.zeros(n, dtype=np.int64)
    proposal = np.ones(n, dtype=np.int64)
    recall = np.zeros(len(gt_boxes), dtype=np.int64)
    corners = pred[:, :4].copy()
    corners[:, 2] = pred[:, 0] + pred[:, 2]  # x2 = x + w, no -1
    corners[:, 3] = pred[:, 1] + pred[:, 3]
    if arithmetic == "matlab":
        gt = gt_boxes.astype(np.int64)
        gt = np.stack([gt[:, 0], gt[:, 1], sat(gt[:, 0] + gt[:, 2]), sat(gt[:, 1] + gt[:, 3])], axis=1)
    else:
        gt = gt_boxes.astype(np.float64)
        gt = np.stack([gt[:, 0], gt[:, 1], gt[:, 0] + gt[:, 2], gt[:, 1] + gt[:, 3]], axis=1)
    for h in range(n):
        o = overlap_matlab(gt, corners[h]) if arithmetic == "matlab" else overlap_float(gt, corners[h])
        idx = int(np.argmax(o))  # the first of equal maxima, as MATLAB's max
        if o[idx] >= IOU_THRESH:
            if keep_mask[idx] == 0:
                recall[idx] = -1
                proposal[h] = -1
            elif recall[idx] == 0:
                recall[idx] = 1
        pred_recall[h] = np.count_nonzero(recall == 1)
    return pred_recall, proposal


def image_pr_info(pred, proposal, pred_recall):
    info = np.zeros((THRESH_NUM, 2), dtype=np.int64)
    scores = pred[:, 4]
    for t in range(1, THRESH_NUM + 1):
        thresh = 1 - t / THRESH_NUM
        hits = np.nonzero(scores >= thresh)[0]
        if len(hits) == 0:
            continue
        r = hits[-1]  # find(..., 1, 'last')
        info[t - 1, 0] = np.count_nonzero(proposal[: r + 1] == 1)
        info[t - 1, 1] = pred_recall[r]
    return info


def voc_ap(rec, prec):
    """VOCap.m. MATLAB's max ignores NaN (0/0 precision at thresholds with no detection): fmax."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.fmax(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


def evaluate(gt, pred_dir, events=None, all_images=False, arithmetic="matlab"):
    images = gt["images"]
    if events:
        unknown = [e for e in events if e not in gt["events"]]
        if unknown:
            raise ValueError("unknown event(s): %s" % ", ".join(unknown))
        images = [im for im in images if im[0] in events]
    preds = {}
    scored = []
    for event, name, boxes, keeps in images:
        path = os.path.join(pred_dir, event, name + ".txt")
        if os.path.isfile(path):
            preds[(event, name)] = read_prediction_file(path)
        elif not all_images:
            continue
        else:
            preds[(event, name)] = np.zeros((0, 5))
        scored.append((event, name, boxes, keeps))
    norm = normalise_scores(preds, arithmetic)
    result = {}
    for setting in SETTINGS:
        table = np.zeros((THRESH_NUM, 2), dtype=np.int64)
        faces = 0
        for event, name, boxes, keeps in scored:
            keep = keeps[setting]
            faces += len(keep)  # before the empty check: missed images still count their faces
            p = norm[(event, name)]
            if len(boxes) == 0 or len(p) == 0:
                continue
            mask = np.zeros(len(boxes), dtype=np.int64)
            mask[keep - 1] = 1
            pred_recall, proposal = image_evaluation(p, boxes, mask, arithmetic)
            table += image_pr_info(p, proposal, pred_recall)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = table[:, 1] / table[:, 0]
            recall = table[:, 1] / faces if faces else np.full(THRESH_NUM, np.nan)
        result[setting] = {"ap": voc_ap(recall, precision), "images": len(scored), "faces": int(faces),
                           "proposals_at_zero": int(table[-1, 0]), "recalled_at_zero": int(table[-1, 1])}
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--events", default="")
    ap.add_argument("--all-images", action="store_true")
    ap.add_argument("--arithmetic", choices=("matlab", "float64"), default="matlab")
    ap.add_argument("--json")
    args = ap.parse_args()
    events = [e for e in args.events.split(",") if e]
    result = evaluate(load_ground_truth(args.gt), args.pred, events, args.all_images, args.arithmetic)
    for s in SETTINGS:
        print("%s: %d images, %d faces" % (s, result[s]["images"], result[s]["faces"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(" ".join("%s %.4f" % (s, result[s]["ap"]) for s in SETTINGS))


if __name__ == "__main__":
    sys.exit(main())
