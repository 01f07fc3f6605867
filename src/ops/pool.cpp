// Front ends of 2-D max pooling and its gradient.
#include "isrn/ops/pool.hpp"

#include <algorithm>

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

// The gradient for indices known to be valid (recorded by the forward pass).
Tensor pool_gradient(const Tensor& grad_y, const Tensor& indices, const Shape& x_shape, const Pool2dParams& params) {
  Tensor grad_x = zeros(x_shape, TensorOptions(grad_y.dtype()).device(grad_y.device()));
  if (grad_y.numel() > 0 && grad_x.numel() > 0)
    ISRN_DISPATCH(grad_y.device(), max_pool2d_backward, grad_y.detach().contiguous(), indices.contiguous(), params,
                  grad_x);
  return grad_x;
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
  values = record(values, "max_pool2d", {x}, [indices, x_shape, p](const Tensor& g) {
    return std::vector<Tensor>{pool_gradient(g, indices, x_shape, p)};
  });
  return {values, indices};
}

Tensor max_pool2d(const Tensor& x, const Pool2dParams& params) { return max_pool2d_with_indices(x, params).values; }

Tensor max_pool2d_backward(const Tensor& grad_y, const Tensor& indices, const Shape& x_shape,
                           const Pool2dParams& params) {
  const char* op = "max_pool2d_backward";
  ISRN_CHECK(grad_y.defined() && indices.defined(), "[", op, "] undefined grad_y or indices");
  ISRN_CHECK(grad_y.dim() == 4 && x_shape.size() == 4, "[", op, "] expects 4-D NCHW grad_y and x_shape, got ",
             shape_str(grad_y.shape()), " and ", shape_str(x_shape));
  check_floating(op, "grad_y", grad_y);
  check_dtype(op, "indices", indices, DType::Int64);
  check_same_device(op, grad_y.device(), {{"indices", &indices}});
  ISRN_CHECK(indices.shape() == grad_y.shape(), "[", op, "] indices have shape ", shape_str(indices.shape()),
             " but grad_y has ", shape_str(grad_y.shape()));
  const Shape y_shape{x_shape[0], x_shape[1], params.out_h(x_shape[2]), params.out_w(x_shape[3])};
  ISRN_CHECK(grad_y.shape() == y_shape, "[", op, "] grad_y of shape ", shape_str(grad_y.shape()),
             " does not come from an input of shape ", shape_str(x_shape), " pooled with ", params_str(params),
             " (that gives ", shape_str(y_shape), ")");
  // Indices from elsewhere are checked once here (on the host: this entry point is not the training
  // path); each must name a cell of its own window, the only cells the gradient may reach.
  const Tensor host_indices = indices.to(Device::cpu()).contiguous();
  const int64_t* at = host_indices.data_ptr<int64_t>();
  const int64_t in_h = x_shape[2], in_w = x_shape[3];
  for (int64_t i = 0; i < host_indices.numel(); ++i) {
    const int64_t ow = i % y_shape[3], oh = (i / y_shape[3]) % y_shape[2];
    const int64_t h0 = oh * params.stride[0] - params.padding[0], w0 = ow * params.stride[1] - params.padding[1];
    const int64_t h = at[i] / in_w, w = at[i] % in_w;
    ISRN_CHECK(at[i] >= 0 && at[i] < in_h * in_w && h >= h0 && h < h0 + params.kernel[0] && w >= w0 &&
                   w < w0 + params.kernel[1],
               "[", op, "] index ", at[i], " at output ", i, " lies outside its pooling window (rows ",
               std::max<int64_t>(h0, 0), "..", std::min(h0 + params.kernel[0], in_h) - 1, ", columns ",
               std::max<int64_t>(w0, 0), "..", std::min(w0 + params.kernel[1], in_w) - 1, " of a ", in_h, "x", in_w,
               " plane): indices must come from max_pool2d_with_indices with the same params");
  }
  return pool_gradient(grad_y, indices, x_shape, params);
}

}  // namespace isrn
