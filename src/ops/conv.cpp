// Front ends of the 2-D convolution and its two gradient convolutions.
//
// The three ops are each other's adjoints, so each one's gradient is written with the other two:
//   y  = conv2d(x, w):                dx = backward_input(dy, w),  dw = backward_weight(dy, x)
//   gx = backward_input(gy, w):       d gy = conv2d(G, w),         dw = backward_weight(gy, G)
//   gw = backward_weight(gy, x):      d gy = conv2d(x, G),         dx = backward_input(gy, G)
#include "isrn/ops/conv.hpp"

#include "backend.hpp"
#include "isrn/autograd/autocast.hpp"
#include "isrn/autograd/node.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn {

using autograd::record;

namespace {

std::string params_str(const Conv2dParams& p) {
  return detail::concat("stride (", p.stride[0], ", ", p.stride[1], "), padding (top ", p.padding[0], ", bottom ",
                        p.padding[1], ", left ", p.padding[2], ", right ", p.padding[3], "), dilation (",
                        p.dilation[0], ", ", p.dilation[1], ")");
}

void check_params(const char* op, const Conv2dParams& p) {
  ISRN_CHECK(p.stride[0] >= 1 && p.stride[1] >= 1, "[", op, "] stride must be at least 1, got ", params_str(p));
  ISRN_CHECK(p.dilation[0] >= 1 && p.dilation[1] >= 1, "[", op, "] dilation must be at least 1, got ",
             params_str(p));
  for (int64_t pad : p.padding) ISRN_CHECK(pad >= 0, "[", op, "] padding must not be negative, got ", params_str(p));
}

void check_weight(const char* op, const Tensor& weight) {
  ISRN_CHECK(weight.defined(), "[", op, "] undefined weight");
  ISRN_CHECK(weight.dim() == 4, "[", op, "] expects a 4-D weight [C_out, C_in, KH, KW], got shape ",
             shape_str(weight.shape()));
  ISRN_CHECK(weight.size(0) > 0 && weight.size(1) > 0 && weight.size(2) > 0 && weight.size(3) > 0, "[", op,
             "] weight has an empty dimension: shape ", shape_str(weight.shape()));
  check_floating(op, "weight", weight, /*allow_bfloat16=*/true);
}

// The output size for input `x_shape` and a weight of `w_shape`; checks the channels and that it is positive.
Shape output_shape(const char* op, const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
  ISRN_CHECK(x_shape[1] == w_shape[1], "[", op, "] input has ", x_shape[1], " channels (shape ", shape_str(x_shape),
             ") but the weight expects ", w_shape[1], " (weight shape ", shape_str(w_shape), ")");
  ISRN_CHECK(x_shape[2] > 0 && x_shape[3] > 0, "[", op, "] input has an empty spatial size: shape ",
             shape_str(x_shape));
  const int64_t oh = p.out_h(x_shape[2], w_shape[2]), ow = p.out_w(x_shape[3], w_shape[3]);
  const int64_t span_h = x_shape[2] + p.padding[0] + p.padding[1] - p.dilation[0] * (w_shape[2] - 1);
  const int64_t span_w = x_shape[3] + p.padding[2] + p.padding[3] - p.dilation[1] * (w_shape[3] - 1);
  ISRN_CHECK(span_h > 0 && span_w > 0 && oh > 0 && ow > 0, "[", op, "] kernel ", w_shape[2], "x", w_shape[3],
             " does not fit the padded input: input shape ", shape_str(x_shape), ", ", params_str(p));
  return {x_shape[0], w_shape[0], oh, ow};
}

// The bias gradient Σ_{n,h,w} g of a contiguous NCHW gradient: each plane's sum read in place as a row,
// then the sum over the batch. (sum(g, {0, 2, 3}) would first make a permuted copy of all of g.)
Tensor bias_gradient(const Tensor& g) {
  const int64_t n = g.size(0), c = g.size(1);
  const Tensor planes = sum(g.view({n, c, g.size(2) * g.size(3)}), {2});  // [N, C]
  return n == 1 ? planes.view({c}) : sum(planes, {0});
}

// y + bias over the channels, in float32: the bias of a bfloat16 convolution is never rounded to bfloat16.
Tensor add_channel_bias(const Tensor& y, const Tensor& bias) {
  const Tensor b = bias.to(DType::Float32).view({1, bias.size(0), 1, 1});
  return add(y.to(DType::Float32), b);
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params) {
  ISRN_CHECK(x.defined(), "[conv2d] undefined input");
  ISRN_CHECK(x.dim() == 4, "[conv2d] expects a 4-D NCHW input, got shape ", shape_str(x.shape()));
  check_weight("conv2d", weight);
  check_floating("conv2d", "input", x, /*allow_bfloat16=*/true);
  ISRN_CHECK(weight.dtype() == x.dtype(), "[conv2d] input is ", x.dtype(), " but weight is ", weight.dtype());
  check_same_device("conv2d", x.device(), {{"weight", &weight}, {"bias", &bias}});
  if (bias.defined()) {
    ISRN_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "[conv2d] bias must have shape [",
               weight.size(0), "] (C_out of weight ", shape_str(weight.shape()), "), got ", shape_str(bias.shape()));
    ISRN_CHECK(bias.dtype() == x.dtype(), "[conv2d] input is ", x.dtype(), " but bias is ", bias.dtype());
  }
  if (Autocast::compute_dtype() == DType::BFloat16 && x.dtype() == DType::Float32) {
    // Mixed precision: bfloat16 operands, float32 result (isrn/autograd/autocast.hpp).
    Tensor y = conv2d(x.to(DType::BFloat16), weight.to(DType::BFloat16), Tensor(), params).to(DType::Float32);
    return bias.defined() ? add_channel_bias(y, bias) : y;
  }
  check_params("conv2d", params);
  const Shape y_shape = output_shape("conv2d", x.shape(), weight.shape(), params);
  if (x.dtype() == DType::BFloat16 && bias.defined()) {
    // The kernels take no bfloat16 bias: add it in float32 and round the sum once.
    return add_channel_bias(conv2d(x, weight, Tensor(), params), bias).to(DType::BFloat16);
  }

