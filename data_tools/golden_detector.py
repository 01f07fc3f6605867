#!/usr/bin/python3
"""Whole-model golden check of the ISRN detector: the network, anchors, two-step targets and loss of
SPEC §2–§8 (with the Decisions table) written again in PyTorch, independently of the C++, for a tiny
configuration, in float64.

Writes
  tests/golden/detector_tiny_weights.safetensors  every parameter under the C++ module's dotted name,
      with the metadata save_checkpoint writes (format, format_version, config as JSON), so
      models::load_weights loads it strictly into a float64 Detector built from that config;
  tests/golden/detector_tiny.safetensors  the images and ground truth, the anchors, the flattened
      step-1/step-2 logits and deltas in anchor order, each image's targets (labels, weights, refined
      boxes, regression targets), per-level label counts, every loss term with its positive counts,
      the gradient of the total loss w.r.t. the four prediction tensors and w.r.t. selected
      parameters (stem, layer4, C6/C7, first-step, FPN lateral/smooth/P6/P7, RFE, predictors).
Read by tests/test_golden_detector.cpp.

Configuration: ResNet-18 layout at width 1/8 (stem 2 → 2 → 4 ch, C2..C5 = 8/16/32/64, C6 = 32,
C7 = 8, FPN and head 32 ch, RFE 8 ch), ISRN stem, GroupNorm(16) with the group count reduced to
gcd(16, channels) for thin layers (the C++ NormConfig rule), two 136×104 images: not multiples of
128 and not square, so every ceil halving of SPEC §2.1 is exercised (maps 34×26, 17×13, 9×7, 5×4,
3×2, 2×1). Image 0 has nine faces from 11 px to 190 px, two of them reaching past the border
(positives on every level in both steps, overlapping faces), image 1 has none.

The weights are random (not the SPEC initialization) so that every layer does something visible: the
logits spread around the prior so the STC filter both keeps and drops negatives, and the step-1
deltas move the STR-level anchors so step 2 matches refined boxes, not the anchors.

Discrete decisions (IoU thresholds, the best-anchor ties, the argmax between faces, the STC θ, the dw
clamp) are asserted to sit at least kMargin away from their thresholds, so rounding differences of
~1e-13 between the two float64 implementations cannot flip one; if a change of seed or boxes breaks
that, the script refuses to write.

Usage: /usr/bin/python3 data_tools/golden_detector.py [output_dir]   (Debian's python3-torch)
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch.set_default_dtype(torch.float64)

MARGIN = 1e-7  # how far a decision must be from its threshold (the implementations agree to ~1e-12)

# --- configuration (SPEC Decisions table; width and depth small) ------------------------------------

DEPTH = 18
WIDTH_MULT = 0.125
NORM_GROUPS = 16
GN_EPS = 1e-5
IMAGE_H, IMAGE_W = 136, 104
STRIDES = [4, 8, 16, 32, 64, 128]          # levels 2..7
SCALES = [2.0, 2.0 * math.sqrt(2.0)]       # SPEC §5.1; a = scale index
RATIO = 1.25                               # height / width
STEP1 = (0.3, 0.7)                         # (negative below, positive at least)
STEP2 = (0.4, 0.5)
STC_LEVELS = [2, 3, 4]
STR_LEVELS = [5, 6, 7]
STC_THETA = 0.01
VARIANCES = [0.1, 0.1, 0.2, 0.2]
MAX_LOG_SCALE = math.log(1000.0 / 16.0)
ALPHA, GAMMA = 0.25, 2.0
BETA = 1.0 / 9.0
PRIOR = 0.01

CONFIG_JSON = {
    "model": {
        "backbone": {"depth": DEPTH, "width_mult": WIDTH_MULT, "stem": "isrn"},
        "norm": "group", "norm_groups": NORM_GROUPS,
        "fpn": {"upsample": "bilinear", "p6_from": "lateral"},
        "head": {"separate_step1_predictors": False, "prior": PRIOR},
    },
    "anchors": {"scales": SCALES, "ratio": RATIO, "plus_one_corners": True},
    "match": {"step1": {"neg": STEP1[0], "pos": STEP1[1]}, "step2": {"neg": STEP2[0], "pos": STEP2[1]},
              "best_anchor_rule": True},
    "stc": {"theta": STC_THETA},
    "loss": {"alpha": ALPHA, "gamma": GAMMA, "smooth_l1_beta": BETA},
    "infer": {"theta": 0.01, "score_threshold": 0.0, "top_k": 2000, "nms": 0.4, "keep": 750},  # unused here
}


def ch(c):
    return max(1, int(round(c * WIDTH_MULT)))


def group_norm(channels):
    # GroupNorm(16) everywhere; a layer thinner than 16 channels (or not divisible) uses the largest
    # group count dividing both, down to per-channel normalization.
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels, eps=GN_EPS)


# --- network (SPEC §2–§4) ----------------------------------------------------------------------------
# Attribute names give the state_dict the C++ module's dotted names.

class BasicBlock(nn.Module):
    """3x3 (stride s) → GN → ReLU → 3x3 → GN, plus the shortcut (1x1 stride s + GN when the shape
    changes), then ReLU. Backbone convs carry no bias (the GN shift replaces it)."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.norm1 = group_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.norm2 = group_norm(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, 0, bias=False), group_norm(planes))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Backbone(nn.Module):
    """ISRN stem (SPEC §2.3): 7x7 s1 16 ch → GN → ReLU → BasicBlock 16 s1 → BasicBlock 32 s2 → maxpool
    3/2/1; then ResNet-18 layer1..4 (stride on the first block of layers 2–4); C6 = 3x3 s2 (C5 → C5/2),
    C7 = 3x3 s2 (C6 → C6/4) with bias, no norm, no ReLU (SPEC §2.2: 2048 → 1024 → 256 at full width)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, ch(16), 7, 1, 3, bias=False)
        self.norm1 = group_norm(ch(16))
        self.stem_block1 = BasicBlock(ch(16), ch(16), 1)
        self.stem_block2 = BasicBlock(ch(16), ch(32), 2)
        cin = ch(32)
        self.out_channels = []
        for i, planes in enumerate([64, 128, 256, 512]):
            blocks = []
            for b in range(2):
                blocks.append(BasicBlock(cin, ch(planes), 2 if (b == 0 and i > 0) else 1))
                cin = ch(planes)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels.append(cin)
        c6, c7 = cin // 2, cin // 2 // 4
        self.c6 = nn.Conv2d(cin, c6, 3, 2, 1, bias=True)
        self.c7 = nn.Conv2d(c6, c7, 3, 2, 1, bias=True)
        self.out_channels += [c6, c7]

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.stem_block2(self.stem_block1(y))
        y = F.max_pool2d(y, 3, 2, 1)
        out = []
        for i in range(4):
            y = getattr(self, f"layer{i + 1}")(y)
            out.append(y)
        out.append(self.c6(out[-1]))
        out.append(self.c7(out[-1]))
        return out  # C2..C7


class FirstStep(nn.Module):
    """SPEC §3.2: F1_l = 1x1 conv with bias on C_l → feature width, no ReLU."""

    def __init__(self, in_channels, width):
        super().__init__()
        for i, cin in enumerate(in_channels):
            setattr(self, f"conv{i + 2}", nn.Conv2d(cin, width, 1, bias=True))

    def forward(self, maps):
        return [getattr(self, f"conv{i + 2}")(m) for i, m in enumerate(maps)]


class ConvNorm(nn.Module):
    def __init__(self, cin, cout, kernel, padding, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, padding, bias=True)
        self.norm = group_norm(cout)
        self.relu = relu

    def forward(self, x):
        y = self.norm(self.conv(x))
        return F.relu(y) if self.relu else y


class FPN(nn.Module):
    """SPEC §3.1: laterals 1x1; top-down merges of the unsmoothed sums with bilinear align_corners=True
    to the lateral's exact size; 3x3 smoothing (+ GN, Decisions table), no ReLU; P6 = 3x3 s2 on the C5
    lateral, P7 = 3x3 s2 on P6, no ReLU between them."""

    def __init__(self, in_channels, width):
        super().__init__()
        for i in range(4):
            setattr(self, f"lateral{i + 2}", nn.Conv2d(in_channels[i], width, 1, bias=True))
        for i in range(4):
            setattr(self, f"smooth{i + 2}", ConvNorm(width, width, 3, 1, relu=False))
        self.p6 = nn.Conv2d(width, width, 3, 2, 1, bias=True)
        self.p7 = nn.Conv2d(width, width, 3, 2, 1, bias=True)

    def forward(self, maps):
        lat = [getattr(self, f"lateral{i + 2}")(maps[i]) for i in range(4)]
        merged = [None, None, None, lat[3]]
        for i in (2, 1, 0):
            up = F.interpolate(merged[i + 1], size=lat[i].shape[-2:], mode="bilinear", align_corners=True)
            merged[i] = up + lat[i]
        out = [getattr(self, f"smooth{i + 2}")(merged[i]) for i in range(4)]
        p6 = self.p6(lat[3])
        return out + [p6, self.p7(p6)]


class RFE(nn.Module):
    """SPEC §4.2: four branches 1x1 → (1×5 | 5×1 | 1×3 | 3×1) → 1x1 at width/4, each conv + GN + ReLU;
    concatenated in branch order, 1x1 + GN + ReLU, plus the input (no ReLU after the add)."""

    KERNELS = [(1, 5), (5, 1), (1, 3), (3, 1)]

    def __init__(self, width):
        super().__init__()
        inter = width // 4
        for b, (kh, kw) in enumerate(self.KERNELS):
            setattr(self, f"branch{b}", nn.Sequential(
                ConvNorm(width, inter, 1, 0, relu=True),
                ConvNorm(inter, inter, (kh, kw), (kh // 2, kw // 2), relu=True),
                ConvNorm(inter, inter, 1, 0, relu=True)))
        self.fuse = ConvNorm(4 * inter, width, 1, 0, relu=True)

    def forward(self, x):
        branches = torch.cat([getattr(self, f"branch{b}")(x) for b in range(4)], dim=1)
        return self.fuse(branches) + x


class Subnet(nn.Module):
    """SPEC §4.1: conv3x3 → (GN) → ReLU → RFE → conv3x3 → (GN) → ReLU."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = ConvNorm(width, width, 3, 1, relu=True)
        self.rfe = RFE(width)
        self.conv2 = ConvNorm(width, width, 3, 1, relu=True)

    def forward(self, x):
        return self.conv2(self.rfe(self.conv1(x)))


