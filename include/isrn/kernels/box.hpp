#pragma once
// Box scalar math shared by the CPU loops and the CUDA kernels: areas, IoU and the centre/size codec.
// A box is four consecutive values (x1, y1, x2, y2).
#include "isrn/kernels/scalar_math.hpp"

namespace isrn::kernels {

// Widths are x2 − x1 (+1 in the pixel convention of the SRN NMS). An inverted side counts as 0, so a
// degenerate box has area 0 instead of a negative one that would corrupt the union.
template <typename T>
ISRN_HOST_DEVICE T box_side(T lo, T hi, bool plus_one) {
  return max_(hi - lo + (plus_one ? T(1) : T(0)), T(0));
}

template <typename T>
ISRN_HOST_DEVICE T box_area(const T* b, bool plus_one) {
  return box_side(b[0], b[2], plus_one) * box_side(b[1], b[3], plus_one);
}

// IoU of two boxes whose areas are already known (NMS and matching precompute them). A union of 0
// (two empty boxes) gives IoU 0 rather than 0/0.
template <typename T>
ISRN_HOST_DEVICE T box_iou_with_areas(const T* a, T area_a, const T* b, T area_b, bool plus_one) {
  const T iw = box_side(max_(a[0], b[0]), min_(a[2], b[2]), plus_one);
  const T ih = box_side(max_(a[1], b[1]), min_(a[3], b[3]), plus_one);
  const T inter = iw * ih;
  const T uni = area_a + area_b - inter;
  return uni > T(0) ? inter / uni : T(0);
}

template <typename T>
ISRN_HOST_DEVICE T box_iou_pair(const T* a, const T* b, bool plus_one) {
  return box_iou_with_areas(a, box_area(a, plus_one), b, box_area(b, plus_one), plus_one);
}

// The NMS rule: suppress when IoU > threshold, compared in double so a float32 IoU and a float64 one
// meet the threshold the caller wrote (0.4), not its float rounding (0.4000000059).
template <typename T>
ISRN_HOST_DEVICE bool iou_suppresses(T iou, double threshold) {
  return static_cast<double>(iou) > threshold;
}

// Deltas of `box` against `ref` divided by the variances v: widths x2 − x1, centres the midpoints.
template <typename T>
ISRN_HOST_DEVICE void encode_box(const T* box, const T* ref, const T* v, T* delta) {
  const T wr = ref[2] - ref[0], hr = ref[3] - ref[1];
  const T cxr = (ref[0] + ref[2]) * T(0.5), cyr = (ref[1] + ref[3]) * T(0.5);
  const T wb = box[2] - box[0], hb = box[3] - box[1];
  const T cxb = (box[0] + box[2]) * T(0.5), cyb = (box[1] + box[3]) * T(0.5);
  delta[0] = (cxb - cxr) / wr / v[0];
  delta[1] = (cyb - cyr) / hr / v[1];
  delta[2] = log_(wb / wr) / v[2];
  delta[3] = log_(hb / hr) / v[3];
}

// The inverse of encode_box. The log-scales dw·v2 and dh·v3 are clamped to max_log_scale first, so an
// untrained regressor cannot overflow exp (Detectron's log(1000/16)).
template <typename T>
ISRN_HOST_DEVICE void decode_box(const T* delta, const T* ref, const T* v, T max_log_scale, T* box) {
  const T wr = ref[2] - ref[0], hr = ref[3] - ref[1];
  const T cxr = (ref[0] + ref[2]) * T(0.5), cyr = (ref[1] + ref[3]) * T(0.5);
  const T cx = delta[0] * v[0] * wr + cxr;
  const T cy = delta[1] * v[1] * hr + cyr;
  const T lw = delta[2] * v[2], lh = delta[3] * v[3];
  // Written as a comparison with the limit so a NaN delta stays NaN instead of becoming the limit.
  const T w = exp_(lw > max_log_scale ? max_log_scale : lw) * wr;
  const T h = exp_(lh > max_log_scale ? max_log_scale : lh) * hr;
  box[0] = cx - T(0.5) * w;
  box[1] = cy - T(0.5) * h;
  box[2] = cx + T(0.5) * w;
  box[3] = cy + T(0.5) * h;
}

}  // namespace isrn::kernels
