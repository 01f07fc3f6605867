#pragma once
// The detector's training loss (SPEC §8): L = L_STC + L_STR with
//   L_STC = FL(step-1 cls, STC levels) / N1_cls + FL(step-2 cls, all levels, STC-filtered) / N2
//   L_STR = SmoothL1(step-1 deltas, STR levels) / N1_reg + SmoothL1(step-2 deltas, all levels) / N2,
// each N the term's own positives summed over the batch (at least 1).
#include <cstdint>
#include <vector>

#include "isrn/models/anchors.hpp"
#include "isrn/models/targets.hpp"
#include "isrn/tensor.hpp"

namespace isrn::models {

struct LossConfig {
  TwoStepConfig targets;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
  double smooth_l1_beta = 1.0 / 9.0;  // on the variance-normalized deltas
};

struct DetectionLoss {
  Tensor stc_cls1, stc_cls2, str_reg1, str_reg2, total;  // 0-d, differentiable w.r.t. the predictions
  Tensor seg;  // the segmentation branch's BCE (already in total, weighted) when that ablation is on
  int64_t num_pos1_cls = 0;  // step-1 positives on STC levels (normalizes stc_cls1)
  int64_t num_pos1_reg = 0;  // step-1 positives on STR levels (normalizes str_reg1)
  int64_t num_pos2 = 0;      // step-2 positives on all levels (normalizes stc_cls2 and str_reg2)
};

// Predictions are batch-flattened in anchor order: logits [B, A], deltas [B, A, 4], one dtype and device
// with the anchors; gt_boxes holds one [G_b, 4] tensor per image (G_b may be 0). The targets are built
// without a graph from the detached step-1 predictions, so gradients reach the predictions only
// through the loss terms themselves.
DetectionLoss detection_loss(const Tensor& step1_cls_logits, const Tensor& step1_box_deltas,
                             const Tensor& step2_cls_logits, const Tensor& step2_box_deltas,
                             const AnchorSet& anchors, const std::vector<Tensor>& gt_boxes,
                             const LossConfig& config = {});

}  // namespace isrn::models
