#pragma once
// Layers of the detector: Conv2d, GroupNorm, ReLU, MaxPool2d, Sequential, and the two torchvision
// residual blocks. Parameter names follow torchvision (conv1, downsample.0, ...) with norm1/norm2 in
// place of bn1/bn2, since the norm here is GroupNorm or nothing.
#include <array>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "isrn/nn/init.hpp"
#include "isrn/nn/module.hpp"
#include "isrn/ops/conv.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/norm.hpp"
#include "isrn/ops/pool.hpp"

namespace isrn::nn {

// How a Conv2d draws its weight at construction: N(0, 0.01) for new layers (SPEC: initialization,
// the released SRN's choice), Kaiming-normal fan_out for backbone convs. Biases start at 0 either way.
enum class ConvInit { normal_001, kaiming_fan_out };

struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  std::array<int64_t, 2> kernel{1, 1};          // h, w
  std::array<int64_t, 2> stride{1, 1};          // h, w
  std::array<int64_t, 4> padding{0, 0, 0, 0};   // top, bottom, left, right
  std::array<int64_t, 2> dilation{1, 1};        // h, w
  bool bias = true;
  DType dtype = DType::Float32;
  ConvInit init = ConvInit::normal_001;

  // Square kernel, symmetric padding: the common case.
  static Conv2dOptions square(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
                              bool bias = true) {
    Conv2dOptions o;
    o.in_channels = in;
    o.out_channels = out;
    o.kernel = {kernel, kernel};
    o.stride = {stride, stride};
    o.padding = {padding, padding, padding, padding};
    o.bias = bias;
    return o;
  }
  Conv2dParams params() const {
    Conv2dParams p;
    p.stride = stride;
    p.padding = padding;
    p.dilation = dilation;
    return p;
  }
};

// The weight starts as options.init says and the bias as 0; a model that wants another bias (the
// classifier's prior) sets it afterwards.
class Conv2d : public Layer {
 public:
  explicit Conv2d(const Conv2dOptions& options, Generator& gen = default_generator()) : options_(options) {
    ISRN_CHECK(options.in_channels > 0 && options.out_channels > 0, "[conv2d module] channel counts must be "
               "positive, got in ", options.in_channels, ", out ", options.out_channels);
    ISRN_CHECK(options.kernel[0] > 0 && options.kernel[1] > 0, "[conv2d module] kernel sizes must be positive");
    weight = register_parameter(
        "weight",
        empty({options.out_channels, options.in_channels, options.kernel[0], options.kernel[1]}, options.dtype));
    reset_parameters(gen);
    if (options.bias) {
      bias = register_parameter("bias", zeros({options.out_channels}, options.dtype), ParamRole::bias);
    }
  }
  Tensor forward(const Tensor& x) override { return conv2d(x, weight, bias, options_.params()); }
  const Conv2dOptions& options() const { return options_; }
  void reset_parameters(Generator& gen) {
    if (options_.init == ConvInit::kaiming_fan_out)
      init::kaiming_normal_(weight, gen, init::FanMode::fan_out);
    else
      init::normal_(weight, gen, 0.0, 0.01);
    if (bias.defined()) init::constant_(bias, 0.0);
  }

  Tensor weight;
  Tensor bias;  // undefined without bias

 private:
  Conv2dOptions options_;
};