  const Tensor xs = x.detach().contiguous(), ws = weight.detach().contiguous();
  const Tensor bs = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = empty(y_shape, TensorOptions(x.dtype()).device(x.device()));
  if (y.numel() > 0) ISRN_DISPATCH(x.device(), conv2d_forward, xs, ws, bs, params, y);
  if (!autograd::needs_grad({&x, &weight, &bias})) return y;

  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  // Each gradient needs only the other operand: save no more than that.
  const Tensor saved_x = gw ? xs : Tensor(), saved_w = gx ? ws : Tensor();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  return record(y, "conv2d", {x, weight, bias}, [=](const Tensor& g) {
    const Tensor gc = g.contiguous();
    return std::vector<Tensor>{gx ? conv2d_backward_input(gc, saved_w, x_shape, params) : Tensor(),
                               gw ? conv2d_backward_weight(gc, saved_x, w_shape, params) : Tensor(),
                               gb ? bias_gradient(gc) : Tensor()};
  });
}

Tensor conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const Shape& x_shape,
                             const Conv2dParams& params) {
  const char* op = "conv2d_backward_input";
  ISRN_CHECK(grad_y.defined(), "[", op, "] undefined grad_y");
  ISRN_CHECK(grad_y.dim() == 4, "[", op, "] expects a 4-D NCHW grad_y, got shape ", shape_str(grad_y.shape()));
  check_weight(op, weight);
  check_floating(op, "grad_y", grad_y, /*allow_bfloat16=*/true);
  ISRN_CHECK(weight.dtype() == grad_y.dtype(), "[", op, "] grad_y is ", grad_y.dtype(), " but weight is ",
             weight.dtype());
  check_same_device(op, grad_y.device(), {{"weight", &weight}});
  ISRN_CHECK(x_shape.size() == 4 && x_shape[0] >= 0, "[", op, "] x_shape must be 4-D NCHW, got ",
             shape_str(x_shape));
  check_params(op, params);
  const Shape y_shape = output_shape(op, x_shape, weight.shape(), params);
  ISRN_CHECK(grad_y.shape() == y_shape, "[", op, "] grad_y has shape ", shape_str(grad_y.shape()), ", but input ",
             shape_str(x_shape), " and weight ", shape_str(weight.shape()), " give an output of ", shape_str(y_shape));

  const Tensor gys = grad_y.detach().contiguous(), ws = weight.detach().contiguous();
  Tensor grad_x = empty(x_shape, TensorOptions(grad_y.dtype()).device(grad_y.device()));
  if (grad_x.numel() > 0) ISRN_DISPATCH(grad_y.device(), conv2d_backward_input, gys, ws, params, grad_x);
  if (!autograd::needs_grad({&grad_y, &weight})) return grad_x;
  const bool g_gy = grad_y.requires_grad(), g_w = weight.requires_grad();
  const Shape w_shape = weight.shape();
  return record(grad_x, op, {grad_y, weight}, [=](const Tensor& g) {
    return std::vector<Tensor>{g_gy ? conv2d(g, ws, Tensor(), params) : Tensor(),
                               g_w ? conv2d_backward_weight(gys, g, w_shape, params) : Tensor()};
  });
}

