// GroupNorm, sigmoid focal loss, box IoU and NMS against PyTorch, from the golden files written by
// data_tools/golden_detection_ops.py (float64, torch 1.13; torchvision's formulas written in torch).
//
// Tolerances: both sides compute in float64 from identical inputs, so only the order of roundings
// differs: ≈1e-15 relative per operation, a few dozen operations deep. 1e-12 relative with 1e-13
// absolute (for values near 0) is far above that and far below any formula error, which shows up at
// 1e-3 or more. NMS indices must match exactly.
#include "golden.hpp"
#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

constexpr double kRtol = 1e-12, kAtol = 1e-13;

Reduction reduction_of(const std::string& name) {
  if (name == "none") return Reduction::None;
  if (name == "sum") return Reduction::Sum;
  REQUIRE(name == "mean");
  return Reduction::Mean;
}

}  // namespace

TEST_CASE("golden: group_norm forward and backward match PyTorch") {
  for (const std::string name : {"group_norm_affine", "group_norm_relu", "group_norm_noaffine_2d"}) {
    const test::Golden g = test::load_golden(name);
    const bool affine = g.number("affine") != 0, relu = g.number("relu") != 0;
    const auto groups = static_cast<int64_t>(g.number("groups"));
    for (Device d : test::devices()) {
      CAPTURE(name);
      CAPTURE(d);
      // Fresh leaves: to(cpu) returns the golden tensor itself, whose .grad would accumulate over runs.
      Tensor x = g["x"].to(d).clone().set_requires_grad(true);
      Tensor gamma = affine ? g["gamma"].to(d).clone().set_requires_grad(true) : Tensor();
      Tensor beta = affine ? g["beta"].to(d).clone().set_requires_grad(true) : Tensor();
      Tensor y = group_norm(x, groups, gamma, beta, g.number("eps"), relu);
      check_close(y, g["y"], kRtol, kAtol, "y");
      y.backward(g["upstream"].to(d));
      check_close(x.grad(), g["grad_x"], kRtol, kAtol, "grad_x");
      if (affine) {
        check_close(gamma.grad(), g["grad_gamma"], kRtol, kAtol, "grad_gamma");
        check_close(beta.grad(), g["grad_beta"], kRtol, kAtol, "grad_beta");
      }
      // The composite, the fused kernels' oracle, agrees with PyTorch too.
      Tensor composite = group_norm_composite(x.detach(), groups, affine ? gamma.detach() : Tensor(),
                                              affine ? beta.detach() : Tensor(), g.number("eps"));
      check_close(relu ? isrn::relu(composite) : composite, g["y"], kRtol, kAtol, "composite y");
    }
  }
}

TEST_CASE("golden: sigmoid_focal_loss matches torchvision's formula, loss and gradient") {
  for (const std::string name : {"focal_loss_none", "focal_loss_sum_soft_weighted", "focal_loss_mean_no_alpha"}) {
    const test::Golden g = test::load_golden(name);
    const Reduction reduction = reduction_of(g.metadata.at("reduction"));
    const bool weighted = g.tensors.count("weights") > 0;
    for (Device d : test::devices()) {
      for (bool fused : {true, false}) {
        CAPTURE(name);
        CAPTURE(d);
        CAPTURE(fused);
        Tensor logits = g["logits"].to(d).clone().set_requires_grad(true);
        Tensor targets = g["targets"].to(d);
        Tensor weights = weighted ? g["weights"].to(d) : Tensor();
        const double alpha = g.number("alpha"), gamma = g.number("gamma");
        Tensor loss = fused ? sigmoid_focal_loss(logits, targets, weights, alpha, gamma, reduction)
                            : sigmoid_focal_loss_composite(logits, targets, weights, alpha, gamma, reduction);
        check_close(loss, g["loss"], kRtol, kAtol, "loss");
        loss.backward(g["upstream"].to(d));
        check_close(logits.grad(), g["grad_logits"], kRtol, kAtol, "grad_logits");
      }
    }
  }
}

TEST_CASE("golden: box_iou matches torchvision's definition") {
  for (const std::string name : {"box_iou_plain", "box_iou_plus_one"}) {
    const test::Golden g = test::load_golden(name);
    for (Device d : test::devices()) {
      CAPTURE(name);
      CAPTURE(d);
      check_close(box_iou(g["a"].to(d), g["b"].to(d), g.number("plus_one") != 0), g["iou"], kRtol, kAtol, "iou");
    }
  }
}

TEST_CASE("golden: nms keeps exactly PyTorch's greedy selection") {
  for (const std::string name : {"nms_threshold_0.5", "nms_plus_one_0.4"}) {
    const test::Golden g = test::load_golden(name);
    for (Device d : test::devices()) {
      CAPTURE(name);
      CAPTURE(d);
      Tensor keep = nms(g["boxes"].to(d), g["scores"].to(d), g.number("iou_threshold"), g.number("plus_one") != 0);
      CHECK(keep.to_vector<int64_t>() == g["keep"].to_vector<int64_t>());
      // The selection is not trivial: some boxes are suppressed, and equal scores occur.
      CHECK(keep.numel() < g["boxes"].size(0));
    }
  }
}
