// Box ops: IoU, the delta codec, NMS and anchor matching. None of them records a gradient: boxes
// are targets or post-processing, never differentiated.
#include "isrn/ops/boxes.hpp"

#include <cmath>

#include "backend.hpp"

namespace isrn {

namespace {

void check_boxes(const char* op, const char* name, const Tensor& t) {
  ISRN_CHECK(t.defined(), "[", op, "] undefined argument '", name, "'");
  check_floating(op, name, t);
  ISRN_CHECK(t.dim() == 2 && t.size(1) == 4, "[", op, "] argument '", name,
             "' must have shape [N, 4] (x1, y1, x2, y2), got ", shape_str(t.shape()));
}

// Two box sets of one dtype on one device.
void check_box_pair(const char* op, const char* name_a, const Tensor& a, const char* name_b, const Tensor& b) {
  check_boxes(op, name_a, a);
  check_boxes(op, name_b, b);
  check_dtype(op, name_b, b, a.dtype());
  check_same_device(op, a.device(), {{name_b, &b}});
}

void check_variances(const char* op, const std::array<double, 4>& variances) {
  for (double v : variances)
    ISRN_CHECK(v > 0.0 && std::isfinite(v), "[", op, "] variances must be finite and positive, got ", v);
}

}  // namespace

Tensor box_iou(const Tensor& a, const Tensor& b, bool plus_one) {
  check_box_pair("box_iou", "a", a, "b", b);
  Tensor out = empty({a.size(0), b.size(0)}, TensorOptions(a.dtype()).device(a.device()));
  if (out.numel() > 0) ISRN_DISPATCH(a.device(), box_iou, a.detach().contiguous(), b.detach().contiguous(), plus_one, out);
  return out;
}

Tensor encode_boxes(const Tensor& boxes, const Tensor& reference, const std::array<double, 4>& variances) {
  check_box_pair("encode_boxes", "boxes", boxes, "reference", reference);
  ISRN_CHECK(boxes.size(0) == reference.size(0), "[encode_boxes] boxes and reference must pair up one to one, got ",
             boxes.size(0), " and ", reference.size(0), " boxes");
  check_variances("encode_boxes", variances);
  Tensor out = empty(boxes.shape(), TensorOptions(boxes.dtype()).device(boxes.device()));
  if (out.numel() > 0)
    ISRN_DISPATCH(boxes.device(), encode_boxes, boxes.detach().contiguous(), reference.detach().contiguous(), variances,
                  out);
  return out;
}

Tensor decode_boxes(const Tensor& deltas, const Tensor& reference, const std::array<double, 4>& variances,
                    double max_log_scale) {
  check_box_pair("decode_boxes", "deltas", deltas, "reference", reference);
  ISRN_CHECK(deltas.size(0) == reference.size(0), "[decode_boxes] deltas and reference must pair up one to one, got ",
             deltas.size(0), " and ", reference.size(0), " rows");
  check_variances("decode_boxes", variances);
  ISRN_CHECK(!std::isnan(max_log_scale), "[decode_boxes] max_log_scale is NaN");
  Tensor out = empty(deltas.shape(), TensorOptions(deltas.dtype()).device(deltas.device()));
  if (out.numel() > 0)
    ISRN_DISPATCH(deltas.device(), decode_boxes, deltas.detach().contiguous(), reference.detach().contiguous(),
                  variances, max_log_scale, out);
  return out;
}

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold, bool plus_one) {
  check_boxes("nms", "boxes", boxes);
  ISRN_CHECK(scores.defined(), "[nms] undefined argument 'scores'");
  check_dtype("nms", "scores", scores, boxes.dtype());
  ISRN_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "[nms] scores must have shape [N] = [",
             boxes.size(0), "], got ", shape_str(scores.shape()));
  check_same_device("nms", boxes.device(), {{"scores", &scores}});
  ISRN_CHECK(!std::isnan(iou_threshold), "[nms] iou_threshold is NaN");
  if (boxes.size(0) == 0) return empty({0}, TensorOptions(DType::Int64).device(boxes.device()));
  return ISRN_DISPATCH(boxes.device(), nms, boxes.detach().contiguous(), scores.detach().contiguous(), iou_threshold,
                       plus_one);
}

AnchorMatch match_anchors(const Tensor& anchors, const Tensor& gt, bool plus_one) {
  check_box_pair("match_anchors", "anchors", anchors, "gt", gt);
  const int64_t num_anchors = anchors.size(0), num_gt = gt.size(0);
  const TensorOptions values = TensorOptions(anchors.dtype()).device(anchors.device());
  const TensorOptions indices = TensorOptions(DType::Int64).device(anchors.device());
  AnchorMatch m{empty({num_anchors}, values), empty({num_anchors}, indices), empty({num_gt}, indices),
                empty({num_gt}, values)};
  if (num_anchors == 0 || num_gt == 0) {
    // Nothing to match: every anchor is background (argmax −1) and every ground truth unclaimed.
    m.anchor_max_iou.zero_();
    m.anchor_argmax.fill_(-1.0);
    m.gt_best_anchor.fill_(-1.0);
    m.gt_best_iou.zero_();
    return m;
  }
  ISRN_DISPATCH(anchors.device(), match_anchors, anchors.detach().contiguous(), gt.detach().contiguous(), plus_one, m);
  return m;
}

}  // namespace isrn