Tensor conv2d_backward_weight(const Tensor& grad_y, const Tensor& x, const Shape& w_shape,
                              const Conv2dParams& params) {
  const char* op = "conv2d_backward_weight";
  ISRN_CHECK(grad_y.defined() && x.defined(), "[", op, "] undefined grad_y or input");
  ISRN_CHECK(grad_y.dim() == 4, "[", op, "] expects a 4-D NCHW grad_y, got shape ", shape_str(grad_y.shape()));
  ISRN_CHECK(x.dim() == 4, "[", op, "] expects a 4-D NCHW input, got shape ", shape_str(x.shape()));
  check_floating(op, "grad_y", grad_y, /*allow_bfloat16=*/true);
  ISRN_CHECK(x.dtype() == grad_y.dtype(), "[", op, "] grad_y is ", grad_y.dtype(), " but input is ", x.dtype());
  check_same_device(op, grad_y.device(), {{"input", &x}});
  ISRN_CHECK(w_shape.size() == 4 && w_shape[0] > 0 && w_shape[1] > 0 && w_shape[2] > 0 && w_shape[3] > 0, "[", op,
             "] w_shape must be 4-D [C_out, C_in, KH, KW] with no empty dimension, got ", shape_str(w_shape));
  check_params(op, params);
  const Shape y_shape = output_shape(op, x.shape(), w_shape, params);
  ISRN_CHECK(grad_y.shape() == y_shape, "[", op, "] grad_y has shape ", shape_str(grad_y.shape()), ", but input ",
             shape_str(x.shape()), " and weight ", shape_str(w_shape), " give an output of ", shape_str(y_shape));

  const Tensor gys = grad_y.detach().contiguous(), xs = x.detach().contiguous();
  Tensor grad_w = empty(w_shape, TensorOptions(grad_y.dtype()).device(grad_y.device()));
  if (grad_y.numel() == 0)
    grad_w.zero_();  // an empty batch contributes nothing
  else
    ISRN_DISPATCH(grad_y.device(), conv2d_backward_weight, gys, xs, params, grad_w);
  if (!autograd::needs_grad({&grad_y, &x})) return grad_w;
  const bool g_gy = grad_y.requires_grad(), g_x = x.requires_grad();
  const Shape x_shape = x.shape();
  return record(grad_w, op, {grad_y, x}, [=](const Tensor& g) {
    return std::vector<Tensor>{g_gy ? conv2d(xs, g, Tensor(), params) : Tensor(),
                               g_x ? conv2d_backward_input(gys, g, x_shape, params) : Tensor()};
  });
}

}  // namespace isrn
