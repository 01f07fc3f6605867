#pragma once
// Anchors of the SRN/ISRN detector (SPEC §5): A anchors per feature-map location on every pyramid
// level, flattened per level as (y·W + x)·A + a and concatenated level by level.
#include <cmath>
#include <cstdint>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::models {

struct AnchorConfig {
  // One pyramid level per stride; the level index l is log2(stride) (stride 4 is level 2). Every stride
  // must be a power of two, since the map size is the image size halved (rounding up) l times.
  std::vector<int64_t> strides{4, 8, 16, 32, 64, 128};
  // Anchor sizes relative to the stride; index a of an anchor at a location is its scale's index here.
  std::vector<double> scales{2.0, 2.0 * std::sqrt(2.0)};
  double ratio = 1.25;  // height / width: the anchors are taller than wide
  // true: the Detectron generator of the released SRN code (base window rounded with round-half-even,
  // centre (S−1)/2 + x·S, corners centre ± (size−1)/2, the "+1" pixel convention).
  // false: the exact ideal shapes w = k·S/√ratio, h = k·S·√ratio in continuous coordinates,
  // centre (x + 0.5)·S, corners centre ± size/2.
  bool plus_one_corners = true;

  int64_t anchors_per_location() const { return static_cast<int64_t>(scales.size()); }
};

struct MapSize {
  int64_t height = 0, width = 0;
  bool operator==(const MapSize&) const = default;
};

// A set of anchors (or boxes in anchor order) with the level each contiguous run belongs to. Built by
// generate_anchors, or by hand for small cases (levels and counts must then describe `boxes`).
struct AnchorSet {
  Tensor boxes;                 // [N, 4] (x1, y1, x2, y2): all levels concatenated
  std::vector<int> levels;      // level index l of each run
  std::vector<int64_t> counts;  // anchors in each run; they sum to N
  std::vector<MapSize> map_sizes;  // per run, when generated from a feature map (empty when hand-made)

  int64_t size() const { return boxes.defined() ? boxes.size(0) : 0; }
  // The boxes of run i (a view into `boxes`).
  Tensor level_boxes(size_t i) const;
  // [N] mask, 1 where the anchor's level is one of `selected`, else 0, in the boxes' dtype and device.
  Tensor level_mask(const std::vector<int>& selected) const;
};

// The level index of a stride (log2); throws isrn::Error unless the stride is a power of two ≥ 1.
int level_of_stride(int64_t stride);
// Feature-map size of every level for an image_h × image_w input: the size halved with ceil once per
// stride-2 op, so level l has ceil(… ceil(H/2) …/2) (l halvings), SPEC §2.1.
std::vector<MapSize> feature_map_sizes(int64_t image_h, int64_t image_w, const AnchorConfig& config);
// The A anchors of one location at the origin cell of a level with this stride, [A, 4] float64 on the
// CPU (a = scale index).
Tensor cell_anchors(int64_t stride, const AnchorConfig& config);
// All anchors of an image_h × image_w input on the given device (float32 unless told otherwise).
AnchorSet generate_anchors(int64_t image_h, int64_t image_w, const AnchorConfig& config,
                           TensorOptions options = {});

}  // namespace isrn::models
