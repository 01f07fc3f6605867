#pragma once
// What the data pipeline passes around: an image with its face boxes.
#include <string>
#include <vector>

#include "isrn/data/image.hpp"
#include "isrn/tensor.hpp"

namespace isrn::data {

// Corners in pixels, x2 = x + w as the WIDER evaluation reads an `x y w h` line.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  bool operator==(const Box&) const = default;
};

struct Sample {
  Image image;
  std::vector<Box> boxes;
  std::string id;  // "<event>/<image name without extension>", as the WIDER prediction layout names files
};

// float32 [G, 4] on the CPU (G may be 0): the gt_boxes form Detector::loss takes.
Tensor boxes_to_tensor(const std::vector<Box>& boxes);
// The inverse: [G, 4] corners on any device and of any floating dtype.
std::vector<Box> boxes_from_tensor(const Tensor& boxes);

}  // namespace isrn::data
