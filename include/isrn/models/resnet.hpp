#pragma once
// The detector's backbone (SPEC §2): ResNet-18/34/50 in torchvision layout (stride on the 3x3),
// with the ISRN stem or the original one, GroupNorm(16) or no norm, a width multiplier for small
// configs, and the two extra SRN levels C6, C7.
//
// ISRN stem:   conv 7x7 s1 p3 16ch → norm → ReLU → BasicBlock(16, s1) → BasicBlock(32, s2) → maxpool 3/2/1
// ResNet stem: conv 7x7 s2 p3 64ch → norm → ReLU → maxpool 3/2/1
// Either way layer1 (C2) is at stride 4, and every stride-2 step halves with ceil (C_l = ceil(H/2^l)).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "isrn/autograd/checkpoint.hpp"
#include "isrn/nn/init.hpp"
#include "isrn/nn/layers.hpp"
#include "isrn/nn/module.hpp"

namespace isrn::models {

enum class Stem { isrn, resnet };

struct ResNetConfig {
  int depth = 50;                             // 18, 34 (BasicBlock) or 50 (Bottleneck)
  Stem stem = Stem::isrn;
  nn::NormConfig norm = nn::NormConfig::group(16);
  double width_mult = 1.0;                    // scales every channel count (at least 1 channel)
  bool extra_levels = true;                   // C6, C7
  // Training-time memory: the stem and each stage keep no activations and are recomputed in the backward
  // pass (autograd::checkpoint); weights and results are unchanged. Not part of a checkpoint's config.
  bool activation_checkpointing = false;
  DType dtype = DType::Float32;
};

// round(channels · width_mult), at least 1.
inline int64_t scaled_channels(int64_t channels, double width_mult) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(static_cast<double>(channels) * width_mult)));
}

class ResNet : public nn::Module {
 public:
  explicit ResNet(const ResNetConfig& config, Generator& gen = default_generator()) : config_(config) {
    ISRN_CHECK(config.depth == 18 || config.depth == 34 || config.depth == 50, "[resnet] depth must be 18, 34 "
               "or 50, got ", config.depth);
    ISRN_CHECK(config.width_mult > 0.0 && std::isfinite(config.width_mult), "[resnet] width_mult must be "
               "positive, got ", config.width_mult);
    const auto ch = [&](int64_t c) { return scaled_channels(c, config.width_mult); };
    const bool bottleneck = config.depth == 50;
    const std::vector<int64_t> blocks = config.depth == 18 ? std::vector<int64_t>{2, 2, 2, 2}
                                                           : std::vector<int64_t>{3, 4, 6, 3};
    const nn::NormConfig& norm = config.norm;
    const DType dt = config.dtype;

    const bool isrn_stem = config.stem == Stem::isrn;
    const int64_t stem_channels = ch(isrn_stem ? 16 : 64);
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(
                                         stem_conv(3, stem_channels, isrn_stem ? 1 : 2, norm, dt), gen));
    norm1 = nn::make_norm(norm, stem_channels, dt);
    if (norm1) register_module("norm1", norm1);
    int64_t in = stem_channels;
    if (isrn_stem) {
      stem_block1 = register_module("stem_block1", std::make_shared<nn::BasicBlock>(in, ch(16), 1, norm, dt, gen));
      stem_block2 = register_module("stem_block2", std::make_shared<nn::BasicBlock>(ch(16), ch(32), 2, norm, dt, gen));
      in = ch(32);
    }
    maxpool = std::make_shared<nn::MaxPool2d>(3, 2, 1);

