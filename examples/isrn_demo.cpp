// isrn-demo: a small convolutional network trained from scratch on generated images, to show the
// library end to end (tensors, autograd, conv2d, GroupNorm, pooling, losses, SGD) before the
// detector arrives. Each image holds one bright shape, a bar or a disc, on a noisy background;
// the network learns to say which shape it is (binary cross-entropy) and where its centre is
// (smooth L1). It prints the loss falling and the held-out accuracy.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "isrn/isrn.hpp"
#include "isrn/optim/lr_schedule.hpp"
#include "isrn/optim/sgd.hpp"

using namespace isrn;

namespace {

constexpr int64_t kSize = 24;

struct Batch {
  Tensor images;  // [N, 1, kSize, kSize]
  Tensor is_disc; // [N, 1] in {0, 1}
  Tensor centre;  // [N, 2] in [0, 1]
};

Batch make_batch(int64_t n, Generator& gen) {
  Tensor images = zeros({n, 1, kSize, kSize});
  Tensor labels = zeros({n, 1});
  Tensor centres = zeros({n, 2});
  float* px = images.data_ptr<float>();
  float* pl = labels.data_ptr<float>();
  float* pc = centres.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const bool disc = gen.uniform() < 0.5;
    const bool horizontal = gen.uniform() < 0.5;
    const double r = 3.0 + 3.0 * gen.uniform();
    const double reach = disc ? r : 1.6 * r;  // keep the whole shape inside the image
    const double cx = reach + (kSize - 2 * reach) * gen.uniform(), cy = reach + (kSize - 2 * reach) * gen.uniform();
    for (int64_t y = 0; y < kSize; ++y)
      for (int64_t x = 0; x < kSize; ++x) {
        const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const bool inside = disc ? dx * dx + dy * dy <= r * r
                                 : (horizontal ? std::abs(dx) <= r * 1.6 && std::abs(dy) <= r * 0.5
                                               : std::abs(dx) <= r * 0.5 && std::abs(dy) <= r * 1.6);
        px[(i * kSize + y) * kSize + x] = static_cast<float>((inside ? 1.0 : 0.0) + 0.3 * gen.normal());
      }
    pl[i] = disc ? 1.0f : 0.0f;
    pc[2 * i] = static_cast<float>(cx / kSize);
    pc[2 * i + 1] = static_cast<float>(cy / kSize);
  }
  return {images, labels, centres};
}

Tensor kaiming(const Shape& shape, int64_t fan_out, Generator& gen) {
  return mul(randn(shape, {}, &gen), std::sqrt(2.0 / static_cast<double>(fan_out))).set_requires_grad(true);
}

struct Net {
  Tensor w1, b1, g1, be1, w2, b2, g2, be2, w3, b3, wf, bf;
  Net(Generator& gen)
      : w1(kaiming({16, 1, 3, 3}, 16 * 9, gen)),
        b1(zeros({16}).set_requires_grad(true)),
        g1(ones({16}).set_requires_grad(true)),
        be1(zeros({16}).set_requires_grad(true)),
        w2(kaiming({32, 16, 3, 3}, 32 * 9, gen)),
        b2(zeros({32}).set_requires_grad(true)),
        g2(ones({32}).set_requires_grad(true)),
        be2(zeros({32}).set_requires_grad(true)),
        w3(kaiming({32, 32, 1, 5}, 32 * 5, gen)),
        b3(zeros({32}).set_requires_grad(true)),
        wf(mul(randn({32 * 6 * 6, 3}, {}, &gen), std::sqrt(1.0 / (32 * 6 * 6))).set_requires_grad(true)),
        bf(zeros({3}).set_requires_grad(true)) {}

