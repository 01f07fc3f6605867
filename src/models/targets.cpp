// Label assignment and the two-step targets, written with tensor ops only so they run on whichever
// device the anchors live on; no loop visits anchors on the host.
#include "isrn/models/targets.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/boxes.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::models {

namespace {

Tensor scalar_like(double value, const Tensor& like) {
  return full({}, value, TensorOptions(like.dtype()).device(like.device()));
}

// Deltas of each box's matched ground truth against it, zero where `weight` is 0 (so no target of an
// unused anchor, e.g. the log of a degenerate box's width, can leak a NaN into a loss).
Tensor regression_targets(const Tensor& reference, const Tensor& gt_boxes, const Tensor& matched_gt,
                          const Tensor& weight, const std::array<double, 4>& variances) {
  const int64_t n = reference.size(0);
  if (gt_boxes.size(0) == 0 || n == 0)
    return zeros({n, 4}, TensorOptions(reference.dtype()).device(reference.device()));
  const Tensor matched =
      index_select(gt_boxes, 0, clamp(matched_gt, 0.0, static_cast<double>(gt_boxes.size(0) - 1)));
  const Tensor deltas = encode_boxes(matched, reference, variances);
  return where(gt(weight, 0.5).reshape({n, 1}), deltas, scalar_like(0.0, deltas));
}

}  // namespace

Assignment assign(const Tensor& boxes, const Tensor& gt_boxes, const MatchThresholds& thresholds,
                  bool best_anchor_rule, bool plus_one_iou, int64_t chunk_elements) {
  ISRN_CHECK(thresholds.negative_below <= thresholds.positive_at_least, "[assign] the negative threshold ",
             thresholds.negative_below, " lies above the positive threshold ", thresholds.positive_at_least);
  NoGradGuard no_grad;
  const AnchorMatch m = match_anchors(boxes, gt_boxes, plus_one_iou);  // validates both box sets
  const int64_t num_boxes = boxes.size(0), num_gt = gt_boxes.size(0);
  const TensorOptions int64 = TensorOptions(DType::Int64).device(boxes.device());
  if (num_gt == 0) return {zeros({num_boxes}, int64), full({num_boxes}, -1.0, int64)};

  Tensor positive = ge(m.anchor_max_iou, thresholds.positive_at_least);
  const Tensor negative = lt(m.anchor_max_iou, thresholds.negative_below);
  if (best_anchor_rule && num_boxes > 0) {
    // Each GT's best IoU is taken from the very IoU values it is compared with, so a tie is an exact
    // equality whatever rounding the fused matcher's kernel used. A best IoU of 0 is replaced by NaN,
    // which equals nothing: a GT that overlaps no anchor claims none.
    Tensor claims = zeros({num_boxes}, int64);
    const int64_t chunk = std::max<int64_t>(1, chunk_elements / num_boxes);
    const Tensor nan = scalar_like(std::numeric_limits<double>::quiet_NaN(), boxes);
    for (int64_t g0 = 0; g0 < num_gt; g0 += chunk) {
      const int64_t n = std::min(chunk, num_gt - g0);
      const Tensor iou = box_iou(boxes, gt_boxes.narrow(0, g0, n), plus_one_iou);  // [A, n]
      const Tensor best = max(iou, 0).values;
      const Tensor claimable = where(gt(best, 0.0), best, nan).reshape({1, n});
      claims = add(claims, sum(eq(iou, claimable), {1}));
    }
    positive = gt(add(positive.to(DType::Int64), claims), 0.0);
  }
  const Tensor one = full({}, 1.0, int64), zero = full({}, 0.0, int64), minus_one = full({}, -1.0, int64);
  Tensor labels = where(positive, one, where(negative, zero, minus_one));
  Tensor matched = where(positive, m.anchor_argmax, minus_one);
  return {labels, matched};
}

