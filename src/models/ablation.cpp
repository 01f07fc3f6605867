#include "isrn/models/ablation.hpp"

#include <algorithm>
#include <cmath>

namespace isrn::models {

Tensor box_mask_targets(const std::vector<Tensor>& gt_boxes, int64_t height, int64_t width, int64_t stride,
                        TensorOptions options) {
  ISRN_CHECK(height > 0 && width > 0 && stride > 0, "[box_mask_targets] map ", height, "x", width, " at stride ",
             stride, " must be positive");
  const int64_t batch = static_cast<int64_t>(gt_boxes.size());
  std::vector<float> mask(static_cast<size_t>(batch * height * width), 0.0f);
  for (int64_t b = 0; b < batch; ++b) {
    const Tensor& g = gt_boxes[static_cast<size_t>(b)];
    ISRN_CHECK(g.defined() && g.dim() == 2 && g.size(1) == 4, "[box_mask_targets] boxes of image ", b,
               " must be [G, 4], got ", g.defined() ? shape_str(g.shape()) : std::string("undefined"));
    const std::vector<double> v = g.detach().to(Device::cpu()).to(DType::Float64).contiguous().to_vector<double>();
    float* plane = mask.data() + b * height * width;
    for (size_t i = 0; i + 3 < v.size(); i += 4) {
      // Cells whose centre (k + 0.5)·stride lies in [x1, x2]: k from ceil(x1/s − 0.5) to floor(x2/s − 0.5).
      const auto first = [&](double lo, int64_t n) {
        return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(lo / stride - 0.5)), 0, n);
      };
      const auto last = [&](double hi, int64_t n) {
        return std::clamp<int64_t>(static_cast<int64_t>(std::floor(hi / stride - 0.5)), -1, n - 1);
      };
      const int64_t x0 = first(v[i], width), x1 = last(v[i + 2], width);
      const int64_t y0 = first(v[i + 1], height), y1 = last(v[i + 3], height);
      for (int64_t y = y0; y <= y1; ++y)
        for (int64_t x = x0; x <= x1; ++x) plane[y * width + x] = 1.0f;
    }
  }
  return from_vector(mask, {batch, 1, height, width}).to(options.dtype_).to(options.device_);
}

}  // namespace isrn::models
