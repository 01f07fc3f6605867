#pragma once
// Single-scale detection from the two steps' outputs (SPEC §7.4 with the report's §3.4 numbers).
#include <array>
#include <cstdint>
#include <vector>

#include "isrn/models/anchors.hpp"
#include "isrn/tensor.hpp"

namespace isrn::models {

struct InferenceConfig {
  std::vector<int> stc_levels{2, 3, 4};
  std::vector<int> str_levels{5, 6, 7};
  double stc_theta = 0.01;       // STC levels keep an anchor only when its step-1 probability p1 > θ
  double score_threshold = 0.0;  // candidates need sigmoid(step-2 logit) > this (the released code: 0.05)
  int64_t pre_nms_top_n = 2000;  // over all levels together
  double nms_iou = 0.4;
  bool nms_plus_one = true;      // the CUDA NMS of the release measures widths with +1
  int64_t keep_top_n = 750;
  std::array<double, 4> variances{0.1, 0.1, 0.2, 0.2};
  double max_log_scale = 4.135166556742356;  // log(1000/16)
};

struct Detections {
  Tensor boxes;   // [K, 4] (x1, y1, x2, y2), in descending score order
  Tensor scores;  // [K]
};

// One image's detections: step-1/step-2 logits [A] and deltas [A, 4] in anchor order, on the anchors'
// device and dtype. Score = sigmoid(step-2 logit); STR levels decode step 2 from the step-1-refined
// boxes. `scale` is the factor the image was resized by before the network; boxes are mapped back to
// the original image with x = (x' − (s − 1)/2) / s (SPEC §9), the identity for s = 1.
Detections detect_single_scale(const Tensor& step1_cls_logits, const Tensor& step1_box_deltas,
                               const Tensor& step2_cls_logits, const Tensor& step2_box_deltas,
                               const AnchorSet& anchors, const InferenceConfig& config = {}, double scale = 1.0);

}  // namespace isrn::models