    const int64_t planes[4] = {64, 128, 256, 512};
    for (int s = 0; s < 4; ++s) {
      auto layer = std::make_shared<nn::Sequential>();
      for (int64_t b = 0; b < blocks[s]; ++b) {
        const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        if (bottleneck) {
          auto block = std::make_shared<nn::Bottleneck>(in, ch(planes[s]), stride, norm, dt, gen);
          in = block->out_channels();
          layer->push_back(block);
        } else {
          auto block = std::make_shared<nn::BasicBlock>(in, ch(planes[s]), stride, norm, dt, gen);
          in = block->out_channels();
          layer->push_back(block);
        }
      }
      layers[s] = register_module("layer" + std::to_string(s + 1), layer);
      out_channels_.push_back(in);
    }
    if (config.extra_levels) {
      // SPEC §2.2: C6 = conv3x3 s2 (C5 → C5/2), C7 = conv3x3 s2 (C6 → C6/4), bias, no norm or ReLU.
      // ResNet-50 at width 1 gives 2048 → 1024 → 256 as the released SRN; thinner backbones keep the ratios.
      const int64_t c6 = std::max<int64_t>(1, in / 2), c7 = std::max<int64_t>(1, c6 / 4);
      auto opts6 = nn::Conv2dOptions::square(in, c6, 3, 2, 1, true);
      auto opts7 = nn::Conv2dOptions::square(c6, c7, 3, 2, 1, true);
      opts6.dtype = opts7.dtype = dt;
      conv_c6 = register_module("c6", std::make_shared<nn::Conv2d>(opts6, gen));
      conv_c7 = register_module("c7", std::make_shared<nn::Conv2d>(opts7, gen));
      out_channels_.push_back(c6);
      out_channels_.push_back(c7);
    }
  }

  // SPEC initialization: Kaiming-normal (fan_out) for the backbone convs, GN γ = 1, β = 0, biases 0.
  // C6 and C7 are layers SRN added on top of the ImageNet backbone, so they get the N(0, 0.01) of new
  // layers. Construction already draws exactly this; calling it again redraws from `gen`.
  void reset_parameters(Generator& gen) {
    for (auto& [name, m] : named_modules()) {
      if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) conv->reset_parameters(gen);
      if (auto* gn = dynamic_cast<nn::GroupNorm*>(m)) gn->reset_parameters();
    }
  }

  // C2, C3, C4, C5 (strides 4, 8, 16, 32) and, with extra_levels, C6, C7 (64, 128).
  std::vector<Tensor> forward(const Tensor& x) {
    ISRN_CHECK(x.dim() == 4 && x.size(1) == 3, "[resnet] expects an NCHW image batch with 3 channels, got shape ",
               shape_str(x.shape()));
    const bool recompute = config_.activation_checkpointing && is_training();
    const auto stem = [this](const Tensor& t) {
      Tensor z = nn::apply_norm(norm1, conv1->forward(t), true);
      if (stem_block1) z = stem_block2->forward(stem_block1->forward(z));
      return maxpool->forward(z);
    };
    Tensor y = recompute ? autograd::checkpoint(stem, x, stem_parameters()) : stem(x);
    std::vector<Tensor> out;
    for (auto& layer : layers) {
      const auto stage = [&layer](const Tensor& t) { return layer->forward(t); };
      y = recompute ? autograd::checkpoint(stage, y, layer->parameters()) : stage(y);
      out.push_back(y);
    }
    if (conv_c6) {
      out.push_back(conv_c6->forward(out.back()));
      out.push_back(conv_c7->forward(out.back()));
    }
    return out;
  }

  // The parameters of everything before layer1.
  std::vector<Tensor> stem_parameters() const {
    std::vector<Tensor> p = conv1->parameters();
    for (const nn::Module* m : {static_cast<const nn::Module*>(norm1.get()), static_cast<const nn::Module*>(stem_block1.get()),
                                static_cast<const nn::Module*>(stem_block2.get())})
      if (m) {
        const std::vector<Tensor> more = m->parameters();
        p.insert(p.end(), more.begin(), more.end());
      }
    return p;
  }

  // Channels of each returned map, in forward's order.
  const std::vector<int64_t>& out_channels() const { return out_channels_; }
  const ResNetConfig& config() const { return config_; }

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::GroupNorm> norm1;                      // null without a norm
  std::shared_ptr<nn::BasicBlock> stem_block1, stem_block2;  // ISRN stem only
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::shared_ptr<nn::Sequential> layers[4];
  std::shared_ptr<nn::Conv2d> conv_c6, conv_c7;              // null without extra levels

 private:
  static nn::Conv2dOptions stem_conv(int64_t in, int64_t out, int64_t stride, const nn::NormConfig& norm, DType dt) {
    auto o = nn::Conv2dOptions::square(in, out, 7, stride, 3, !norm.enabled());
    o.dtype = dt;
    o.init = nn::ConvInit::kaiming_fan_out;
    return o;
  }
  ResNetConfig config_;
  std::vector<int64_t> out_channels_;
};

}  // namespace isrn::models