// GroupNorm with γ = 1, β = 0 at the start (SPEC: initialization).
class GroupNorm : public Layer {
 public:
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5, bool affine = true, DType dtype = DType::Float32)
      : groups_(groups), channels_(channels), eps_(eps) {
    ISRN_CHECK(groups > 0 && channels > 0 && channels % groups == 0, "[group_norm module] ", channels,
               " channels do not split into ", groups, " groups");
    if (affine) {
      weight = register_parameter("weight", ones({channels}, dtype), ParamRole::norm);
      bias = register_parameter("bias", zeros({channels}, dtype), ParamRole::norm);
    }
  }
  Tensor forward(const Tensor& x) override { return forward(x, false); }
  void reset_parameters() {
    if (!weight.defined()) return;
    init::constant_(weight, 1.0);
    init::constant_(bias, 0.0);
  }
  // fuse_relu: max(0, ·) in the same kernel pass.
  Tensor forward(const Tensor& x, bool fuse_relu) { return group_norm(x, groups_, weight, bias, eps_, fuse_relu); }
  int64_t groups() const { return groups_; }
  int64_t channels() const { return channels_; }
  double eps() const { return eps_; }

  Tensor weight;  // γ; undefined without affine
  Tensor bias;    // β

 private:
  int64_t groups_, channels_;
  double eps_;
};

class ReLU : public Layer {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class MaxPool2d : public Layer {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding = 0, bool ceil_mode = false) {
    params_.kernel = {kernel, kernel};
    params_.stride = {stride, stride};
    params_.padding = {padding, padding};
    params_.ceil_mode = ceil_mode;
  }
  explicit MaxPool2d(const Pool2dParams& params) : params_(params) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, params_); }
  const Pool2dParams& params() const { return params_; }

 private:
  Pool2dParams params_;
};

// Children named "0", "1", ... in order, as torchvision's nn.Sequential.
class Sequential : public Layer {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Layer>> layers) {
    for (auto& l : layers) push_back(std::move(l));
  }
  void push_back(std::shared_ptr<Layer> layer) {
    register_module(std::to_string(layers_.size()), layer);
    layers_.push_back(std::move(layer));
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (auto& l : layers_) y = l->forward(y);
    return y;
  }
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Layer>& operator[](size_t i) const { return layers_.at(i); }

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

// The normalization after a conv: GroupNorm with `groups` groups, or none at all.
struct NormConfig {
  enum class Kind { group, none };
  Kind kind = Kind::group;
  int64_t groups = 16;
  double eps = 1e-5;

  static NormConfig group(int64_t groups = 16) { return {Kind::group, groups, 1e-5}; }
  static NormConfig none() { return {Kind::none, 16, 1e-5}; }
  bool enabled() const { return kind == Kind::group; }
  // Thin configs (width_mult < 1) may have fewer channels than groups: the group count drops to the
  // largest divisor shared with the channel count, per-channel normalization at the extreme.
  int64_t groups_for(int64_t channels) const { return std::gcd(groups, channels); }
};

// The norm a NormConfig asks for after a conv of `channels` outputs: a GroupNorm, or null for none.
inline std::shared_ptr<GroupNorm> make_norm(const NormConfig& norm, int64_t channels, DType dtype = DType::Float32) {
  if (!norm.enabled()) return nullptr;
  return std::make_shared<GroupNorm>(norm.groups_for(channels), channels, norm.eps, true, dtype);
}

// Norm (or nothing, for a null norm) and then an optional ReLU, fused into the GroupNorm pass when
// there is one.
inline Tensor apply_norm(const std::shared_ptr<GroupNorm>& norm, const Tensor& x, bool with_relu) {
  if (norm) return norm->forward(x, with_relu);
  return with_relu ? relu(x) : x;
}

namespace detail {

// Without a norm there is nothing to supply a per-channel shift, so those convs carry a bias.
inline Conv2dOptions block_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, const NormConfig& norm,
                                DType dtype) {
  Conv2dOptions o = Conv2dOptions::square(in, out, kernel, stride, kernel / 2, !norm.enabled());
  o.dtype = dtype;
  o.init = ConvInit::kaiming_fan_out;
  return o;
}

}  // namespace detail

