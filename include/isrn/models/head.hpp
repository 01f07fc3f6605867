#pragma once
// The detection head of SPEC §4: one cls subnet and one box subnet, each
//   conv3x3 [→ GN] → ReLU → RFE → conv3x3 [→ GN] → ReLU → predictor 1x1,
// applied with the same weights to every pyramid level and to both steps (the released SRN shares
// the predictors too; separate_step1_predictors gives step 1 its own pair).
//
// RFE (SPEC §4.2): four branches 1x1 → asymmetric (1×5 | 5×1 | 1×3 | 3×1) → 1x1, each conv followed
// by [GN →] ReLU, concatenated in branch order, fused by 1x1 [→ GN] → ReLU, plus the block input
// (no ReLU after the add). GN placement follows the Decisions table: after every head and RFE conv,
// never after a predictor.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "isrn/models/conv_norm.hpp"
#include "isrn/nn/init.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/shape.hpp"

namespace isrn::models {

// Children: branch0..branch3 (Sequential of three ConvNorm, "0", "1", "2"), fuse (ConvNorm).
class RFE : public nn::Layer {
 public:
  // Asymmetric kernels (h, w) of branches 0..3; padding keeps the spatial size.
  static constexpr std::array<std::array<int64_t, 2>, 4> kernels{{{1, 5}, {5, 1}, {1, 3}, {3, 1}}};

  RFE(int64_t channels, const nn::NormConfig& norm, DType dtype = DType::Float32,
      Generator& gen = default_generator())
      : channels_(channels), inter_(channels / 4) {
    ISRN_CHECK(channels >= 4, "[rfe] needs at least 4 channels (inter = channels / 4), got ", channels);
    for (int b = 0; b < 4; ++b) {
      const auto [kh, kw] = kernels[b];
      auto branch = std::make_shared<nn::Sequential>();
      branch->push_back(
          std::make_shared<ConvNorm>(detail::new_layer_conv(channels, inter_, 1, 1, 0, 0, dtype), norm, true, gen));
      branch->push_back(std::make_shared<ConvNorm>(
          detail::new_layer_conv(inter_, inter_, kh, kw, kh / 2, kw / 2, dtype), norm, true, gen));
      branch->push_back(
          std::make_shared<ConvNorm>(detail::new_layer_conv(inter_, inter_, 1, 1, 0, 0, dtype), norm, true, gen));
      branches[b] = register_module("branch" + std::to_string(b), branch);
    }
    fuse = register_module("fuse", std::make_shared<ConvNorm>(
                                       detail::new_layer_conv(4 * inter_, channels, 1, 1, 0, 0, dtype), norm, true, gen));
  }

  Tensor forward(const Tensor& x) override {
    ISRN_CHECK(x.dim() == 4 && x.size(1) == channels_, "[rfe] expects NCHW with ", channels_,
               " channels, got shape ", shape_str(x.shape()));
    std::vector<Tensor> outs;
    for (auto& b : branches) outs.push_back(b->forward(x));
    return add(fuse->forward(cat(outs, 1)), x);
  }
  int64_t channels() const { return channels_; }
  int64_t inter_channels() const { return inter_; }

  std::shared_ptr<nn::Sequential> branches[4];
  std::shared_ptr<ConvNorm> fuse;

 private:
  int64_t channels_, inter_;
};

// conv1 (3x3, ConvNorm with ReLU) → rfe → conv2 (3x3, ConvNorm with ReLU); the predictor lives in Head.
class HeadSubnet : public nn::Layer {
 public:
  HeadSubnet(int64_t channels, const nn::NormConfig& norm, DType dtype = DType::Float32,
             Generator& gen = default_generator()) {
    conv1 = register_module("conv1", std::make_shared<ConvNorm>(
                                         detail::new_layer_conv(channels, channels, 3, 3, 1, 1, dtype), norm, true, gen));
    rfe = register_module("rfe", std::make_shared<RFE>(channels, norm, dtype, gen));
    conv2 = register_module("conv2", std::make_shared<ConvNorm>(
                                         detail::new_layer_conv(channels, channels, 3, 3, 1, 1, dtype), norm, true, gen));
  }
  Tensor forward(const Tensor& x) override { return conv2->forward(rfe->forward(conv1->forward(x))); }

  std::shared_ptr<ConvNorm> conv1;
  std::shared_ptr<RFE> rfe;
  std::shared_ptr<ConvNorm> conv2;
};

struct HeadConfig {
  int64_t channels = 256;                           // of every input feature map (FPNConfig::channels())
  int64_t num_anchors = 2;                          // A: anchors per location
  double prior = 0.01;                              // π: the initial face probability
  nn::NormConfig norm = nn::NormConfig::group(16);  // after the 3x3 convs and inside RFE
  bool separate_step1_predictors = false;           // the released SRN shares them
  DType dtype = DType::Float32;
};

// Per level: cls [B, A, H, W] logits and box [B, 4A, H, W] deltas (channel 4a + k, k = dx, dy, dw, dh).
struct HeadOutput {
  std::vector<Tensor> cls;
  std::vector<Tensor> box;
};

// Children: cls_subnet, box_subnet, cls_pred, box_pred, and with separate_step1_predictors
// cls_pred_step1, box_pred_step1.
class Head : public nn::Module {
 public:
  explicit Head(const HeadConfig& config, Generator& gen = default_generator()) : config_(config) {
    ISRN_CHECK(config.num_anchors > 0, "[head] num_anchors must be positive, got ", config.num_anchors);
    ISRN_CHECK(config.prior > 0.0 && config.prior < 1.0, "[head] prior must lie in (0, 1), got ", config.prior);
    const int64_t ch = config.channels;
    const DType dt = config.dtype;
    cls_subnet = register_module("cls_subnet", std::make_shared<HeadSubnet>(ch, config.norm, dt, gen));
    box_subnet = register_module("box_subnet", std::make_shared<HeadSubnet>(ch, config.norm, dt, gen));
    cls_pred = register_module("cls_pred", make_cls_pred(gen));
    box_pred = register_module("box_pred", make_box_pred(gen));
    if (config.separate_step1_predictors) {
      cls_pred_step1 = register_module("cls_pred_step1", make_cls_pred(gen));
      box_pred_step1 = register_module("box_pred_step1", make_box_pred(gen));
    }
  }

