#pragma once
// The ISRN report's ablations that did not help (SPEC §12), kept behind switches that are off by
// default so their results can be reproduced:
//   SE:  a Squeeze-and-Excitation block on every detection feature entering the head, one per level
//        and step: x · sigmoid(FC(ReLU(FC(GAP(x))))) with a C → C/r → C bottleneck;
//   seg: a weak, box-level segmentation branch on the first low-level feature (P2, stride 4):
//        3 × [conv3x3 + ReLU] → conv1x1 → 1 channel; M = sigmoid of it scales the feature (x · M, or
//        x · (1 + M)); trained with BCE against a mask that is 1 inside any face box.
#include <cstdint>
#include <memory>
#include <vector>

#include "isrn/models/conv_norm.hpp"
#include "isrn/ops/elementwise.hpp"
#include "isrn/ops/reduce.hpp"

namespace isrn::models {

enum class SegMode { multiply, residual };  // x · M  or  x · (1 + M)

struct AblationConfig {
  bool se = false;
  int64_t se_reduction = 16;
  bool seg_branch = false;
  SegMode seg_mode = SegMode::multiply;
  double seg_weight = 1.0;  // of the BCE term in the total loss
};

// Children: fc1 (1x1 C → C/r), fc2 (1x1 C/r → C); 1x1 convs on the pooled [B, C, 1, 1] map are the FCs.
class SEBlock : public nn::Layer {
 public:
  SEBlock(int64_t channels, int64_t reduction, DType dtype = DType::Float32, Generator& gen = default_generator()) {
    ISRN_CHECK(reduction > 0 && channels / reduction >= 1, "[se] reduction ", reduction, " leaves no channels of ",
               channels);
    fc1 = register_module("fc1", std::make_shared<nn::Conv2d>(
                                     detail::new_layer_conv(channels, channels / reduction, 1, 1, 0, 0, dtype), gen));
    fc2 = register_module("fc2", std::make_shared<nn::Conv2d>(
                                     detail::new_layer_conv(channels / reduction, channels, 1, 1, 0, 0, dtype), gen));
  }
  Tensor forward(const Tensor& x) override {
    const Tensor squeezed = mean(x, {2, 3}, /*keepdim=*/true);
    return mul(x, sigmoid(fc2->forward(relu(fc1->forward(squeezed)))));
  }

  std::shared_ptr<nn::Conv2d> fc1, fc2;
};

// Children: convs (Sequential of three ConvNorm with ReLU; the norm follows the detector's), pred (1x1 → 1).
class SegBranch : public nn::Module {
 public:
  SegBranch(int64_t channels, const nn::NormConfig& norm, SegMode mode, DType dtype = DType::Float32,
            Generator& gen = default_generator())
      : mode_(mode) {
    convs = register_module("convs", std::make_shared<nn::Sequential>());
    for (int i = 0; i < 3; ++i)
      convs->push_back(std::make_shared<ConvNorm>(detail::new_layer_conv(channels, channels, 3, 3, 1, 1, dtype), norm,
                                                  true, gen));
    pred = register_module("pred",
                           std::make_shared<nn::Conv2d>(detail::new_layer_conv(channels, 1, 1, 1, 0, 0, dtype), gen));
  }
  // The [B, 1, H, W] mask logits of a feature map.
  Tensor logits(const Tensor& feature) { return pred->forward(convs->forward(feature)); }
  // The feature scaled by sigmoid(logits).
  Tensor apply(const Tensor& feature, const Tensor& mask_logits) const {
    const Tensor m = sigmoid(mask_logits);
    return mul(feature, mode_ == SegMode::residual ? add(m, 1.0) : m);
  }

  std::shared_ptr<nn::Sequential> convs;
  std::shared_ptr<nn::Conv2d> pred;

 private:
  SegMode mode_;
};

// The box-level target of the seg branch, [B, 1, H, W] in `options`: 1 where the centre of a map cell,
// ((x + 0.5)·stride, (y + 0.5)·stride) in image pixels, lies inside any face box of that image.
Tensor box_mask_targets(const std::vector<Tensor>& gt_boxes, int64_t height, int64_t width, int64_t stride,
                        TensorOptions options);

}  // namespace isrn::models