class Head(nn.Module):
    """One head for every level and both steps, predictors included: cls 1x1 → A, box 1x1 → 4A."""

    def __init__(self, width, anchors):
        super().__init__()
        self.cls_subnet = Subnet(width)
        self.box_subnet = Subnet(width)
        self.cls_pred = nn.Conv2d(width, anchors, 1, bias=True)
        self.box_pred = nn.Conv2d(width, 4 * anchors, 1, bias=True)

    def forward(self, features):
        return ([self.cls_pred(self.cls_subnet(f)) for f in features],
                [self.box_pred(self.box_subnet(f)) for f in features])


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        width = ch(256)
        self.first_step = FirstStep(self.backbone.out_channels, width)
        self.fpn = FPN(self.backbone.out_channels, width)
        self.head = Head(width, len(SCALES))

    def forward(self, images):
        maps = self.backbone(images)
        step1 = flatten(*self.head(self.first_step(maps)))
        step2 = flatten(*self.head(self.fpn(maps[:4])))
        return step1, step2, [tuple(m.shape[-2:]) for m in maps]


def flatten(cls, box):
    """Per level [B, A, H, W] / [B, 4A, H, W] → [B, ΣHWA] / [B, ΣHWA, 4], index (y·W + x)·A + a and
    box channel 4a + k → k (SPEC §4.1), levels concatenated in order."""
    logits, deltas = [], []
    for c, b in zip(cls, box):
        n, a, h, w = c.shape
        logits.append(c.permute(0, 2, 3, 1).reshape(n, h * w * a))
        deltas.append(b.reshape(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4))
    return torch.cat(logits, 1), torch.cat(deltas, 1)


