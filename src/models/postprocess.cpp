#include "isrn/models/postprocess.hpp"

#include <algorithm>
#include <cmath>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/boxes.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::models {

Detections detect_single_scale(const Tensor& step1_cls_logits, const Tensor& step1_box_deltas,
                               const Tensor& step2_cls_logits, const Tensor& step2_box_deltas,
                               const AnchorSet& anchors, const InferenceConfig& config, double scale) {
  NoGradGuard no_grad;
  const Tensor& a = anchors.boxes;
  ISRN_CHECK(a.defined() && a.dim() == 2 && a.size(1) == 4, "[detect_single_scale] anchors must have shape [A, 4]");
  const int64_t n = a.size(0);
  const auto check = [&](const char* name, const Tensor& t, bool boxes) {
    ISRN_CHECK(t.defined(), "[detect_single_scale] undefined argument '", name, "'");
    const bool shape_ok = boxes ? (t.dim() == 2 && t.size(0) == n && t.size(1) == 4) : (t.dim() == 1 && t.size(0) == n);
    ISRN_CHECK(shape_ok, "[detect_single_scale] '", name, "' must have shape [", n, boxes ? ", 4]" : "]", ", got ",
               shape_str(t.shape()));
    ISRN_CHECK(t.dtype() == a.dtype() && t.device() == a.device(), "[detect_single_scale] '", name,
               "' must match the anchors' dtype and device (", a.dtype(), ", ", a.device(), "), got ", t.dtype(),
               ", ", t.device());
  };
  check("step1_cls_logits", step1_cls_logits, false);
  check("step1_box_deltas", step1_box_deltas, true);
  check("step2_cls_logits", step2_cls_logits, false);
  check("step2_box_deltas", step2_box_deltas, true);
  ISRN_CHECK(std::isfinite(scale) && scale > 0.0, "[detect_single_scale] scale must be finite and positive, got ",
             scale);
  ISRN_CHECK(config.pre_nms_top_n >= 0 && config.keep_top_n >= 0,
             "[detect_single_scale] pre_nms_top_n and keep_top_n must not be negative");

  const Tensor stc = gt(anchors.level_mask(config.stc_levels), 0.5);
  const Tensor str = gt(anchors.level_mask(config.str_levels), 0.5);
  const Tensor p1 = sigmoid(step1_cls_logits);
  const Tensor p2 = sigmoid(step2_cls_logits);
  const Tensor refined =
      where(str.reshape({n, 1}), decode_boxes(step1_box_deltas, a, config.variances, config.max_log_scale), a);

  // A candidate scores above the threshold and, on STC levels, survived step 1 (p1 > θ). The two tests
  // meet as integers, since bool tensors have no arithmetic.
  const Tensor stc_rejected = mul(stc.to(DType::Int64), le(p1, config.stc_theta).to(DType::Int64));
  const Tensor candidate = gt(mul(gt(p2, config.score_threshold).to(DType::Int64), 1.0 - stc_rejected), 0.0);
  Tensor index = nonzero_flat(candidate);
  Tensor scores = index_select(p2, 0, index);
  const int64_t k = std::min(config.pre_nms_top_n, scores.size(0));
  const ValuesIndices top = topk(scores, k, true);
  index = index_select(index, 0, top.indices);
  scores = top.values;
  Tensor boxes = decode_boxes(index_select(step2_box_deltas, 0, index), index_select(refined, 0, index),
                              config.variances, config.max_log_scale);
  Tensor keep = nms(boxes, scores, config.nms_iou, config.nms_plus_one);
  keep = keep.narrow(0, 0, std::min(config.keep_top_n, keep.size(0)));
  boxes = index_select(boxes, 0, keep);
  scores = index_select(scores, 0, keep);
  if (scale != 1.0) boxes = div(sub(boxes, 0.5 * (scale - 1.0)), scale);
  return {boxes, scores};
}

}  // namespace isrn::models
