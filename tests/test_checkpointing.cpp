// Activation checkpointing: the recomputed backward gives exactly the gradients of the plain one (same
// kernels, same order), through a float64 finite-difference check too, and for the whole detector; on a GPU
// it holds less memory at its peak.
#include <cmath>

#include "isrn/autograd/checkpoint.hpp"
#include "isrn/cuda/runtime.hpp"
#include "test_util.hpp"

using namespace isrn;

namespace {

std::vector<double> gradient_values(const std::vector<Tensor>& params) {
  std::vector<double> all;
  for (const Tensor& p : params) {
    const std::vector<double> v = test::values(p.grad());
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

}  // namespace

TEST_CASE("checkpoint: the same output and exactly the same gradients as without, for input and parameters") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator gen(3);
    nn::Sequential block;
    nn::Conv2dOptions o;
    o.in_channels = 4;
    o.out_channels = 8;
    o.kernel = {3, 3};
    o.padding = {1, 1, 1, 1};
    o.dtype = DType::Float64;
    block.push_back(std::make_shared<nn::Conv2d>(o, gen));
    test::randomize_parameters(block, 4);
    block.to(d);
    // Smooth (sigmoid rather than a ReLU kink) so the finite differences below are exact enough.
    const auto fn = [&block](const Tensor& t) { return sigmoid(block.forward(t)); };
    const Tensor x0 = test::random({2, 4, 5, 7}, 5).to(d);

    Tensor x = x0.clone().set_requires_grad(true);
    const Tensor plain = fn(x);
    sum(mul(plain, plain)).backward();
    const std::vector<double> plain_grads = gradient_values(block.parameters());
    const Tensor plain_input_grad = x.grad();

    block.zero_grad();
    Tensor xc = x0.clone().set_requires_grad(true);
    const Tensor recomputed = autograd::checkpoint(fn, xc, block.parameters());
    test::check_close(recomputed, plain, 0, 0, "forward");
    sum(mul(recomputed, recomputed)).backward();
    test::check_close(xc.grad(), plain_input_grad, 0, 0, "input gradient");
    const std::vector<double> grads = gradient_values(block.parameters());
    REQUIRE(grads.size() == plain_grads.size());
    for (size_t i = 0; i < grads.size(); ++i) REQUIRE(grads[i] == plain_grads[i]);

    // Input without grad: the parameters still get theirs. Under NoGradGuard: a plain call, no graph.
    block.zero_grad();
    sum(autograd::checkpoint(fn, x0, block.parameters())).backward();
    CHECK(block.parameters().front().grad().defined());
    {
      NoGradGuard no_grad;
      CHECK(!autograd::checkpoint(fn, x0, block.parameters()).requires_grad());
    }
    test::gradcheck([&](const std::vector<Tensor>& in) { return autograd::checkpoint(fn, in[0], block.parameters()); },
                    {x0.to(Device::cpu())}, d, 1e-6, 1e-7, 1e-6, "checkpoint");
  }
}

// The loss is bitwise the same. Gradients agree up to the order of summation: a stage output that feeds the next
// stage's two branches and the pyramid has its gradient summed in a different grouping when the next stage is
// recomputed ((a + b) + c instead of a + (b + c)). GroupNorm's affine gradients are sums with heavy cancellation
// (terms of 1e-1 summing to 1e-5), which turns those ulps into relative differences of 1e-3 in float32; the
// comparison therefore runs in float64, where the same effect stays below 1e-10 of each gradient's largest element.
TEST_CASE("checkpoint: the detector's loss and every parameter gradient are unchanged by activation checkpointing") {
  models::DetectorConfig plain_config = test::tiny_detector_config();
  plain_config.backbone.dtype = DType::Float64;
  models::DetectorConfig recompute_config = plain_config;
  recompute_config.backbone.activation_checkpointing = true;
  for (Device d : test::devices()) {
    CAPTURE(d);
    Generator g1(11), g2(11);
    models::Detector plain(plain_config, g1), recompute(recompute_config, g2);
    plain.to(d);
    recompute.to(d);
    const Tensor x = test::random({2, 3, 64, 48}, 1, -2.0, 2.0, DType::Float64).to(d);
    const std::vector<Tensor> gt{from_vector<double>({8, 6, 30, 34}, Shape{1, 4}, d),
                                 from_vector<double>({2, 2, 40, 46}, Shape{1, 4}, d)};
    const models::DetectionLoss a = plain.loss(x, gt), b = recompute.loss(x, gt);
    test::check_close(b.total, a.total, 0, 0, "loss");
    a.total.backward();
    b.total.backward();
    const auto pa = plain.named_parameters(), pb = recompute.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      CAPTURE(pa[i].first);
      REQUIRE(pb[i].second.grad().defined());
      const std::vector<double> ga = test::values(pa[i].second.grad()), gb = test::values(pb[i].second.grad());
      double largest = 0;
      for (double v : ga) largest = std::max(largest, std::abs(v));
      for (size_t k = 0; k < ga.size(); ++k) REQUIRE(std::abs(gb[k] - ga[k]) <= 1e-10 * largest + 1e-300);
    }
  }
}

TEST_CASE("checkpoint: the detector's peak GPU memory in a training step is lower with activation checkpointing") {
  ISRN_REQUIRE_CUDA();
  auto peak = [](bool recompute) {
    models::DetectorConfig c = test::tiny_detector_config();
    c.backbone.width_mult = 0.25;
    c.backbone.activation_checkpointing = recompute;
    models::Detector det(c);
    det.to(Device::cuda());
    const Tensor x = test::random({2, 3, 256, 256}, 1, -2.0, 2.0, DType::Float32).to(Device::cuda());
    const std::vector<Tensor> gt{from_vector<float>({8, 6, 60, 74}, Shape{1, 4}, Device::cuda()),
                                 from_vector<float>({100, 90, 180, 190}, Shape{1, 4}, Device::cuda())};
    cuda::reset_peak_stats();
    const int64_t before = cuda::memory_stats().active_bytes;
    det.loss(x, gt).total.backward();
    return cuda::memory_stats().peak_active_bytes - before;
  };
  const int64_t plain = peak(false), recompute = peak(true);
  MESSAGE("peak active bytes of a step: ", plain, " plain, ", recompute, " with activation checkpointing");
  CHECK(recompute < plain);
}