def randomize(model, gen):
    """Random weights of a sensible scale for every parameter, so activations stay O(1) and every
    decision has both outcomes: He-like convs, GN γ ∈ [0.5, 1.5], β ∈ [−0.3, 0.3], biases ±0.1;
    the cls predictor around the prior bias −log((1−π)/π) with a spread that puts step-1 face
    probabilities on both sides of the STC θ = 0.01."""
    for name, p in model.named_parameters():
        with torch.no_grad():
            if ".norm" in name or name.split(".")[-2].isdigit() and p.dim() == 1 and "downsample" in name:
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
                else:
                    p.copy_((torch.rand(p.shape, generator=gen) - 0.5) * 0.6)
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                scale = math.sqrt(2.0 / fan_in)
                if name.startswith("head.cls_pred"):
                    scale = 0.35
                elif name.startswith("head.box_pred"):
                    scale = 0.25
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
            else:  # conv biases
                p.copy_((torch.rand(p.shape, generator=gen) - 0.5) * 0.2)
                if name == "head.cls_pred.bias":
                    p.add_(-math.log((1 - PRIOR) / PRIOR))


# --- anchors (SPEC §5.2, Detectron generator with the "+1" corners) ----------------------------------

def map_sizes(h, w):
    sizes = []
    for s in STRIDES:
        mh, mw = h, w
        for _ in range(int(math.log2(s))):
            mh, mw = -(-mh // 2), -(-mw // 2)
        sizes.append((mh, mw))
    return sizes


def numpy_round(x):
    # numpy.round rounds half to even; Python's round does too.
    return float(round(x))


def anchors_for(h, w):
    boxes, levels = [], []
    for s, (mh, mw) in zip(STRIDES, map_sizes(h, w)):
        ws = numpy_round(math.sqrt(s * s / RATIO))
        hs = numpy_round(ws * RATIO)
        cell = []
        for k in SCALES:
            aw, ah = ws * k, hs * k
            c = 0.5 * (s - 1)
            cell.append([c - 0.5 * (aw - 1), c - 0.5 * (ah - 1), c + 0.5 * (aw - 1), c + 0.5 * (ah - 1)])
        cell = torch.tensor(cell)                                     # [A, 4]
        ys, xs = torch.meshgrid(torch.arange(mh) * float(s), torch.arange(mw) * float(s), indexing="ij")
        shifts = torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4)  # [(y·W + x), 1, 4]
        boxes.append((shifts + cell[None]).reshape(-1, 4))
        levels.append(torch.full((mh * mw * len(SCALES),), int(math.log2(s)), dtype=torch.int64))
    return torch.cat(boxes), torch.cat(levels)


