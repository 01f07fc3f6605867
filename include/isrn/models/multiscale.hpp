#pragma once
// The SRN multi-scale test (SPEC §9): the detector runs on an image at several scales and flipped,
// each run's boxes are filtered by size, and everything is merged by box voting.
#include <cstdint>
#include <vector>

#include "isrn/data/image.hpp"
#include "isrn/models/inference.hpp"
#include "isrn/models/isrn.hpp"

namespace isrn::models {

struct MultiScaleConfig {
  int64_t max_size = 2100;          // M: the largest run has about M² pixels (2100 gave the best SRN result)
  double shrink_min_side = 30;      // shrunken runs keep boxes with max(w + 1, h + 1) > this
  double enlarge_max_side = 100;    // enlarged runs keep boxes with min(w + 1, h + 1) < this
  double enlarge_log_base = 2.25;   // T = floor(log_base(r)) enlarged runs at 1.5^t, t = 1..T
  double enlarge_step = 1.5;
  double vote_iou = 0.5;            // box voting groups boxes with IoU ≥ this (+1 convention)
  int64_t keep = 750;
};

enum class SizeFilter { none, keep_large, keep_small };  // D_o / D_f, D_s, D_b

struct ScaleRun {
  double scale = 1.0;
  bool flip = false;
  SizeFilter filter = SizeFilter::none;
};

// The runs for an image_h × image_w image, in the order of SPEC §9: with r = M² / (h·w),
//   r > 1:  1, 1 flipped, 0.5 (keep_large), 1.5^t for t = 1..floor(log_2.25 r) and √r (keep_small);
//   r ≤ 1:  √r, √r flipped, 0.75·√r and 0.5·√r (keep_large).
std::vector<ScaleRun> multiscale_plan(int64_t image_h, int64_t image_w, const MultiScaleConfig& config = {});

// Box voting: repeatedly take the highest-scoring box and every remaining box with IoU ≥ vote_iou to
// it; a group of one is dropped (as in the released SRN code), a larger group becomes the
// score-weighted mean of its boxes with the group's highest score. Keeps the first `keep` results.
// boxes [N, 4], scores [N] on any device; the result is float32 on the CPU, in descending score order
// of the groups' leaders.
Detections box_voting(const Tensor& boxes, const Tensor& scores, double vote_iou = 0.5, int64_t keep = 750);

// One run: the image resized by `scale` (each side rounded to the nearest pixel; bilinear) and
// optionally mirrored, through the detector on `device`, with the boxes mapped back to the original
// image's coordinates (unmirrored with x' = W − x − 1). float32 on the CPU. With `times`, the time of each
// stage is added to it.
Detections detect_at_scale(Detector& detector, const data::Image& image, double scale, bool flip, Device device,
                           StageTimes* times = nullptr);

// The whole multi-scale test: every run of multiscale_plan, its size filter, box voting, and clipping to
// [0, W − 1] × [0, H − 1]. float32 on the CPU. With `times`, the time of each stage is added to it (the size
// filters, voting and clipping count as post-processing).
Detections detect_multiscale(Detector& detector, const data::Image& image, const MultiScaleConfig& config = {},
                             Device device = Device::cpu(), StageTimes* times = nullptr);

}  // namespace isrn::models