// Shared by both blocks: the projection shortcut conv1x1(stride) + norm when the shape changes.
class ResidualBlock : public Layer {
 public:
  // Every conv Kaiming-normal (fan_out) as torchvision's ResNet (their options say so), biases and
  // GN β 0, GN γ 1.
  void reset_parameters(Generator& gen) {
    for (auto& [name, m] : named_modules()) {
      if (auto* conv = dynamic_cast<Conv2d*>(m)) conv->reset_parameters(gen);
      if (auto* gn = dynamic_cast<GroupNorm*>(m)) gn->reset_parameters();
    }
  }

 protected:
  void make_downsample(int64_t in, int64_t out, int64_t stride, const NormConfig& norm, DType dtype, Generator& gen) {
    if (stride == 1 && in == out) return;
    auto seq = std::make_shared<Sequential>();
    seq->push_back(std::make_shared<Conv2d>(detail::block_conv(in, out, 1, stride, norm, dtype), gen));
    if (norm.enabled()) seq->push_back(make_norm(norm, out, dtype));
    downsample = register_module("downsample", seq);
  }
  Tensor shortcut(const Tensor& x) { return downsample ? downsample->forward(x) : x; }

 public:
  std::shared_ptr<Sequential> downsample;  // null for the identity shortcut
};

// 3x3 (stride s) → norm → ReLU → 3x3 → norm → (+ shortcut) → ReLU.
class BasicBlock : public ResidualBlock {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlock(int64_t in, int64_t planes, int64_t stride = 1, const NormConfig& norm = NormConfig::group(),
             DType dtype = DType::Float32, Generator& gen = default_generator()) {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(detail::block_conv(in, planes, 3, stride, norm, dtype), gen));
    norm1 = make_norm(norm, planes, dtype);
    if (norm1) register_module("norm1", norm1);
    conv2 = register_module("conv2", std::make_shared<Conv2d>(detail::block_conv(planes, planes, 3, 1, norm, dtype), gen));
    norm2 = make_norm(norm, planes, dtype);
    if (norm2) register_module("norm2", norm2);
    make_downsample(in, planes * expansion, stride, norm, dtype, gen);
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = apply_norm(norm1, conv1->forward(x), true);
    y = apply_norm(norm2, conv2->forward(y), false);
    return relu(add(y, shortcut(x)));
  }
  int64_t out_channels() const { return conv2->options().out_channels; }

  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<GroupNorm> norm1, norm2;  // null without a norm
};

// 1x1 → norm → ReLU → 3x3 (stride s) → norm → ReLU → 1x1 (×4) → norm → (+ shortcut) → ReLU.
class Bottleneck : public ResidualBlock {
 public:
  static constexpr int64_t expansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride = 1, const NormConfig& norm = NormConfig::group(),
             DType dtype = DType::Float32, Generator& gen = default_generator()) {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(detail::block_conv(in, planes, 1, 1, norm, dtype), gen));
    norm1 = make_norm(norm, planes, dtype);
    if (norm1) register_module("norm1", norm1);
    conv2 = register_module("conv2", std::make_shared<Conv2d>(detail::block_conv(planes, planes, 3, stride, norm, dtype), gen));
    norm2 = make_norm(norm, planes, dtype);
    if (norm2) register_module("norm2", norm2);
    conv3 = register_module("conv3",
                            std::make_shared<Conv2d>(detail::block_conv(planes, planes * expansion, 1, 1, norm, dtype), gen));
    norm3 = make_norm(norm, planes * expansion, dtype);
    if (norm3) register_module("norm3", norm3);
    make_downsample(in, planes * expansion, stride, norm, dtype, gen);
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = apply_norm(norm1, conv1->forward(x), true);
    y = apply_norm(norm2, conv2->forward(y), true);
    y = apply_norm(norm3, conv3->forward(y), false);
    return relu(add(y, shortcut(x)));
  }
  int64_t out_channels() const { return conv3->options().out_channels; }

  std::shared_ptr<Conv2d> conv1, conv2, conv3;
  std::shared_ptr<GroupNorm> norm1, norm2, norm3;
};

}  // namespace isrn::nn