  // step 1 (first-step features F1) or 2 (FPN features P); the same weights either way unless
  // separate_step1_predictors.
  HeadOutput forward(const std::vector<Tensor>& features, int step) {
    ISRN_CHECK(step == 1 || step == 2, "[head] step must be 1 or 2, got ", step);
    ISRN_CHECK(!features.empty(), "[head] needs at least one feature level");
    const bool own_step1 = step == 1 && cls_pred_step1;
    nn::Conv2d& cls_out = own_step1 ? *cls_pred_step1 : *cls_pred;
    nn::Conv2d& box_out = own_step1 ? *box_pred_step1 : *box_pred;
    HeadOutput out;
    for (size_t l = 0; l < features.size(); ++l) {
      const Tensor& f = features[l];
      ISRN_CHECK(f.dim() == 4 && f.size(1) == config_.channels, "[head] level ", l, " must be NCHW with ",
                 config_.channels, " channels, got shape ", shape_str(f.shape()));
      out.cls.push_back(cls_out.forward(cls_subnet->forward(f)));
      out.box.push_back(box_out.forward(box_subnet->forward(f)));
    }
    return out;
  }

  const HeadConfig& config() const { return config_; }

  std::shared_ptr<HeadSubnet> cls_subnet, box_subnet;
  std::shared_ptr<nn::Conv2d> cls_pred, box_pred;
  std::shared_ptr<nn::Conv2d> cls_pred_step1, box_pred_step1;  // null unless separate_step1_predictors

 private:
  // Weight N(0, 0.01); bias −log((1 − π)/π) so every initial face probability is π (SPEC §4.1).
  std::shared_ptr<nn::Conv2d> make_cls_pred(Generator& gen) const {
    auto conv = std::make_shared<nn::Conv2d>(
        detail::new_layer_conv(config_.channels, config_.num_anchors, 1, 1, 0, 0, config_.dtype), gen);
    nn::init::prior_bias_(conv->bias, config_.prior);
    return conv;
  }
  std::shared_ptr<nn::Conv2d> make_box_pred(Generator& gen) const {
    return std::make_shared<nn::Conv2d>(
        detail::new_layer_conv(config_.channels, 4 * config_.num_anchors, 1, 1, 0, 0, config_.dtype), gen);
  }
  HeadConfig config_;
};

// All levels in one row per image, in anchor order: level by level, and within a level
// index (y·W + x)·A + a; box channel 4a + k becomes deltas[..., k].
struct FlatPredictions {
  Tensor logits;  // [B, Σ H·W·A]
  Tensor deltas;  // [B, Σ H·W·A, 4]
};

inline FlatPredictions flatten_predictions(const std::vector<Tensor>& cls, const std::vector<Tensor>& box,
                                           int64_t num_anchors) {
  ISRN_CHECK(!cls.empty() && cls.size() == box.size(), "[flatten_predictions] needs the same non-zero number of "
             "cls and box levels, got ", cls.size(), " and ", box.size());
  ISRN_CHECK(num_anchors > 0, "[flatten_predictions] num_anchors must be positive, got ", num_anchors);
  const int64_t batch = cls[0].dim() == 4 ? cls[0].size(0) : -1;
  std::vector<Tensor> logits, deltas;
  for (size_t l = 0; l < cls.size(); ++l) {
    const Tensor& c = cls[l];
    const Tensor& b = box[l];
    ISRN_CHECK(c.dim() == 4 && c.size(0) == batch && c.size(1) == num_anchors, "[flatten_predictions] cls level ", l,
               " must be [", batch, ", ", num_anchors, ", H, W], got ", shape_str(c.shape()));
    ISRN_CHECK(b.dim() == 4 && b.size(0) == batch && b.size(1) == 4 * num_anchors && b.size(2) == c.size(2) &&
                   b.size(3) == c.size(3),
               "[flatten_predictions] box level ", l, " must be [", batch, ", ", 4 * num_anchors, ", ", c.size(2), ", ",
               c.size(3), "], got ", shape_str(b.shape()));
    const int64_t k = c.size(2) * c.size(3) * num_anchors;
    // NCHW → NHWC puts the anchor (and 4a + k) channel innermost: exactly (y·W + x)·A + a.
    logits.push_back(c.permute({0, 2, 3, 1}).reshape({batch, k}));
    deltas.push_back(b.permute({0, 2, 3, 1}).reshape({batch, k, 4}));
  }
  return {cat(logits, 1), cat(deltas, 1)};
}

inline FlatPredictions flatten_predictions(const HeadOutput& out, int64_t num_anchors) {
  return flatten_predictions(out.cls, out.box, num_anchors);
}

}  // namespace isrn::models
