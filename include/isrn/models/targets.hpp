#pragma once
// Training targets of the two-step detector (SPEC §6, §7): IoU label assignment and the per-image
// targets of STC (selective two-step classification) and STR (selective two-step regression).
#include <array>
#include <cstdint>
#include <vector>

#include "isrn/models/anchors.hpp"
#include "isrn/tensor.hpp"

namespace isrn::models {

// IoU < negative_below: negative; IoU ≥ positive_at_least: positive; in between: ignored.
struct MatchThresholds {
  double negative_below = 0.4;
  double positive_at_least = 0.5;
};

struct MatchConfig {
  MatchThresholds step1{0.3, 0.7};
  MatchThresholds step2{0.4, 0.5};
  // Every ground truth also claims the anchor(s) with its maximal IoU (ties included, IoU > 0) as
  // positive, whatever the thresholds say (Detectron's RetinaNet/RPN rule).
  bool best_anchor_rule = true;
  bool plus_one_iou = false;  // the framework's matching IoU has no +1 (SPEC §6.3)
  std::array<double, 4> variances{0.1, 0.1, 0.2, 0.2};
};

struct Assignment {
  Tensor labels;      // int64 [A]: 1 positive, 0 negative, −1 ignored
  Tensor matched_gt;  // int64 [A]: the ground truth a positive regresses to (its highest-IoU one), −1 elsewhere
};

// Labels `boxes` [A,4] (anchors or refined anchors) against ground truth `gt` [G,4] on the boxes'
// device. Per-anchor best IoU comes from the fused match_anchors (no [A,G] matrix). The best-anchor
// rule needs every anchor tied with a GT's best, so it walks the GTs in chunks with box_iou, holding at
// most about chunk_elements IoU values (plus one bool mask of that size) at a time: at 1024×1024
// (174,720 anchors) the default takes 24 GTs per chunk, 16 MiB of float32 IoU. Zero GT: every anchor
// is negative.
inline constexpr int64_t kAssignChunkElements = int64_t{1} << 22;  // 16 MiB of float32 IoU
Assignment assign(const Tensor& boxes, const Tensor& gt, const MatchThresholds& thresholds,
                  bool best_anchor_rule = true, bool plus_one_iou = false,
                  int64_t chunk_elements = kAssignChunkElements);

struct TwoStepConfig {
  MatchConfig match;
  std::vector<int> stc_levels{2, 3, 4};
  std::vector<int> str_levels{5, 6, 7};
  double stc_theta = 0.01;  // step-2 negatives on STC levels with detached p1 < θ are dropped
  double max_log_scale = 4.135166556742356;  // log(1000/16): the dw, dh clamp when refining
};

// One image's targets. Labels are 0/1 in the predictions' dtype; a weight is 1 where the anchor enters
// that loss term and 0 where it contributes nothing (ignored, not on the term's levels, STC-filtered,
// or not positive for a regression term). Regression targets are zero where their weight is zero.
struct ImageTargets {
  Tensor cls1_labels, cls1_weights;    // [A]: step 1, STC levels only
  Tensor reg1_targets, reg1_weights;   // [A,4], [A]: step 1 positives on STR levels, vs. the anchors
  Tensor cls2_labels, cls2_weights;    // [A]: step 2, all levels, STC filter applied
  Tensor reg2_targets, reg2_weights;   // [A,4], [A]: step 2 positives, vs. the refined boxes
  Tensor refined_boxes;                // [A,4]: detached step-1 decoded boxes on STR levels, anchors elsewhere
};

// Builds the targets of one image from the detached step-1 predictions (logits [A], deltas [A,4]) and
// its ground truth [G,4] (G may be 0). Runs without recording a graph.
ImageTargets two_step_targets(const AnchorSet& anchors, const Tensor& step1_logits, const Tensor& step1_deltas,
                              const Tensor& gt, const TwoStepConfig& config = {});

}  // namespace isrn::models