ImageTargets two_step_targets(const AnchorSet& anchors, const Tensor& step1_logits, const Tensor& step1_deltas,
                              const Tensor& gt_boxes, const TwoStepConfig& config) {
  NoGradGuard no_grad;
  const Tensor& a = anchors.boxes;
  ISRN_CHECK(a.defined() && a.dim() == 2 && a.size(1) == 4, "[two_step_targets] anchors must have shape [A, 4]");
  const int64_t n = a.size(0);
  ISRN_CHECK(step1_logits.defined() && step1_logits.dim() == 1 && step1_logits.size(0) == n,
             "[two_step_targets] step-1 logits must have shape [", n, "], got ",
             step1_logits.defined() ? shape_str(step1_logits.shape()) : std::string("undefined"));
  ISRN_CHECK(step1_deltas.defined() && step1_deltas.dim() == 2 && step1_deltas.size(0) == n &&
                 step1_deltas.size(1) == 4,
             "[two_step_targets] step-1 deltas must have shape [", n, ", 4], got ",
             step1_deltas.defined() ? shape_str(step1_deltas.shape()) : std::string("undefined"));
  ISRN_CHECK(step1_logits.dtype() == a.dtype() && step1_deltas.dtype() == a.dtype(),
             "[two_step_targets] step-1 predictions and anchors must share one dtype, got ", step1_logits.dtype(),
             ", ", step1_deltas.dtype(), " and ", a.dtype());
  ISRN_CHECK(step1_logits.device() == a.device() && step1_deltas.device() == a.device(),
             "[two_step_targets] step-1 predictions must be on the anchors' device ", a.device());
  if (gt_boxes.defined()) {
    ISRN_CHECK(gt_boxes.dim() == 2 && gt_boxes.size(1) == 4, "[two_step_targets] ground truth must have shape [G, 4], got ",
               shape_str(gt_boxes.shape()));
    ISRN_CHECK(gt_boxes.dtype() == a.dtype() && gt_boxes.device() == a.device(),
               "[two_step_targets] ground truth must match the anchors' dtype and device (", a.dtype(), ", ",
               a.device(), "), got ", gt_boxes.dtype(), ", ", gt_boxes.device());
  }
  const Tensor gt_boxes_or_none =
      gt_boxes.defined() ? gt_boxes : empty({0, 4}, TensorOptions(a.dtype()).device(a.device()));
  const DType dt = a.dtype();
  const MatchConfig& mc = config.match;

  const Tensor stc = anchors.level_mask(config.stc_levels);
  const Tensor str = anchors.level_mask(config.str_levels);

  ImageTargets t;
  // Step 1 against the original anchors everywhere; its cls labels serve the STC levels, its
  // regression targets the STR levels.
  const Assignment s1 = assign(a, gt_boxes_or_none, mc.step1, mc.best_anchor_rule, mc.plus_one_iou);
  const Tensor pos1 = eq(s1.labels, 1.0).to(dt);
  t.cls1_labels = pos1;
  t.cls1_weights = mul(ge(s1.labels, 0.0).to(dt), stc);
  t.reg1_weights = mul(pos1, str);
  t.reg1_targets = regression_targets(a, gt_boxes_or_none, s1.matched_gt, t.reg1_weights, mc.variances);

  // Step 2 against the refined boxes: the detached step-1 decoding on STR levels, the anchors elsewhere.
  const Tensor decoded = decode_boxes(step1_deltas.detach(), a, mc.variances, config.max_log_scale);
  t.refined_boxes = where(gt(str, 0.5).reshape({n, 1}), decoded, a);
  const Assignment s2 = assign(t.refined_boxes, gt_boxes_or_none, mc.step2, mc.best_anchor_rule, mc.plus_one_iou);
  const Tensor pos2 = eq(s2.labels, 1.0).to(dt);
  // STC: negatives the first step already rejects (p1 < θ) leave the step-2 classification; positives stay.
  const Tensor easy_negative =
      mul(mul(stc, eq(s2.labels, 0.0).to(dt)), lt(sigmoid(step1_logits.detach()), config.stc_theta).to(dt));
  t.cls2_labels = pos2;
  t.cls2_weights = mul(ge(s2.labels, 0.0).to(dt), 1.0 - easy_negative);
  t.reg2_weights = pos2;
  t.reg2_targets = regression_targets(t.refined_boxes, gt_boxes_or_none, s2.matched_gt, pos2, mc.variances);
  return t;
}

}  // namespace isrn::models