# --- matching, coding, targets (SPEC §6, §7) ---------------------------------------------------------

def box_iou(a, b):
    """IoU without the +1 (SPEC §6.3): areas (x2 − x1)(y2 − y1)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    assert bool((union >= 1).all()), "a union below 1 px²: SPEC's clamp would matter"
    return inter / union


def check_margin(values, threshold, what):
    gap = (values - threshold).abs().min().item() if values.numel() else math.inf
    assert gap > MARGIN, f"{what}: a value lies {gap:g} from the threshold {threshold}"


def assign(boxes, gt, thresholds, what):
    """Labels 1 / 0 / −1: positive if the best IoU ≥ pos, negative if < neg, ignored between; every
    GT also claims its best box(es), ties included, when that IoU > 0 (the best-anchor rule). A
    positive regresses to its highest-IoU GT."""
    neg, pos = thresholds
    n = boxes.shape[0]
    if gt.shape[0] == 0:
        return torch.zeros(n, dtype=torch.int64), torch.full((n,), -1, dtype=torch.int64)
    iou = box_iou(boxes, gt)                                         # [A, G]
    best_iou, best_gt = iou.max(1)
    check_margin(best_iou, neg, what + " negative threshold")
    check_margin(best_iou, pos, what + " positive threshold")
    labels = torch.full((n,), -1, dtype=torch.int64)
    labels[best_iou < neg] = 0
    labels[best_iou >= pos] = 1
    gt_best = iou.max(0).values                                      # [G]
    for g in range(gt.shape[0]):
        col = iou[:, g]
        near = (col - gt_best[g]).abs() <= MARGIN * gt_best[g]
        assert bool((col[near] == gt_best[g]).all()), f"{what}: GT {g} has a near-tie for its best box"
    claimed = ((iou == gt_best[None, :]) & (gt_best[None, :] > 0)).any(1)
    labels[claimed] = 1
    if gt.shape[0] > 1:
        top2 = iou.topk(2, dim=1).values
        gap = (top2[:, 0] - top2[:, 1])[labels == 1]
        assert bool((gap > MARGIN).all()), f"{what}: a positive sits between two faces"
    matched = torch.where(labels == 1, best_gt, torch.full_like(best_gt, -1))
    return labels, matched


def encode(boxes, ref):
    """(cx, cy, w, h) deltas of `boxes` against `ref`, widths x2 − x1, divided by the variances."""
    wr, hr = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    cxr, cyr = (ref[:, 0] + ref[:, 2]) * 0.5, (ref[:, 1] + ref[:, 3]) * 0.5
    wb, hb = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cxb, cyb = (boxes[:, 0] + boxes[:, 2]) * 0.5, (boxes[:, 1] + boxes[:, 3]) * 0.5
    v = VARIANCES
    return torch.stack([(cxb - cxr) / wr / v[0], (cyb - cyr) / hr / v[1],
                        torch.log(wb / wr) / v[2], torch.log(hb / hr) / v[3]], 1)


def decode(deltas, ref):
    """The inverse, with dw·v2 and dh·v3 clamped to log(1000/16) before the exp."""
    v = VARIANCES
    wr, hr = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    cxr, cyr = (ref[:, 0] + ref[:, 2]) * 0.5, (ref[:, 1] + ref[:, 3]) * 0.5
    cx = deltas[:, 0] * v[0] * wr + cxr
    cy = deltas[:, 1] * v[1] * hr + cyr
    lw, lh = deltas[:, 2] * v[2], deltas[:, 3] * v[3]
    check_margin(torch.cat([lw, lh]), MAX_LOG_SCALE, "decode clamp")
    w = torch.exp(lw.clamp(max=MAX_LOG_SCALE)) * wr
    h = torch.exp(lh.clamp(max=MAX_LOG_SCALE)) * hr
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)


def image_targets(anchors, levels, logits1, deltas1, gt):
    """SPEC §6.2, §7.2, §7.3 for one image, from the detached step-1 predictions."""
    stc = torch.isin(levels, torch.tensor(STC_LEVELS)).double()
    str_ = torch.isin(levels, torch.tensor(STR_LEVELS))
    t = {}
    lab1, m1 = assign(anchors, gt, STEP1, "step 1")
    pos1 = (lab1 == 1).double()
    t["cls1_labels"] = pos1
    t["cls1_weights"] = (lab1 >= 0).double() * stc                  # STC levels, non-ignored
    t["reg1_weights"] = pos1 * str_.double()                         # step-1 positives on STR levels
    t["reg1_targets"] = regression_targets(anchors, gt, m1, t["reg1_weights"])

    refined = torch.where(str_[:, None], decode(deltas1, anchors), anchors)
    t["refined_boxes"] = refined
    lab2, m2 = assign(refined, gt, STEP2, "step 2")
    pos2 = (lab2 == 1).double()
    p1 = torch.sigmoid(logits1)
    check_margin(p1[stc > 0], STC_THETA, "STC filter")
    easy_negative = stc * (lab2 == 0).double() * (p1 < STC_THETA).double()
    t["cls2_labels"] = pos2
    t["cls2_weights"] = (lab2 >= 0).double() * (1 - easy_negative)
    t["reg2_weights"] = pos2
    t["reg2_targets"] = regression_targets(refined, gt, m2, pos2)
    return t, lab1, lab2, easy_negative


def regression_targets(ref, gt, matched, weights):
    out = torch.zeros(ref.shape[0], 4)
    sel = weights > 0
    if bool(sel.any()):
        out[sel] = encode(gt[matched[sel]], ref[sel])
    return out


# --- loss (SPEC §8) ----------------------------------------------------------------------------------

def focal_sum(logits, labels, weights):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = p * labels + (1 - p) * (1 - labels)
    alpha_t = ALPHA * labels + (1 - ALPHA) * (1 - labels)
    return (weights * alpha_t * ce * (1 - p_t) ** GAMMA).sum()


def smooth_l1_sum(deltas, targets, weights):
    return (F.smooth_l1_loss(deltas, targets, beta=BETA, reduction="none").sum(-1) * weights).sum()


def detection_loss(step1, step2, targets):
    """Each term over the batch, divided by its own batch-total positive count (at least 1)."""
    (l1, d1), (l2, d2) = step1, step2
    stack = {k: torch.stack([t[k] for t in targets]) for k in targets[0]}
    n1_cls = (stack["cls1_labels"] * stack["cls1_weights"]).sum()
    n1_reg = stack["reg1_weights"].sum()
    n2 = stack["reg2_weights"].sum()
    terms = {
        "stc_cls1": focal_sum(l1, stack["cls1_labels"], stack["cls1_weights"]) / n1_cls.clamp(min=1),
        "stc_cls2": focal_sum(l2, stack["cls2_labels"], stack["cls2_weights"]) / n2.clamp(min=1),
        "str_reg1": smooth_l1_sum(d1, stack["reg1_targets"], stack["reg1_weights"]) / n1_reg.clamp(min=1),
        "str_reg2": smooth_l1_sum(d2, stack["reg2_targets"], stack["reg2_weights"]) / n2.clamp(min=1),
    }
    terms["total"] = terms["stc_cls1"] + terms["stc_cls2"] + terms["str_reg1"] + terms["str_reg2"]
    counts = {"num_pos1_cls": int(n1_cls), "num_pos1_reg": int(n1_reg), "num_pos2": int(n2)}
    return terms, counts


# --- the case ----------------------------------------------------------------------------------------

# Faces of image 0 (x1, y1, x2, y2), chosen for the levels they exercise: two small ones for strides
# 4–8, one at stride 16, two overlapping medium ones (the argmax between faces), one ~stride-32
# face, one covering most of the image, and two reaching past the border (as a crop that does not
# clip would leave them) that give levels 6 and 7 their step-1 positives: inside a 136×104 image no
# face reaches IoU 0.7 with a 114×142 or 228×284 anchor, and without a step-1 positive there C6, C7
# and the F1_6/F1_7 convs would get no gradient at all (step 2 reads C2..C5 only).
GT_IMAGE0 = [
    [6.0, 9.0, 17.0, 23.0],
    [70.0, 112.0, 85.0, 131.0],
    [40.0, 20.0, 69.0, 57.0],
    [14.0, 60.0, 43.0, 97.0],
    [27.0, 74.0, 55.0, 110.0],
    [44.0, 50.0, 102.0, 124.0],
    [2.0, 4.0, 101.0, 131.0],
    [-10.0, -20.0, 88.0, 102.0],
    [-40.0, -60.0, 150.0, 190.0],
]

SELECTED_GRADIENTS = [
    "backbone.conv1.weight",
    "backbone.norm1.weight",
    "backbone.stem_block2.downsample.0.weight",
    "backbone.layer4.0.conv1.weight",
    "backbone.c6.weight",
    "backbone.c7.bias",
    "first_step.conv2.weight",
    "first_step.conv7.weight",
    "fpn.lateral2.weight",
    "fpn.lateral5.weight",
    "fpn.smooth3.norm.bias",
    "fpn.p6.weight",
    "fpn.p7.bias",
    "head.cls_subnet.rfe.branch0.1.conv.weight",
    "head.box_subnet.rfe.branch3.1.conv.weight",
    "head.cls_subnet.rfe.fuse.norm.weight",
    "head.cls_pred.weight",
    "head.cls_pred.bias",
    "head.box_pred.weight",
    "head.box_pred.bias",
]


def main():
    # Here, not at the top: bench/compare_e2e.py imports this module on machines without NumPy.
    from golden_io import out_dir, save
    os.makedirs(out_dir(), exist_ok=True)
    gen = torch.Generator().manual_seed(20240601)
    model = Detector()
    randomize(model, gen)
    # Drawn in float32 and stored so (exact in float64 too): half the bytes of a float64 image.
    images32 = torch.rand(2, 3, IMAGE_H, IMAGE_W, generator=gen, dtype=torch.float32) * 4 - 2
    images = images32.double()
    gts = [torch.tensor(GT_IMAGE0), torch.zeros(0, 4)]

    (l1, d1), (l2, d2), sizes = model(images)
    assert sizes == map_sizes(IMAGE_H, IMAGE_W), (sizes, map_sizes(IMAGE_H, IMAGE_W))
    anchors, levels = anchors_for(IMAGE_H, IMAGE_W)
    assert l1.shape[1] == anchors.shape[0]

    targets, counts_per_level = [], {}
    with torch.no_grad():
        for b, gt in enumerate(gts):
            t, lab1, lab2, easy = image_targets(anchors, levels, l1[b].detach(), d1[b].detach(), gt)
            targets.append(t)
            # Per level: [step-1 pos, neg, ignored, step-2 pos, neg, ignored, STC-dropped].
            rows = []
            for lv in range(2, 8):
                on = levels == lv
                rows.append([int(((lab1 == 1) & on).sum()), int(((lab1 == 0) & on).sum()),
                             int(((lab1 == -1) & on).sum()), int(((lab2 == 1) & on).sum()),
                             int(((lab2 == 0) & on).sum()), int(((lab2 == -1) & on).sum()),
                             int(((easy > 0) & on).sum())])
            counts_per_level[b] = torch.tensor(rows, dtype=torch.int64)
            print(f"image {b} per level [pos1 neg1 ign1 pos2 neg2 ign2 stc_dropped]:\n{counts_per_level[b]}")

    # The loss on leaf copies of the predictions: its gradient w.r.t. them pins a disagreement to
    # the loss (rather than the network) when one shows up.
    leaves = [x.detach().clone().requires_grad_() for x in (l1, d1, l2, d2)]
    terms, counts = detection_loss((leaves[0], leaves[1]), (leaves[2], leaves[3]), targets)
    terms["total"].backward()
    print({k: float(v) for k, v in terms.items()}, counts)
    stc_any = any(int(c[:3, 0].sum()) > 0 for c in counts_per_level.values())
    str1_any = any(int(c[3:, 0].sum()) > 0 for c in counts_per_level.values())
    str2_any = any(int(c[3:, 3].sum()) > 0 for c in counts_per_level.values())
    dropped = sum(int(c[:, 6].sum()) for c in counts_per_level.values())
    kept_neg = sum(int(c[:3, 4].sum()) - int(c[:3, 6].sum()) for c in counts_per_level.values())
    assert stc_any and str1_any and str2_any, "every step needs positives on its levels"
    for lv in (5, 6, 7):  # the step-1 regression is what reaches C5..C7 through F1_5..F1_7
        assert int(counts_per_level[0][lv - 2, 0]) > 0, f"no step-1 positive on level {lv}"
    assert dropped > 0 and kept_neg > 0, "the STC filter must both drop and keep negatives"

    # The whole graph: network → loss.
    model.zero_grad()
    total, _ = detection_loss((l1, d1), (l2, d2), targets)
    total["total"].backward()
    params = dict(model.named_parameters())

    tensors = {"images": images32, "anchors": anchors, "gt_boxes_0": gts[0], "gt_boxes_1": gts[1],
               "step1_logits": l1, "step1_deltas": d1, "step2_logits": l2, "step2_deltas": d2,
               "grad_step1_logits": leaves[0].grad, "grad_step1_deltas": leaves[1].grad,
               "grad_step2_logits": leaves[2].grad, "grad_step2_deltas": leaves[3].grad}
    for k, v in terms.items():
        tensors["loss_" + k] = v.detach()
    for k, v in counts.items():
        tensors[k] = torch.tensor(v, dtype=torch.int64)
    for b, t in enumerate(targets):
        for k, v in t.items():
            # 0/1 labels and weights are exact in uint8 and an eighth the size.
            tensors[f"{k}_{b}"] = v.to(torch.uint8) if ("labels" in k or "weights" in k) else v
        tensors[f"level_counts_{b}"] = counts_per_level[b]
    for name in SELECTED_GRADIENTS:
        assert bool((params[name].grad != 0).any()), f"{name} gets no gradient: the comparison would be vacuous"
        tensors["grad." + name] = params[name].grad
    total_diff = (total["total"] - terms["total"]).abs().item()
    assert total_diff < 1e-12, total_diff
    save("detector_tiny", tensors, {"image_h": IMAGE_H, "image_w": IMAGE_W, "batch": 2,
                                     "selected_gradients": ",".join(SELECTED_GRADIENTS)}, max_bytes=3_000_000)

    weights = {name: p.detach() for name, p in model.state_dict().items()}
    save("detector_tiny_weights", weights,
         {"format": "isrn-detector", "format_version": "1", "config": json.dumps(CONFIG_JSON, indent=2)},
         max_bytes=3_000_000)


if __name__ == "__main__":
    main()
