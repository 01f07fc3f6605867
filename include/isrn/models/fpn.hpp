#pragma once
// The two feature sets of SPEC §3: first-step features F1_2..F1_7 (a 1x1 conv on each backbone
// map) and the FPN's second-step features P2..P7.
//
//   L_l = 1x1(C_l) for l = 2..5
//   S5 = L5,  S_l = up(S_{l+1} → size(L_l)) + L_l   (merges on the unsmoothed sums)
//   P_l = 3x3(S_l) [→ GN]                            (no ReLU)
//   P6 = 3x3 s2 (L5, or P5 with p6_from = p5),  P7 = 3x3 s2 (P6)   (no ReLU, no norm)
#include <memory>
#include <string>
#include <vector>

#include "isrn/models/conv_norm.hpp"
#include "isrn/models/resnet.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/resize.hpp"

namespace isrn::models {

enum class P6Source { lateral, p5 };

// The channel count of every pyramid feature: 256 scaled by the width multiplier.
inline int64_t feature_channels(double width_mult) { return scaled_channels(256, width_mult); }

struct FPNConfig {
  double width_mult = 1.0;                          // feature channels = round(256 · width_mult)
  ResizeMode upsample = ResizeMode::Bilinear;       // bilinear uses align_corners = true (SPEC §3.1)
  P6Source p6_from = P6Source::lateral;             // the released SRN's choice
  nn::NormConfig norm = nn::NormConfig::group(16);  // after the smoothing convs only
  DType dtype = DType::Float32;

  int64_t channels() const { return feature_channels(width_mult); }
};

// Resizes x to the spatial size of `like`: the top-down path's `up`.
inline Tensor upsample_like(const Tensor& x, const Tensor& like, ResizeMode mode) {
  return resize(x, like.size(2), like.size(3), mode, mode == ResizeMode::Bilinear);
}

namespace detail {

inline void check_levels(const char* op, const std::vector<Tensor>& maps, const std::vector<int64_t>& channels) {
  ISRN_CHECK(maps.size() == channels.size(), "[", op, "] expects ", channels.size(), " feature maps, got ",
             maps.size());
  for (size_t i = 0; i < maps.size(); ++i) {
    ISRN_CHECK(maps[i].dim() == 4 && maps[i].size(1) == channels[i], "[", op, "] level ", i + 2, " must be NCHW with ",
               channels[i], " channels, got shape ", shape_str(maps[i].shape()));
  }
}

}  // namespace detail

// F1_l = 1x1 conv with bias on C_l, no ReLU; one conv per backbone level ("conv2" for C2, ...).
class FirstStepFeatures : public nn::Module {
 public:
  FirstStepFeatures(const std::vector<int64_t>& in_channels, const FPNConfig& config,
                    Generator& gen = default_generator())
      : in_channels_(in_channels) {
    ISRN_CHECK(!in_channels.empty(), "[first_step_features] needs at least one level");
    const int64_t out = config.channels();
    for (size_t i = 0; i < in_channels.size(); ++i) {
      convs.push_back(register_module("conv" + std::to_string(i + 2),
                                      std::make_shared<nn::Conv2d>(
                                          detail::new_layer_conv(in_channels[i], out, 1, 1, 0, 0, config.dtype), gen)));
    }
  }
  // C2.. in order (as ResNet::forward returns them) → F1_2.. in the same order.
  std::vector<Tensor> forward(const std::vector<Tensor>& backbone_maps) {
    detail::check_levels("first_step_features", backbone_maps, in_channels_);
    std::vector<Tensor> out;
    for (size_t i = 0; i < convs.size(); ++i) out.push_back(convs[i]->forward(backbone_maps[i]));
    return out;
  }

  std::vector<std::shared_ptr<nn::Conv2d>> convs;

 private:
  std::vector<int64_t> in_channels_;
};

// P2..P7 from C2..C5. Children: lateral2..lateral5, smooth2..smooth5 (ConvNorm: conv [+ norm]), p6, p7.
class FPN : public nn::Module {
 public:
  // in_channels: the channels of C2, C3, C4, C5 (further entries, C6/C7, are ignored so that
  // ResNet::out_channels() can be passed as is).
  FPN(std::vector<int64_t> in_channels, const FPNConfig& config, Generator& gen = default_generator())
      : config_(config) {
    ISRN_CHECK(in_channels.size() >= 4, "[fpn] needs the channels of C2..C5, got ", in_channels.size(), " levels");
    in_channels.resize(4);
    in_channels_ = in_channels;
    const int64_t ch = config.channels();
    const DType dt = config.dtype;
    for (int l = 0; l < 4; ++l) {
      laterals[l] = register_module("lateral" + std::to_string(l + 2),
                                    std::make_shared<nn::Conv2d>(
                                        detail::new_layer_conv(in_channels[l], ch, 1, 1, 0, 0, dt), gen));
    }
    for (int l = 0; l < 4; ++l) {
      smooths[l] = register_module("smooth" + std::to_string(l + 2),
                                   std::make_shared<ConvNorm>(detail::new_layer_conv(ch, ch, 3, 3, 1, 1, dt),
                                                              config.norm, false, gen));
    }
    p6 = register_module("p6", std::make_shared<nn::Conv2d>(detail::new_layer_conv(ch, ch, 3, 3, 1, 1, dt, 2), gen));
    p7 = register_module("p7", std::make_shared<nn::Conv2d>(detail::new_layer_conv(ch, ch, 3, 3, 1, 1, dt, 2), gen));
  }

  // C2..C5 (further maps are ignored) → P2, P3, P4, P5, P6, P7.
  std::vector<Tensor> forward(const std::vector<Tensor>& backbone_maps) {
    ISRN_CHECK(backbone_maps.size() >= 4, "[fpn] needs C2..C5, got ", backbone_maps.size(), " maps");
    const std::vector<Tensor> c(backbone_maps.begin(), backbone_maps.begin() + 4);
    detail::check_levels("fpn", c, in_channels_);
    Tensor lateral[4];
    for (int l = 0; l < 4; ++l) lateral[l] = laterals[l]->forward(c[l]);
    Tensor merged[4];
    merged[3] = lateral[3];
    for (int l = 2; l >= 0; --l) merged[l] = add(upsample_like(merged[l + 1], lateral[l], config_.upsample), lateral[l]);
    std::vector<Tensor> out;
    for (int l = 0; l < 4; ++l) out.push_back(smooths[l]->forward(merged[l]));
    Tensor p6_out = p6->forward(config_.p6_from == P6Source::lateral ? lateral[3] : out[3]);
    out.push_back(p6_out);
    out.push_back(p7->forward(p6_out));
    return out;
  }

  const FPNConfig& config() const { return config_; }

  std::shared_ptr<nn::Conv2d> laterals[4];
  std::shared_ptr<ConvNorm> smooths[4];
  std::shared_ptr<nn::Conv2d> p6, p7;

 private:
  FPNConfig config_;
  std::vector<int64_t> in_channels_;
};

}  // namespace isrn::models
