#!/usr/bin/python3
"""Golden files for GroupNorm, sigmoid focal loss, box IoU and NMS, computed with PyTorch in float64.

Writes tests/golden/{group_norm,focal_loss,box_iou,nms}_*.safetensors (inputs, outputs and the
gradients for a fixed upstream gradient), read by tests/test_golden_detection_ops.cpp.

torchvision is not required: its sigmoid_focal_loss, box_iou and nms are re-written below in plain
torch from their published definitions (torchvision/ops/focal_loss.py, boxes.py), with the tie rule
isrn documents for NMS (equal scores keep the lower index first).

Usage: /usr/bin/python3 data_tools/golden_detection_ops.py [output_dir]   (Debian's python3-torch)
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_io import out_dir, save  # noqa: E402

torch.set_default_dtype(torch.float64)




# --- GroupNorm --------------------------------------------------------------------------------------

def group_norm_case(name, shape, groups, affine, relu, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) * 4 - 2).requires_grad_()
    channels = shape[1]
    gamma = (torch.rand(channels, generator=g) + 0.5).requires_grad_() if affine else None
    beta = (torch.rand(channels, generator=g) - 0.5).requires_grad_() if affine else None
    y = F.group_norm(x, groups, gamma, beta, eps=1e-5)
    if relu:
        y = torch.relu(y)
    upstream = torch.rand(shape, generator=g) * 2 - 1
    (y * upstream).sum().backward()
    tensors = {"x": x, "y": y, "upstream": upstream, "grad_x": x.grad}
    if affine:
        tensors.update({"gamma": gamma, "beta": beta, "grad_gamma": gamma.grad, "grad_beta": beta.grad})
    save(name, tensors, {"groups": groups, "eps": 1e-5, "relu": int(relu), "affine": int(affine)})


# --- sigmoid focal loss (torchvision.ops.sigmoid_focal_loss, plus isrn's optional weights) ----------

def torchvision_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction, weights=None):
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if weights is not None:
        loss = loss * weights
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def focal_loss_case(name, shape, alpha, gamma, reduction, soft, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(shape, generator=g) * 12 - 6
    flat = logits.view(-1)
    flat[:4] = torch.tensor([300.0, -300.0, 300.0, -300.0])  # saturated hits and misses
    logits.requires_grad_()
    if soft:
        targets = torch.rand(shape, generator=g)
    else:
        targets = (torch.rand(shape, generator=g) < 0.3).double()
    targets.view(-1)[:4] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    weights = None
    if weighted:
        weights = torch.rand(shape, generator=g) * 2
        weights[torch.rand(shape, generator=g) < 0.25] = 0.0  # ignored anchors
    loss = torchvision_sigmoid_focal_loss(logits, targets, alpha, gamma, reduction, weights)
    upstream = torch.rand(loss.shape, generator=g) * 2 - 1 if reduction == "none" else torch.tensor(0.75)
    (loss * upstream).sum().backward()
    tensors = {"logits": logits, "targets": targets, "loss": loss, "upstream": upstream, "grad_logits": logits.grad}
    if weighted:
        tensors["weights"] = weights
    save(name, tensors, {"alpha": alpha, "gamma": gamma, "reduction": reduction})


# --- boxes (torchvision.ops.box_iou / nms definitions) ----------------------------------------------

def random_boxes(n, g, duplicate_every=0):
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 39 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    if duplicate_every:
        for i in range(duplicate_every, n, duplicate_every):
            boxes[i] = boxes[int(torch.randint(0, i, (1,), generator=g))]
    return boxes


def torchvision_box_iou(a, b, plus_one):
    e = 1.0 if plus_one else 0.0
    area_a = (a[:, 2] - a[:, 0] + e) * (a[:, 3] - a[:, 1] + e)
    area_b = (b[:, 2] - b[:, 0] + e) * (b[:, 3] - b[:, 1] + e)
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt + e).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area_a[:, None] + area_b - inter)


def greedy_nms(boxes, scores, threshold, plus_one):
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = torchvision_box_iou(boxes, boxes, plus_one)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > threshold
    return torch.tensor(keep, dtype=torch.int64)


def box_iou_case(name, plus_one, seed):
    g = torch.Generator().manual_seed(seed)
    a = random_boxes(11, g, duplicate_every=4)
    b = random_boxes(7, g)
    a[0] = b[2]                                            # IoU exactly 1
    a[1] = torch.tensor([500.0, 500.0, 520.0, 530.0])      # disjoint from everything
    save(name, {"a": a, "b": b, "iou": torchvision_box_iou(a, b, plus_one)}, {"plus_one": int(plus_one)})


def nms_case(name, n, threshold, plus_one, seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, g, duplicate_every=5)
    scores = torch.floor(torch.rand(n, generator=g) * 20) / 20  # a grid of 20 levels: many ties
    keep = greedy_nms(boxes, scores, threshold, plus_one)
    save(name, {"boxes": boxes, "scores": scores, "keep": keep}, {"iou_threshold": threshold, "plus_one": int(plus_one)})


def main():
    os.makedirs(out_dir(), exist_ok=True)
    group_norm_case("group_norm_affine", (2, 6, 5, 3), 3, affine=True, relu=False, seed=1)
    group_norm_case("group_norm_relu", (3, 8, 4, 4), 4, affine=True, relu=True, seed=2)
    group_norm_case("group_norm_noaffine_2d", (4, 6), 2, affine=False, relu=False, seed=3)
    focal_loss_case("focal_loss_none", (6, 7), 0.25, 2.0, "none", soft=False, weighted=False, seed=4)
    focal_loss_case("focal_loss_sum_soft_weighted", (5, 9), 0.25, 1.5, "sum", soft=True, weighted=True, seed=5)
    focal_loss_case("focal_loss_mean_no_alpha", (4, 10), -1.0, 2.0, "mean", soft=False, weighted=False, seed=6)
    box_iou_case("box_iou_plain", plus_one=False, seed=7)
    box_iou_case("box_iou_plus_one", plus_one=True, seed=8)
    nms_case("nms_threshold_0.5", 80, 0.5, plus_one=False, seed=9)
    nms_case("nms_plus_one_0.4", 80, 0.4, plus_one=True, seed=10)


if __name__ == "__main__":
    main()
