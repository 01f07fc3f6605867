#pragma once
// Conv → optional GroupNorm → optional ReLU, the unit the FPN smoothing convs, the head's 3x3 convs
// and every RFE conv are built from. Children are "conv" and (with a norm) "norm", so a checkpoint
// names the same conv the same way whether or not the norm switch is on.
#include <memory>

#include "isrn/nn/layers.hpp"

namespace isrn::models {

class ConvNorm : public nn::Layer {
 public:
  ConvNorm(const nn::Conv2dOptions& conv_options, const nn::NormConfig& norm_config, bool with_relu,
           Generator& gen = default_generator())
      : with_relu_(with_relu) {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(conv_options, gen));
    norm = nn::make_norm(norm_config, conv_options.out_channels, conv_options.dtype);
    if (norm) register_module("norm", norm);
  }
  // The ReLU, when asked for, is fused into the GroupNorm pass.
  Tensor forward(const Tensor& x) override { return nn::apply_norm(norm, conv->forward(x), with_relu_); }
  bool with_relu() const { return with_relu_; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::GroupNorm> norm;  // null without a norm

 private:
  bool with_relu_;
};

namespace detail {

// A stride-1 conv with bias, N(0, 0.01) (SPEC initialization for layers added on top of the backbone).
inline nn::Conv2dOptions new_layer_conv(int64_t in, int64_t out, int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                        int64_t pad_w, DType dtype, int64_t stride = 1) {
  nn::Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel = {kernel_h, kernel_w};
  o.stride = {stride, stride};
  o.padding = {pad_h, pad_h, pad_w, pad_w};
  o.bias = true;
  o.dtype = dtype;
  o.init = nn::ConvInit::normal_001;
  return o;
}

}  // namespace detail

}  // namespace isrn::models
