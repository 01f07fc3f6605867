// Front ends of 2-D max pooling and its gradient.
#include "isrn/ops/pool.hpp"

#include "backend.hpp"
#include "isrn/autograd/node.hpp"

namespace isrn {

using autograd::record;

namespace {

// PyTorch's pooling_output_shape (dilation 1): in ceil mode the size rounds up, but a last window that
// would start inside the right padding is dropped.
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t span = in + 2 * pad - kernel;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

std::string params_str(const Pool2dParams& p) {
  return detail::concat("kernel (", p.kernel[0], ", ", p.kernel[1], "), stride (", p.stride[0], ", ", p.stride[1],
                        "), padding (", p.padding[0], ", ", p.padding[1], ")", p.ceil_mode ? ", ceil_mode" : "");
}

}  // namespace

int64_t Pool2dParams::out_h(int64_t h) const { return pooled_size(h, kernel[0], stride[0], padding[0], ceil_mode); }
int64_t Pool2dParams::out_w(int64_t w) const { return pooled_size(w, kernel[1], stride[1], padding[1], ceil_mode); }

PoolResult max_pool2d_with_indices(const Tensor& x, const Pool2dParams& params) {
  ISRN_CHECK(x.defined(), "[max_pool2d] undefined input");
  ISRN_CHECK(x.dim() == 4, "[max_pool2d] expects a 4-D NCHW input, got shape ", shape_str(x.shape()));
  check_floating("max_pool2d", "input", x);
  const Pool2dParams& p = params;
  ISRN_CHECK(p.kernel[0] >= 1 && p.kernel[1] >= 1 && p.stride[0] >= 1 && p.stride[1] >= 1, "[max_pool2d] kernel and stride must be at least 1, got ",
             params_str(p));
  ISRN_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0, "[max_pool2d] padding must not be negative, got ", params_str(p));
  // As PyTorch: with at most half a kernel of padding every window holds at least one input element.
  ISRN_CHECK(2 * p.padding[0] <= p.kernel[0] && 2 * p.padding[1] <= p.kernel[1],
             "[max_pool2d] padding must be at most half the kernel size, got ", params_str(p));
  const int64_t oh = p.out_h(x.size(2)), ow = p.out_w(x.size(3));
  ISRN_CHECK(oh > 0 && ow > 0, "[max_pool2d] input of shape ", shape_str(x.shape()), " is too small for ",
             params_str(p), " (output would be ", oh, "x", ow, ")");

  const Tensor xs = x.detach().contiguous();
  const Shape y_shape{x.size(0), x.size(1), oh, ow};
  Tensor values = empty(y_shape, TensorOptions(x.dtype()).device(x.device()));
  Tensor indices = empty(y_shape, TensorOptions(DType::Int64).device(x.device()));
  if (values.numel() > 0) ISRN_DISPATCH(x.device(), max_pool2d_forward, xs, p, values, indices);
  const Shape x_shape = x.shape();
  values = record(values, "max_pool2d", {x}, [indices, x_shape](const Tensor& g) {
    return std::vector<Tensor>{max_pool2d_backward(g, indices, x_shape)};
  });
  return {values, indices};
}

Tensor max_pool2d(const Tensor& x, const Pool2dParams& params) { return max_pool2d_with_indices(x, params).values; }

Tensor max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const Shape& x_shape) {
  const char* op = "max_pool2d_backward";
  ISRN_CHECK(grad_y.defined() && indices.defined(), "[", op, "] undefined grad_y or indices");
  ISRN_CHECK(grad_y.dim() == 4 && x_shape.size() == 4, "[", op, "] expects 4-D NCHW grad_y and x_shape, got ",
             shape_str(grad_y.shape()), " and ", shape_str(x_shape));
  check_floating(op, "grad_y", grad_y);
  check_dtype(op, "indices", indices, DType::Int64);
  check_same_device(op, grad_y.device(), {{"indices", &indices}});
  ISRN_CHECK(indices.shape() == grad_y.shape(), "[", op, "] indices have shape ", shape_str(indices.shape()),
             " but grad_y has ", shape_str(grad_y.shape()));
  ISRN_CHECK(grad_y.size(0) == x_shape[0] && grad_y.size(1) == x_shape[1], "[", op, "] grad_y of shape ",
             shape_str(grad_y.shape()), " does not come from an input of shape ", shape_str(x_shape));
  Tensor grad_x = zeros(x_shape, TensorOptions(grad_y.dtype()).device(grad_y.device()));
  if (grad_y.numel() > 0 && grad_x.numel() > 0)
    ISRN_DISPATCH(grad_y.device(), max_pool2d_backward, grad_y.detach().contiguous(), indices.contiguous(), grad_x);
  return grad_x;
}

}  // namespace isrn