  // Returns [N, 3]: a logit for "disc" and the two centre coordinates.
  Tensor forward(const Tensor& x) const {
    Tensor h = group_norm(conv2d(x, w1, b1, Conv2dParams::same(3, 3)), 4, g1, be1, 1e-5, /*fuse_relu=*/true);
    h = max_pool2d(h, Pool2dParams{{2, 2}, {2, 2}, {0, 0}, false});
    h = group_norm(conv2d(h, w2, b2, Conv2dParams::same(3, 3)), 8, g2, be2, 1e-5, true);
    h = max_pool2d(h, Pool2dParams{{2, 2}, {2, 2}, {0, 0}, false});
    h = relu(conv2d(h, w3, b3, Conv2dParams::same(1, 5)));
    // Flattened, not averaged: the centre regression needs to know where the features are.
    return add(matmul(h.flatten(1), wf), bf);  // [N, 32·6·6] → [N, 3]
  }
  std::vector<Tensor> norm_and_bias() const { return {b1, g1, be1, b2, g2, be2, b3, bf}; }
  std::vector<Tensor> weights() const { return {w1, w2, w3, wf}; }
};

}  // namespace

int main(int argc, char** argv) {
  int iters = 600;
  if (argc > 1) {
    char* end = nullptr;
    iters = static_cast<int>(std::strtol(argv[1], &end, 10));
    if (!end || *end != '\0' || iters <= 0) {
      std::fprintf(stderr, "usage: isrn-demo [iterations > 0]\n");
      return 2;
    }
  }
  try {
    Generator gen(2026);
    Net net(gen);
    optim::SGD sgd({optim::ParamGroup{net.weights(), 0.005, 0.9, 1e-4},
                    optim::ParamGroup{net.norm_and_bias(), 0.005, 0.9, 0.0}});
    optim::WarmupMultiStep schedule(0.005, {iters * 2 / 3}, /*gamma=*/0.1, /*warmup_factor=*/0.1, /*warmup_iters=*/20);
    Generator data_gen(7);
    const Batch held_out = make_batch(256, data_gen);
    std::printf("isrn-demo: %d iterations of SGD, batch 32, on generated %lldx%lld images (%d threads)\n", iters,
                static_cast<long long>(kSize), static_cast<long long>(kSize), get_num_threads());
    const auto start = std::chrono::steady_clock::now();
    double first_loss = 0.0, last_loss = 0.0;
    for (int it = 0; it < iters; ++it) {
      const Batch b = make_batch(32, data_gen);
      Tensor out = net.forward(b.images);
      Tensor cls = binary_cross_entropy_with_logits(out.narrow(1, 0, 1), b.is_disc);
      Tensor box = smooth_l1_loss(out.narrow(1, 1, 2), b.centre, 0.02, Reduction::Mean);
      Tensor loss = add(cls, mul(box, 2.0));
      sgd.zero_grad();
      loss.backward();
      for (size_t g = 0; g < 2; ++g) sgd.set_lr(g, schedule.lr_at(it));
      sgd.step();
      const double l = loss.item<float>();
      if (!std::isfinite(l)) {
        std::fprintf(stderr, "isrn-demo: loss became %f at iteration %d\n", l, it);
        return 1;
      }
      if (it == 0) first_loss = l;
      last_loss = l;
      if (it % 25 == 0 || it + 1 == iters)
        std::printf("iter %4d  loss %.4f  (cls %.4f, centre %.4f)  lr %.4f\n", it, l, cls.item<float>(),
                    box.item<float>(), schedule.lr_at(it));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    NoGradGuard no_grad;
    Tensor out = net.forward(held_out.images);
    const double accuracy =
        mean(eq(gt(out.narrow(1, 0, 1), 0.0), gt(held_out.is_disc, 0.5)).to(DType::Float32)).item<float>();
    const double centre_err =
        mean(abs(sub(out.narrow(1, 1, 2), held_out.centre))).item<float>() * static_cast<double>(kSize);
    std::printf("trained in %.1f s (%.1f it/s); loss %.4f -> %.4f\n", seconds, iters / seconds, first_loss,
                last_loss);
    std::printf("held-out: shape accuracy %.1f%%, mean centre error %.2f px\n", 100.0 * accuracy, centre_err);
    return last_loss < first_loss ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "isrn-demo: %s\n", e.what());
    return 1;
  }
}
