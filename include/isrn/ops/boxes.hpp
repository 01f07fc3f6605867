#pragma once
// Box ops, no gradient. Boxes are [N,4] (x1, y1, x2, y2), float32 or float64.
#include <array>

#include "isrn/ops/reduce.hpp"
#include "isrn/tensor.hpp"

namespace isrn {

// Pairwise IoU [N,M]. plus_one: widths are x2 - x1 + 1 (the pixel convention of the SRN NMS).
// An inverted side counts as 0, and a zero union gives IoU 0 (not NaN).
Tensor box_iou(const Tensor& a, const Tensor& b, bool plus_one = false);
// Centre/size deltas of `boxes` against `reference` (both [N,4]) divided by the variances:
// dx = (cx_b - cx_r) / w_r / v0, dw = log(w_b / w_r) / v2, widths x2 - x1.
Tensor encode_boxes(const Tensor& boxes, const Tensor& reference,
                    const std::array<double, 4>& variances = {0.1, 0.1, 0.2, 0.2});
// The inverse; dw and dh are clamped to max_log_scale before exponentiation.
Tensor decode_boxes(const Tensor& deltas, const Tensor& reference,
                    const std::array<double, 4>& variances = {0.1, 0.1, 0.2, 0.2},
                    double max_log_scale = 4.135166556742356 /* log(1000/16) */);
// Greedy NMS: kept indices (int64) in descending score order; equal scores keep the lower index
// first; NaN scores sort last. A box is suppressed when its IoU with a kept box is > iou_threshold
// (compared in double).
Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold, bool plus_one = false);

// Per-anchor best ground truth and per-ground-truth best anchor, without the [A,G] matrix:
// anchor_max_iou [A] float, anchor_argmax [A] int64 (-1 when G = 0), gt_best_anchor [G] int64
// (the lowest index among ties), gt_best_iou [G].
struct AnchorMatch {
  Tensor anchor_max_iou, anchor_argmax, gt_best_anchor, gt_best_iou;
};
AnchorMatch match_anchors(const Tensor& anchors, const Tensor& gt, bool plus_one = false);

// Sort along the last dimension (stable: ties keep index order); top-k along the last dimension
// (ties: lower index first). NaN counts as larger than every number (as PyTorch). The values of
// sort and topk carry a gradient to x; the indices are int64.
ValuesIndices sort(const Tensor& x, bool descending = false);
Tensor argsort(const Tensor& x, bool descending = false);
ValuesIndices topk(const Tensor& x, int64_t k, bool largest = true);

}  // namespace isrn
