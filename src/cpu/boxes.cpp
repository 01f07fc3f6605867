// Box kernels on the CPU: IoU matrix, delta codec, greedy NMS and anchor matching. The scalar math
// comes from isrn/kernels/box.hpp, shared with the CUDA kernels.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend.hpp"
#include "cpu/strided.hpp"
#include "isrn/kernels/box.hpp"

namespace isrn::cpu {

namespace {

// Below this many IoU evaluations a loop runs on one thread: starting a team costs more.
constexpr int64_t kIouGrain = 8192;

template <typename T>
std::vector<T> areas_of(const T* boxes, int64_t n, bool plus_one) {
  std::vector<T> area(n);
  for (int64_t i = 0; i < n; ++i) area[i] = kernels::box_area(boxes + 4 * i, plus_one);
  return area;
}

}  // namespace

void box_iou(const Tensor& a, const Tensor& b, bool plus_one, Tensor& out) {
  dispatch_floating(a.dtype(), "box_iou", [&](auto tag) {
    using T = decltype(tag);
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    const T* pa = ac.data_ptr<T>();
    const T* pb = bc.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const int64_t n = ac.size(0), m = bc.size(0);
    const std::vector<T> area_b = areas_of(pb, m, plus_one);
    parallel_for(0, n, grain_when(n * m >= kIouGrain, n), [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const T* box = pa + 4 * i;
        const T area = kernels::box_area(box, plus_one);
        for (int64_t j = 0; j < m; ++j)
          po[i * m + j] = kernels::box_iou_with_areas(box, area, pb + 4 * j, area_b[j], plus_one);
      }
    });
  });
}

void encode_boxes(const Tensor& boxes, const Tensor& reference, const std::array<double, 4>& variances, Tensor& out) {
  dispatch_floating(boxes.dtype(), "encode_boxes", [&](auto tag) {
    using T = decltype(tag);
    const Tensor bc = boxes.contiguous(), rc = reference.contiguous();
    const T* pb = bc.data_ptr<T>();
    const T* pr = rc.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T v[4] = {T(variances[0]), T(variances[1]), T(variances[2]), T(variances[3])};
    const int64_t n = bc.size(0);
    parallel_for(0, n, grain_when(n >= kParallelGrain, n), [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) kernels::encode_box(pb + 4 * i, pr + 4 * i, v, po + 4 * i);
    });
  });
}

void decode_boxes(const Tensor& deltas, const Tensor& reference, const std::array<double, 4>& variances,
                  double max_log_scale, Tensor& out) {
  dispatch_floating(deltas.dtype(), "decode_boxes", [&](auto tag) {
    using T = decltype(tag);
    const Tensor dc = deltas.contiguous(), rc = reference.contiguous();
    const T* pd = dc.data_ptr<T>();
    const T* pr = rc.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T v[4] = {T(variances[0]), T(variances[1]), T(variances[2]), T(variances[3])};
    const T limit = static_cast<T>(max_log_scale);
    const int64_t n = dc.size(0);
    parallel_for(0, n, grain_when(n >= kParallelGrain, n), [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) kernels::decode_box(pd + 4 * i, pr + 4 * i, v, limit, po + 4 * i);
    });
  });
}

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold, bool plus_one) {
  return dispatch_floating(boxes.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    const T* pb = boxes.data_ptr<T>();
    const T* ps = scores.data_ptr<T>();
    const int64_t n = boxes.size(0);
    // Score descending, equal scores by index (stable sort); NaN scores go last so the comparison
    // stays a strict weak order.
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [ps](int64_t i, int64_t j) {
      const bool nan_i = std::isnan(ps[i]), nan_j = std::isnan(ps[j]);
      if (nan_i != nan_j) return nan_j;
      return ps[i] > ps[j];
    });
    // The boxes and areas in visiting order: the inner loop then streams through memory.
    std::vector<T> sorted(4 * n);
    for (int64_t k = 0; k < n; ++k)
      for (int c = 0; c < 4; ++c) sorted[4 * k + c] = pb[4 * order[k] + c];
    const std::vector<T> area = areas_of(sorted.data(), n, plus_one);
    auto suppresses = [&](int64_t keep, int64_t j) {
      const T iou = kernels::box_iou_with_areas(sorted.data() + 4 * keep, area[keep], sorted.data() + 4 * j, area[j],
                                                plus_one);
      return kernels::iou_suppresses(iou, iou_threshold);
    };
    // Blocks of the visiting order: greedy inside a block on one thread, then the block's kept boxes
    // suppress every later box in one parallel sweep. Equivalent to box-by-box greedy (a box's fate
    // depends only on the kept boxes before it, all applied by the time its block is reached), with
    // one parallel region per block instead of one per kept box.
    constexpr int64_t kBlock = 256;
    std::vector<uint8_t> suppressed(n, 0);
    std::vector<int64_t> kept, block_kept;
    for (int64_t begin = 0; begin < n; begin += kBlock) {
      const int64_t end = std::min(n, begin + kBlock);
      block_kept.clear();
      for (int64_t i = begin; i < end; ++i) {
        if (suppressed[i]) continue;
        block_kept.push_back(i);
        kept.push_back(order[i]);
        for (int64_t j = i + 1; j < end; ++j)
          if (!suppressed[j] && suppresses(i, j)) suppressed[j] = 1;
      }
      // Each later box is written by one iteration only, so the threads never race.
      const bool worth = (n - end) * static_cast<int64_t>(block_kept.size()) >= kIouGrain;
      parallel_for(end, n, grain_when(worth, n - end), [&](int64_t first, int64_t last) {
        for (int64_t j = first; j < last; ++j) {
          if (suppressed[j]) continue;
          for (int64_t i : block_kept)
            if (suppresses(i, j)) {
              suppressed[j] = 1;
              break;
            }
        }
      });
    }
    return from_vector(kept);
  });
}

