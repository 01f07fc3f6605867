#include "isrn/models/loss.hpp"

#include <limits>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/loss.hpp"
#include "isrn/ops/reduce.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::models {

namespace {

void check_prediction(const char* name, const Tensor& t, int64_t batch, int64_t num_anchors, bool boxes,
                      const Tensor& anchors) {
  ISRN_CHECK(t.defined(), "[detection_loss] undefined argument '", name, "'");
  const bool shape_ok = boxes ? (t.dim() == 3 && t.size(0) == batch && t.size(1) == num_anchors && t.size(2) == 4)
                              : (t.dim() == 2 && t.size(0) == batch && t.size(1) == num_anchors);
  ISRN_CHECK(shape_ok, "[detection_loss] '", name, "' must have shape [", batch, ", ", num_anchors,
             boxes ? ", 4]" : "]", ", got ", shape_str(t.shape()));
  ISRN_CHECK(t.dtype() == anchors.dtype(), "[detection_loss] '", name, "' has dtype ", t.dtype(),
             " but the anchors have ", anchors.dtype());
  ISRN_CHECK(t.device() == anchors.device(), "[detection_loss] '", name, "' is on ", t.device(),
             " but the anchors are on ", anchors.device());
}

}  // namespace

DetectionLoss detection_loss(const Tensor& step1_cls_logits, const Tensor& step1_box_deltas,
                             const Tensor& step2_cls_logits, const Tensor& step2_box_deltas,
                             const AnchorSet& anchors, const std::vector<Tensor>& gt_boxes,
                             const LossConfig& config) {
  ISRN_CHECK(anchors.boxes.defined(), "[detection_loss] the anchor set has no boxes");
  ISRN_CHECK(step1_cls_logits.defined() && step1_cls_logits.dim() >= 1,
             "[detection_loss] step1_cls_logits must have shape [B, A]");
  const int64_t batch = step1_cls_logits.size(0), num_anchors = anchors.size();
  check_prediction("step1_cls_logits", step1_cls_logits, batch, num_anchors, false, anchors.boxes);
  check_prediction("step1_box_deltas", step1_box_deltas, batch, num_anchors, true, anchors.boxes);
  check_prediction("step2_cls_logits", step2_cls_logits, batch, num_anchors, false, anchors.boxes);
  check_prediction("step2_box_deltas", step2_box_deltas, batch, num_anchors, true, anchors.boxes);
  ISRN_CHECK(static_cast<int64_t>(gt_boxes.size()) == batch, "[detection_loss] ", gt_boxes.size(),
             " ground-truth sets for a batch of ", batch);
  ISRN_CHECK(batch > 0, "[detection_loss] the batch is empty");

  std::vector<Tensor> cls1_labels, cls1_weights, reg1_targets, reg1_weights;
  std::vector<Tensor> cls2_labels, cls2_weights, reg2_targets, reg2_weights;
  {
    NoGradGuard no_grad;
    for (int64_t b = 0; b < batch; ++b) {
      ImageTargets t = two_step_targets(anchors, step1_cls_logits.select(0, b).detach(),
                                        step1_box_deltas.select(0, b).detach(), gt_boxes[b], config.targets);
      cls1_labels.push_back(t.cls1_labels);
      cls1_weights.push_back(t.cls1_weights);
      reg1_targets.push_back(t.reg1_targets);
      reg1_weights.push_back(t.reg1_weights);
      cls2_labels.push_back(t.cls2_labels);
      cls2_weights.push_back(t.cls2_weights);
      reg2_targets.push_back(t.reg2_targets);
      reg2_weights.push_back(t.reg2_weights);
    }
  }
  Tensor l1 = stack(cls1_labels, 0), w1 = stack(cls1_weights, 0);
  Tensor r1 = stack(reg1_targets, 0), rw1 = stack(reg1_weights, 0);
  Tensor l2 = stack(cls2_labels, 0), w2 = stack(cls2_weights, 0);
  Tensor r2 = stack(reg2_targets, 0), rw2 = stack(reg2_weights, 0);

  // The positive counts stay on the device as normalizers; they are read back once, for reporting.
  Tensor counts;
  {
    NoGradGuard no_grad;
    counts = stack({sum(mul(l1, w1)), sum(rw1), sum(rw2)}, 0);
  }
  const Tensor normalizer = clamp(counts, 1.0, std::numeric_limits<double>::infinity());

  const double alpha = config.focal_alpha, gamma = config.focal_gamma, beta = config.smooth_l1_beta;
  DetectionLoss out;
  out.stc_cls1 = div(sigmoid_focal_loss(step1_cls_logits, l1, w1, alpha, gamma, Reduction::Sum), normalizer.select(0, 0));
  out.stc_cls2 = div(sigmoid_focal_loss(step2_cls_logits, l2, w2, alpha, gamma, Reduction::Sum), normalizer.select(0, 2));
  // Zero-weight anchors have zero targets, so their smooth L1 terms are finite before the weight drops them.
  out.str_reg1 = div(sum(mul(smooth_l1_loss(step1_box_deltas, r1, beta, Reduction::None), rw1.unsqueeze(2))),
                     normalizer.select(0, 1));
  out.str_reg2 = div(sum(mul(smooth_l1_loss(step2_box_deltas, r2, beta, Reduction::None), rw2.unsqueeze(2))),
                     normalizer.select(0, 2));
  out.total = add(add(out.stc_cls1, out.stc_cls2), add(out.str_reg1, out.str_reg2));
  const std::vector<double> n = counts.to(DType::Float64).to_vector<double>();
  out.num_pos1_cls = static_cast<int64_t>(n[0]);
  out.num_pos1_reg = static_cast<int64_t>(n[1]);
  out.num_pos2 = static_cast<int64_t>(n[2]);
  return out;
}

}  // namespace isrn::models
