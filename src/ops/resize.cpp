// Front ends of the NCHW resize (bilinear, nearest) and its gradient.
#include "isrn/ops/resize.hpp"

#include "backend.hpp"
#include "isrn/autograd/node.hpp"

namespace isrn {

using autograd::record;

namespace {
const char* mode_name(ResizeMode mode) { return mode == ResizeMode::Bilinear ? "bilinear" : "nearest"; }
}  // namespace

Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, ResizeMode mode, bool align_corners) {
  ISRN_CHECK(x.defined(), "[resize] undefined input");
  ISRN_CHECK(x.dim() == 4, "[resize] expects a 4-D NCHW input, got shape ", shape_str(x.shape()));
  check_floating("resize", "input", x);
  ISRN_CHECK(out_h > 0 && out_w > 0, "[resize] output size must be positive, got ", out_h, "x", out_w);
  ISRN_CHECK(x.size(2) > 0 && x.size(3) > 0, "[resize] cannot resize an empty map: input shape ", shape_str(x.shape()));
  ISRN_CHECK(mode == ResizeMode::Bilinear || !align_corners, "[resize] align_corners applies to bilinear only, not ",
             mode_name(mode));
  Tensor y = empty({x.size(0), x.size(1), out_h, out_w}, TensorOptions(x.dtype()).device(x.device()));
  if (y.numel() > 0) ISRN_DISPATCH(x.device(), resize_forward, x.detach().contiguous(), mode, align_corners, y);
  const Shape x_shape = x.shape();
  return record(y, "resize", {x}, [x_shape, mode, align_corners](const Tensor& g) {
    return std::vector<Tensor>{resize_backward(g, x_shape, mode, align_corners)};
  });
}

Tensor resize_backward(const Tensor& grad_y, const Shape& x_shape, ResizeMode mode, bool align_corners) {
  const char* op = "resize_backward";
  ISRN_CHECK(grad_y.defined(), "[", op, "] undefined grad_y");
  ISRN_CHECK(grad_y.dim() == 4 && x_shape.size() == 4, "[", op, "] expects 4-D NCHW grad_y and x_shape, got ",
             shape_str(grad_y.shape()), " and ", shape_str(x_shape));
  check_floating(op, "grad_y", grad_y);
  ISRN_CHECK(grad_y.size(0) == x_shape[0] && grad_y.size(1) == x_shape[1], "[", op, "] grad_y of shape ",
             shape_str(grad_y.shape()), " does not come from an input of shape ", shape_str(x_shape));
  ISRN_CHECK(x_shape[2] > 0 && x_shape[3] > 0 && grad_y.size(2) > 0 && grad_y.size(3) > 0, "[", op,
             "] empty spatial size: grad_y ", shape_str(grad_y.shape()), ", x_shape ", shape_str(x_shape));
  ISRN_CHECK(mode == ResizeMode::Bilinear || !align_corners, "[", op, "] align_corners applies to bilinear only");
  Tensor grad_x = zeros(x_shape, TensorOptions(grad_y.dtype()).device(grad_y.device()));
  if (grad_y.numel() > 0)
    ISRN_DISPATCH(grad_y.device(), resize_backward, grad_y.detach().contiguous(), mode, align_corners, grad_x);
  // Linear in grad_y, with the forward resize as its adjoint.
  const int64_t out_h = grad_y.size(2), out_w = grad_y.size(3);
  return record(grad_x, op, {grad_y}, [out_h, out_w, mode, align_corners](const Tensor& g) {
    return std::vector<Tensor>{resize(g, out_h, out_w, mode, align_corners)};
  });
}

}  // namespace isrn