void match_anchors(const Tensor& anchors, const Tensor& gt, bool plus_one, AnchorMatch& result) {
  dispatch_floating(anchors.dtype(), "match_anchors", [&](auto tag) {
    using T = decltype(tag);
    const Tensor ac = anchors.contiguous(), gc = gt.contiguous();
    const T* pa = ac.data_ptr<T>();
    const T* pg = gc.data_ptr<T>();
    const int64_t num_anchors = ac.size(0), num_gt = gc.size(0);
    const std::vector<T> gt_area = areas_of(pg, num_gt, plus_one);
    T* anchor_max = result.anchor_max_iou.data_ptr<T>();
    int64_t* anchor_arg = result.anchor_argmax.data_ptr<int64_t>();
    T* gt_iou = result.gt_best_iou.data_ptr<T>();
    int64_t* gt_anchor = result.gt_best_anchor.data_ptr<int64_t>();
    // IoU ≥ 0, so −1 loses to any anchor; the index −1 marks "none yet".
    std::fill(gt_iou, gt_iou + num_gt, T(-1));
    std::fill(gt_anchor, gt_anchor + num_gt, int64_t{-1});

    // Each part (a run of anchors) keeps its own per-GT best, merged afterwards in part order: the
    // [A, G] matrix never exists and no two parts write the same per-GT slot.
    const int64_t parts =
        chunk_count(num_anchors, grain_when(num_anchors * num_gt >= kIouGrain, num_anchors), get_num_threads());
    std::vector<T> part_iou(parts * num_gt, T(-1));
    std::vector<int64_t> part_anchor(parts * num_gt, -1);
    parallel_chunks(parts, [&](int64_t part) {
      T* best_iou = part_iou.data() + part * num_gt;
      int64_t* best_anchor = part_anchor.data() + part * num_gt;
      const int64_t last = chunk_begin(0, num_anchors, parts, part + 1);
      for (int64_t a = chunk_begin(0, num_anchors, parts, part); a < last; ++a) {
        const T* box = pa + 4 * a;
        const T area = kernels::box_area(box, plus_one);
        T top = T(-1);
        int64_t top_gt = -1;
        for (int64_t g = 0; g < num_gt; ++g) {
          const T iou = kernels::box_iou_with_areas(box, area, pg + 4 * g, gt_area[g], plus_one);
          if (iou > top) {  // strict: the lowest GT index wins ties
            top = iou;
            top_gt = g;
          }
          if (iou > best_iou[g]) {  // anchors arrive in increasing order: the lowest index wins ties
            best_iou[g] = iou;
            best_anchor[g] = a;
          }
        }
        anchor_max[a] = top_gt >= 0 ? top : T(0);
        anchor_arg[a] = top_gt;
      }
    });
    // Parts in anchor order: a later part wins only with a strictly larger IoU.
    for (int64_t part = 0; part < parts; ++part)
      for (int64_t g = 0; g < num_gt; ++g) {
        const T iou = part_iou[part * num_gt + g];
        const int64_t anchor = part_anchor[part * num_gt + g];
        if (anchor >= 0 && (gt_anchor[g] < 0 || iou > gt_iou[g])) {
          gt_iou[g] = iou;
          gt_anchor[g] = anchor;
        }
      }
    for (int64_t g = 0; g < num_gt; ++g)
      if (gt_anchor[g] < 0) gt_iou[g] = T(0);  // only when every IoU was NaN
  });
}

}  // namespace isrn::cpu
