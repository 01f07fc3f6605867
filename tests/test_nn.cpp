// Modules, initializers, layers and the ResNet backbone: parameter naming and order, in-place moves,
// optimizer groups, initializer statistics, residual blocks against the same computation written
// with raw ops, a float64 gradient check of a block, and the backbone's map sizes and size.
#include <cmath>
#include <numeric>

#include "isrn/models/resnet.hpp"
#include "isrn/nn/init.hpp"
#include "isrn/nn/layers.hpp"
#include "isrn/nn/module.hpp"
#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<std::string> out;
  for (auto& n : named) out.push_back(n.first);
  return out;
}

Tensor gn_ref(const Tensor& x, const std::shared_ptr<nn::GroupNorm>& n, int64_t groups) {
  return group_norm_composite(x, groups, n->weight, n->bias, 1e-5);
}

Conv2dParams conv_params(int64_t stride, int64_t pad) {
  Conv2dParams p;
  p.stride = {stride, stride};
  p.padding = {pad, pad, pad, pad};
  return p;
}

std::vector<std::string> names_of_modules(nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, child] : m.named_modules()) out.push_back(name);
  return out;
}

// A module with its own parameter and buffer plus nested children, for the naming tests.
struct Toy : nn::Module {
  Toy() {
    scale = register_parameter("scale", ones({3}), nn::ParamRole::norm);
    register_buffer("count", zeros({1}, DType::Int64));
    register_buffer("running", full({2}, 0.5));
    auto seq = std::make_shared<nn::Sequential>();
    seq->push_back(std::make_shared<nn::BasicBlock>(4, 8, 2, nn::NormConfig::group(4)));
    seq->push_back(std::make_shared<nn::ReLU>());
    body = register_module("body", seq);
    head = register_module("head", std::make_shared<nn::Conv2d>(nn::Conv2dOptions::square(8, 2, 1)));
  }
  Tensor scale;
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::Conv2d> head;
};

// ceil(n / 2) applied k times: SPEC §2.1, every stride-2 op of the backbone halves with ceil.
int64_t ceil_halve(int64_t n, int k) {
  for (int i = 0; i < k; ++i) n = (n + 1) / 2;
  return n;
}

}  // namespace

TEST_CASE("nn: named parameters and buffers are dotted and in registration order") {
  Toy toy;
  const std::vector<std::string> expected_params{
      "scale",
      "body.0.conv1.weight", "body.0.norm1.weight", "body.0.norm1.bias",
      "body.0.conv2.weight", "body.0.norm2.weight", "body.0.norm2.bias",
      "body.0.downsample.0.weight", "body.0.downsample.1.weight", "body.0.downsample.1.bias",
      "head.weight", "head.bias"};
  CHECK(names_of(toy.named_parameters()) == expected_params);
  CHECK(names_of(toy.named_buffers()) == std::vector<std::string>{"count", "running"});
  CHECK(names_of(toy.state_dict()).size() == expected_params.size() + 2);
  // 3 + conv1 8·4·9 + 2·8 + conv2 8·8·9 + 2·8 + downsample 8·4 + 2·8 + head 2·8 + 2
  const int64_t expected_count = 3 + 288 + 16 + 576 + 16 + 32 + 16 + 16 + 2;
  CHECK(toy.num_parameters() == expected_count);
  for (const Tensor& p : toy.parameters()) CHECK(p.requires_grad());
  for (const Tensor& b : toy.buffers()) CHECK(!b.requires_grad());
  // Lookup by name returns the live handle, not a copy.
  CHECK(toy.find("head.weight").impl() == toy.head->weight.impl());
  CHECK(toy.find("running").impl() == toy.named_buffers()[1].second.impl());
  CHECK(toy.contains("body.0.downsample.1.bias"));
  CHECK(!toy.contains("body.0.downsample.2.weight"));
  CHECK_THROWS_WITH_AS(toy.find("body.9.weight"), doctest::Contains("no parameter or buffer named 'body.9.weight'"),
                       Error);
  CHECK_THROWS_WITH_AS(toy.register_parameter("scale", ones({1})), doctest::Contains("already registered"), Error);
  CHECK_THROWS_WITH_AS(toy.register_buffer("a.b", ones({1})), doctest::Contains("contain no '.'"), Error);
  CHECK_THROWS_WITH_AS(toy.register_parameter("derived", mul(toy.scale, 2.0)), doctest::Contains("leaf"), Error);

  // A block without a norm has biased convs and no norm children.
  nn::BasicBlock plain(4, 4, 1, nn::NormConfig::none());
  CHECK(names_of(plain.named_parameters()) ==
        std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"});

  // train()/eval() reach every descendant.
  toy.eval();
  for (auto& [name, m] : toy.named_modules()) CHECK_MESSAGE(!m->is_training(), name);
  toy.train();
  for (auto& [name, m] : toy.named_modules()) CHECK_MESSAGE(m->is_training(), name);
  // toy, body, body.0, its conv1 norm1 conv2 norm2 downsample downsample.0 downsample.1, body.1, head
  CHECK(names_of_modules(toy).size() == 12);
  CHECK(names_of_modules(toy)[9] == "body.0.downsample.1");
}

TEST_CASE("nn: to(DType) and to(Device) convert in place, keeping the handles callers hold") {
  Toy toy;
  test::randomize_parameters(toy, 11);
  Tensor w = toy.head->weight;  // a handle taken before the move
  Tensor running = toy.named_buffers()[1].second;
  const auto before = test::values(w);
  w.set_grad(full_like(w, 0.25));
  toy.to(DType::Float64);
  CHECK(w.dtype() == DType::Float64);
  CHECK(w.requires_grad());
  CHECK(w.grad().dtype() == DType::Float64);
  CHECK(test::values(w) == std::vector<double>(before.begin(), before.end()));  // float → double is exact
  CHECK(running.dtype() == DType::Float64);
  CHECK(toy.named_buffers()[0].second.dtype() == DType::Int64);  // integer buffers keep their type
  for (Device d : test::devices()) {
    CAPTURE(d);
    toy.to(d);
    CHECK(w.device() == d);
    CHECK(running.device() == d);
    CHECK(w.grad().device() == d);
    check_close(w, before, 0, 0, "values survive the move");
    // The moved handles are the ones the graph reaches: a backward fills w's own gradient.
    toy.zero_grad();
    CHECK(!w.grad().defined());
    Tensor x = test::random({2, 4, 6, 5}, 3).to(d);
    sum(toy.head->forward(toy.body->forward(x))).backward();
    REQUIRE(w.grad().defined());
    CHECK(w.grad().device() == d);
    toy.zero_grad(false);
    check_close(w.grad(), zeros_like(w.grad()), 0, 0, "zero_grad(false) zeroes");
  }
  toy.to(Device::cpu());
  CHECK(w.device() == Device::cpu());
}

TEST_CASE("nn: parameter groups put decay on conv weights only") {
  models::ResNetConfig cfg;
  cfg.depth = 18;
  cfg.width_mult = 1.0 / 16;
  models::ResNet net(cfg);
  auto groups = nn::parameter_groups(net, 0.01, 0.9, 1e-4);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 1e-4);
  CHECK(groups[1].weight_decay == 0.0);
  for (auto& g : groups) {
    CHECK(g.lr == 0.01);
    CHECK(g.momentum == 0.9);
  }
  // Independently of the roles: decay exactly on the 4-D tensors, everything else exempt, and every
  // parameter in exactly one group.
  int64_t four_d = 0, other = 0;
  for (auto& [name, p] : net.named_parameters()) (p.dim() == 4 ? four_d : other) += 1;
  CHECK(static_cast<int64_t>(groups[0].params.size()) == four_d);
  CHECK(static_cast<int64_t>(groups[1].params.size()) == other);
  for (auto& p : groups[0].params) CHECK(p.dim() == 4);
  for (auto& p : groups[1].params) CHECK(p.dim() == 1);
  // The no-decay group holds the GN γ/β of every norm plus the C6/C7 biases.
  int64_t norms = 0;
  for (auto& [name, m] : net.named_modules()) norms += dynamic_cast<nn::GroupNorm*>(m) != nullptr;
  CHECK(static_cast<int64_t>(groups[1].params.size()) == 2 * norms + 2);
  optim::SGD sgd(groups);  // SGD accepts them: every parameter a floating leaf in exactly one group
  CHECK(sgd.num_groups() == 2);
}

TEST_CASE("nn: initializers have the stated statistics and follow the generator") {
  // Kaiming fan_out on a [256, 128, 3, 3] weight: std sqrt(2 / (256·9)) = 0.02946. With n = 294,912
  // draws the sample std has relative spread 1/sqrt(2n) = 0.0013 and the mean spread std/sqrt(n);
  // tolerances of 1% and 5 spreads are about 7σ and 5σ.
  Tensor w = empty({256, 128, 3, 3});
  Generator gen(42);
  nn::init::kaiming_normal_(w, gen);
  const auto v = test::values(w);
  const double n = static_cast<double>(v.size());
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double var = 0.0;
  for (double x : v) var += (x - mean) * (x - mean);
  const double sd = std::sqrt(var / (n - 1));
  const double expected_sd = std::sqrt(2.0 / (256 * 9));
  CHECK(std::abs(sd / expected_sd - 1.0) < 0.01);
  CHECK(std::abs(mean) < 5 * expected_sd / std::sqrt(n));
  CHECK(nn::init::fan(w, nn::init::FanMode::fan_in) == 128 * 9);
  CHECK(nn::init::fan(w, nn::init::FanMode::fan_out) == 256 * 9);

  // fan_in mode on the same shape: std sqrt(2 / (128·9)).
  Tensor w_in = empty({256, 128, 3, 3});
  nn::init::kaiming_normal_(w_in, gen, nn::init::FanMode::fan_in);
  const auto vi = test::values(w_in);
  double sq = 0.0;
  for (double x : vi) sq += x * x;
  CHECK(std::abs(std::sqrt(sq / n) / std::sqrt(2.0 / (128 * 9)) - 1.0) < 0.01);

  // normal_(3, 0.5) on a parameter that requires grad (the guard lets it write).
  Tensor p = zeros({100000}).set_requires_grad(true);
  nn::init::normal_(p, gen, 3.0, 0.5);
  const auto pv = test::values(p);
  const double pm = std::accumulate(pv.begin(), pv.end(), 0.0) / pv.size();
  double pvar = 0.0;
  for (double x : pv) pvar += (x - pm) * (x - pm);
  CHECK(std::abs(pm - 3.0) < 5 * 0.5 / std::sqrt(1e5));
  CHECK(std::abs(std::sqrt(pvar / pv.size()) / 0.5 - 1.0) < 0.015);  // relative spread 0.0022, ~7σ

  // The same seed gives the same numbers; the generator advances between draws.
  Tensor a = empty({64, 8}), b = empty({64, 8});
  Generator g1(7), g2(7);
  nn::init::normal_(a, g1);
  nn::init::normal_(b, g2);
  check_close(a, b, 0, 0, "same seed");
  nn::init::normal_(b, g2);
  CHECK(test::values(a) != test::values(b));

  // constant_ and the focal prior: sigmoid(−log((1−π)/π)) = π.
  Tensor c = empty({5}).set_requires_grad(true);
  nn::init::constant_(c, -2.5);
  check_close(c, std::vector<double>(5, -2.5), 0, 0, "constant_");
  CHECK(nn::init::prior_bias(0.01) == doctest::Approx(-4.59511985013459).epsilon(1e-14));
  nn::init::prior_bias_(c, 0.01);
  check_close(sigmoid(c), std::vector<double>(5, 0.01), 1e-6, 0, "prior bias");  // float32 rounding of −4.595
  CHECK_THROWS_WITH_AS(nn::init::prior_bias(1.0), doctest::Contains("[init] the prior must lie in (0, 1)"), Error);
  CHECK_THROWS_WITH_AS(nn::init::kaiming_normal_(empty({5}), gen), doctest::Contains("[init] fan needs"), Error);
}

TEST_CASE("nn: BasicBlock and Bottleneck equal the same computation written with raw ops") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Tolerance 1e-12: float64 throughout; the fused GN kernel and the composite definition sum in
    // different orders, a few ulps on values of order 10.
    const double tol = 1e-12;
    // Non-contiguous input: a transposed view, 7×9 spatial so no size is a multiple of anything.
    Tensor x = test::random({2, 6, 9, 7}, 5).to(d).transpose(2, 3);

    SUBCASE("BasicBlock with projection, GN") {
      nn::BasicBlock b(6, 8, 2, nn::NormConfig::group(4), DType::Float64);
      test::randomize_parameters(b, 21);
      b.to(d);
      auto ds_conv = std::dynamic_pointer_cast<nn::Conv2d>((*b.downsample)[0]);
      auto ds_norm = std::dynamic_pointer_cast<nn::GroupNorm>((*b.downsample)[1]);
      Tensor y = relu(gn_ref(conv2d(x, b.conv1->weight, Tensor(), conv_params(2, 1)), b.norm1, 4));
      y = gn_ref(conv2d(y, b.conv2->weight, Tensor(), conv_params(1, 1)), b.norm2, 4);
      Tensor sc = gn_ref(conv2d(x, ds_conv->weight, Tensor(), conv_params(2, 0)), ds_norm, 4);
      Tensor expected = relu(add(y, sc));
      CHECK(expected.shape() == Shape{2, 8, 4, 5});
      check_close(b.forward(x), expected, tol, tol, "basic block");
    }
    SUBCASE("BasicBlock identity shortcut, no norm") {
      nn::BasicBlock b(6, 6, 1, nn::NormConfig::none(), DType::Float64);
      test::randomize_parameters(b, 22);
      b.to(d);
      CHECK(!b.downsample);
      Tensor y = relu(conv2d(x, b.conv1->weight, b.conv1->bias, conv_params(1, 1)));
      y = conv2d(y, b.conv2->weight, b.conv2->bias, conv_params(1, 1));
      check_close(b.forward(x), relu(add(y, x)), tol, tol, "basic block without norm");
    }
    SUBCASE("Bottleneck with projection, GN") {
      nn::Bottleneck b(6, 4, 2, nn::NormConfig::group(2), DType::Float64);
      test::randomize_parameters(b, 23);
      b.to(d);
      auto ds_conv = std::dynamic_pointer_cast<nn::Conv2d>((*b.downsample)[0]);
      auto ds_norm = std::dynamic_pointer_cast<nn::GroupNorm>((*b.downsample)[1]);
      Tensor y = relu(gn_ref(conv2d(x, b.conv1->weight, Tensor(), conv_params(1, 0)), b.norm1, 2));
      y = relu(gn_ref(conv2d(y, b.conv2->weight, Tensor(), conv_params(2, 1)), b.norm2, 2));  // stride on the 3x3
      y = gn_ref(conv2d(y, b.conv3->weight, Tensor(), conv_params(1, 0)), b.norm3, 2);
      Tensor sc = gn_ref(conv2d(x, ds_conv->weight, Tensor(), conv_params(2, 0)), ds_norm, 2);
      Tensor expected = relu(add(y, sc));
      CHECK(expected.shape() == Shape{2, 16, 4, 5});
      check_close(b.forward(x), expected, tol, tol, "bottleneck");
    }
    SUBCASE("Bottleneck identity shortcut") {
      Tensor x16 = test::random({1, 16, 5, 6}, 6).to(d);
      nn::Bottleneck b(16, 4, 1, nn::NormConfig::group(2), DType::Float64);
      test::randomize_parameters(b, 24);
      b.to(d);
      CHECK(!b.downsample);
      Tensor y = relu(gn_ref(conv2d(x16, b.conv1->weight, Tensor(), conv_params(1, 0)), b.norm1, 2));
      y = relu(gn_ref(conv2d(y, b.conv2->weight, Tensor(), conv_params(1, 1)), b.norm2, 2));
      y = gn_ref(conv2d(y, b.conv3->weight, Tensor(), conv_params(1, 0)), b.norm3, 2);
      check_close(b.forward(x16), relu(add(y, x16)), tol, tol, "bottleneck identity");
    }
  }
}

TEST_CASE("nn: BasicBlock gradients match central differences in float64") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    nn::BasicBlock b(2, 4, 2, nn::NormConfig::group(2), DType::Float64);
    test::randomize_parameters(b, 31);
    b.to(d);
    auto ds_conv = std::dynamic_pointer_cast<nn::Conv2d>((*b.downsample)[0]);
    auto ds_norm = std::dynamic_pointer_cast<nn::GroupNorm>((*b.downsample)[1]);
    // The forward reads the public handles, so pointing them at gradcheck's leaves checks the
    // gradient of the input and of every parameter through the block's own wiring.
    std::vector<Tensor*> slots{&b.conv1->weight, &b.norm1->weight, &b.norm1->bias,
                               &b.conv2->weight, &b.norm2->weight, &b.norm2->bias,
                               &ds_conv->weight, &ds_norm->weight, &ds_norm->bias};
    std::vector<Tensor> inputs{test::random({1, 2, 5, 6}, 32)};
    for (Tensor* s : slots) inputs.push_back(s->to(Device::cpu()).detach().clone());
    auto f = [&](const std::vector<Tensor>& in) {
      for (size_t k = 0; k < slots.size(); ++k) *slots[k] = in[k + 1];
      return b.forward(in[0]);
    };
    // Default tolerances (test_util: 1e-6 relative); the random values keep ReLU inputs away from 0
    // by far more than the 1e-6 step.
    test::gradcheck(f, inputs, d);
  }
}

TEST_CASE("nn: Bottleneck gradients match central differences in float64") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    nn::Bottleneck b(4, 2, 2, nn::NormConfig::group(2), DType::Float64);
    test::randomize_parameters(b, 41);
    b.to(d);
    auto ds_conv = std::dynamic_pointer_cast<nn::Conv2d>((*b.downsample)[0]);
    auto ds_norm = std::dynamic_pointer_cast<nn::GroupNorm>((*b.downsample)[1]);
    std::vector<Tensor*> slots{&b.conv1->weight, &b.norm1->weight, &b.norm1->bias, &b.conv2->weight,
                               &b.norm2->weight, &b.norm2->bias,  &b.conv3->weight, &b.norm3->weight,
                               &b.norm3->bias,   &ds_conv->weight, &ds_norm->weight, &ds_norm->bias};
    std::vector<Tensor> inputs{test::random({1, 4, 5, 4}, 42)};
    for (Tensor* s : slots) inputs.push_back(s->to(Device::cpu()).detach().clone());
    auto f = [&](const std::vector<Tensor>& in) {
      for (size_t k = 0; k < slots.size(); ++k) *slots[k] = in[k + 1];
      return b.forward(in[0]);
    };
    test::gradcheck(f, inputs, d);  // tolerances as for the BasicBlock above
  }
}

TEST_CASE("resnet: feature maps halve with ceil from stride 4 to 128") {
  struct Case {
    int depth;
    models::Stem stem;
    std::vector<int64_t> channels;  // C2..C7 at width 1/16
  };
  // Width 1/16: C2..C5 = 64/128/256/512 · 1/16 (Basic) or 256/512/1024/2048 · 1/16 (Bottleneck);
  // C6 = C5/2, C7 = C6/4.
  const std::vector<Case> cases{{18, models::Stem::isrn, {4, 8, 16, 32, 16, 4}},
                                {34, models::Stem::resnet, {4, 8, 16, 32, 16, 4}},
                                {50, models::Stem::isrn, {16, 32, 64, 128, 64, 16}}};
  const std::vector<std::pair<int64_t, int64_t>> sizes{{256, 256}, {250, 190}, {33, 1}};
  for (const auto& c : cases) {
    CAPTURE(c.depth);
    models::ResNetConfig cfg;
    cfg.depth = c.depth;
    cfg.stem = c.stem;
    cfg.width_mult = 1.0 / 16;
    models::ResNet net(cfg);
    CHECK(net.out_channels() == c.channels);
    for (Device d : test::devices()) {
      net.to(d);
      for (auto [h, w] : sizes) {
        CAPTURE(h);
        CAPTURE(w);
        NoGradGuard no_grad;
        auto feats = net.forward(test::random({1, 3, h, w}, 8, -1, 1, DType::Float32).to(d));
        REQUIRE(feats.size() == 6);
        for (int l = 0; l < 6; ++l) {
          CAPTURE(l + 2);
          CHECK(feats[l].shape() == Shape{1, c.channels[l], ceil_halve(h, l + 2), ceil_halve(w, l + 2)});
        }
      }
    }
  }
  // The SPEC sanity figure at 1024²: 256, 128, 64, 32, 16, 8 (the thin ISRN-stem ResNet-18 keeps it quick).
  models::ResNetConfig cfg;
  cfg.depth = 18;
  cfg.width_mult = 1.0 / 16;
  models::ResNet net(cfg);
  NoGradGuard no_grad;
  auto feats = net.forward(zeros({1, 3, 1024, 1024}));
  const int64_t expected[6] = {256, 128, 64, 32, 16, 8};
  for (int l = 0; l < 6; ++l) CHECK(feats[l].shape() == Shape{1, net.out_channels()[l], expected[l], expected[l]});

  cfg.depth = 101;
  CHECK_THROWS_WITH_AS(models::ResNet{cfg}, doctest::Contains("[resnet] depth must be 18, 34 or 50"), Error);
  CHECK_THROWS_WITH_AS(net.forward(zeros({1, 1, 8, 8})), doctest::Contains("[resnet] expects an NCHW image"), Error);
}

TEST_CASE("resnet: ResNet-50 width 1 has torchvision's count adjusted for the ISRN stem and C6/C7") {
  // Counted from the layer list. A normalization (BN in torchvision, GN here) holds 2·C parameters.
  auto conv = [](int64_t in, int64_t out, int64_t k) { return in * out * k * k; };
  auto norm = [](int64_t c) { return 2 * c; };
  auto bottleneck = [&](int64_t in, int64_t planes, bool projection) {
    int64_t n = conv(in, planes, 1) + norm(planes) + conv(planes, planes, 3) + norm(planes) +
                conv(planes, 4 * planes, 1) + norm(4 * planes);
    if (projection) n += conv(in, 4 * planes, 1) + norm(4 * planes);
    return n;
  };
  auto basic = [&](int64_t in, int64_t planes, bool projection) {
    int64_t n = conv(in, planes, 3) + norm(planes) + conv(planes, planes, 3) + norm(planes);
    if (projection) n += conv(in, planes, 1) + norm(planes);
    return n;
  };
  auto stages = [&](int64_t in) {
    int64_t n = 0;
    const int64_t planes[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3};
    for (int s = 0; s < 4; ++s)
      for (int64_t b = 0; b < blocks[s]; ++b) {
        n += bottleneck(in, planes[s], b == 0);
        in = 4 * planes[s];
      }
    return n;
  };
  // torchvision resnet50: stem conv 7x7 3→64 + BN, the stages, fc 2048→1000. Its documented total is
  // 25,557,032, which checks the counting above.
  const int64_t torchvision_backbone = conv(3, 64, 7) + norm(64) + stages(64);
  CHECK(torchvision_backbone + 2048 * 1000 + 1000 == 25557032);
  // ISRN: stem conv 3→16 + GN, BasicBlock(16→16), BasicBlock(16→32, projection), layer1 fed 32 channels,
  // no fc, plus C6 (2048→1024, 3x3, bias) and C7 (1024→256, 3x3, bias).
  const int64_t expected = conv(3, 16, 7) + norm(16) + basic(16, 16, false) + basic(16, 32, true) + stages(32) +
                           conv(2048, 1024, 3) + 1024 + conv(1024, 256, 3) + 256;
  models::ResNet net(models::ResNetConfig{});
  MESSAGE("ResNet-50 (ISRN stem, GN16, C6/C7) parameters: " << net.num_parameters() << " (torchvision resnet50 "
          "without fc: " << torchvision_backbone << ")");
  CHECK(net.num_parameters() == expected);
  // The same network with the original stem and without C6/C7 is torchvision's backbone exactly.
  models::ResNetConfig tv;
  tv.stem = models::Stem::resnet;
  tv.extra_levels = false;
  CHECK(models::ResNet(tv).num_parameters() == torchvision_backbone);
}

TEST_CASE("resnet: initialization follows SPEC and the generator") {
  models::ResNetConfig cfg;
  cfg.depth = 50;
  cfg.width_mult = 0.25;
  Generator gen_a(99), gen_b(99);
  models::ResNet net(cfg, gen_a), twin(cfg, gen_b);
  const auto params = net.named_parameters_with_roles();
  const auto twin_params = twin.named_parameters();
  int checked = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p, role] = params[i];
    CAPTURE(name);
    check_close(p, twin_params[i].second, 0, 0, "same seed, same network");
    const auto v = test::values(p);
    if (role == nn::ParamRole::norm) {
      const bool gamma = name.substr(name.size() - 6) == "weight";
      check_close(p, std::vector<double>(v.size(), gamma ? 1.0 : 0.0), 0, 0, "GN starts at γ = 1, β = 0");
      continue;
    }
    if (role == nn::ParamRole::bias) {
      check_close(p, std::vector<double>(v.size(), 0.0), 0, 0, "biases start at 0");
      continue;
    }
    // Sample std against the stated one: relative spread 1/sqrt(2n) ≤ 0.71% for n ≥ 10,000, so a
    // 5% tolerance is about 7σ; smaller tensors are skipped as too noisy.
    if (v.size() < 10000) continue;
    const bool extra = name.rfind("c6.", 0) == 0 || name.rfind("c7.", 0) == 0;
    const double expected = extra ? 0.01 : std::sqrt(2.0 / static_cast<double>(nn::init::fan(p, nn::init::FanMode::fan_out)));
    double sq = 0.0;
    for (double x : v) sq += x * x;
    CHECK(std::abs(std::sqrt(sq / v.size()) / expected - 1.0) < 0.05);
    ++checked;
  }
  CHECK(checked > 20);  // the test looked at most of the convs, C6 and C7 among them
  CHECK(net.find("c6.weight").dim() == 4);
  // A fresh default Conv2d is a new layer: N(0, 0.01), bias 0.
  Generator gen(5);
  nn::Conv2d fresh(nn::Conv2dOptions::square(64, 64, 3, 1, 1), gen);
  const auto fv = test::values(fresh.weight);
  double sq = 0.0;
  for (double x : fv) sq += x * x;
  CHECK(std::abs(std::sqrt(sq / fv.size()) / 0.01 - 1.0) < 0.05);  // n = 36,864: 5% ≈ 13σ
  check_close(fresh.bias, std::vector<double>(64, 0.0), 0, 0, "bias 0");
}

TEST_CASE("nn: blocks and groups without a norm; empty batches pass through") {
  models::ResNetConfig cfg;
  cfg.depth = 18;
  cfg.width_mult = 1.0 / 16;
  cfg.norm = nn::NormConfig::none();
  models::ResNet net(cfg);
  for (auto& [name, m] : net.named_modules()) CHECK_MESSAGE(dynamic_cast<nn::GroupNorm*>(m) == nullptr, name);
  // Without a norm every conv carries a bias, and all biases go to the no-decay group.
  auto groups = nn::parameter_groups(net, 0.1, 0.0, 1e-4);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].params.size() == groups[1].params.size());
  for (auto& p : groups[1].params) CHECK(p.dim() == 1);
  for (Device d : test::devices()) {
    CAPTURE(d);
    net.to(d);
    NoGradGuard no_grad;
    auto feats = net.forward(zeros({0, 3, 40, 24}, TensorOptions().device(d)));
    REQUIRE(feats.size() == 6);
    CHECK(feats[0].shape() == Shape{0, 4, 10, 6});
    CHECK(feats[5].shape() == Shape{0, 4, 1, 1});
  }
  CHECK_THROWS_WITH_AS(nn::GroupNorm(16, 24), doctest::Contains("[group_norm module] 24 channels do not split into 16"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::Conv2d(nn::Conv2dOptions::square(0, 4, 3)), doctest::Contains("[conv2d module] channel"),
                       Error);
}

TEST_CASE("resnet: a backward reaches every registered parameter, and only registered ones are used") {
  for (int depth : {18, 50}) {
    CAPTURE(depth);
    models::ResNetConfig cfg;
    cfg.depth = depth;
    cfg.width_mult = 1.0 / 16;
    models::ResNet net(cfg);
    for (Device d : test::devices()) {
      CAPTURE(d);
      net.to(d);
      net.zero_grad();
      auto feats = net.forward(test::random({2, 3, 37, 29}, 9, -1, 1, DType::Float32).to(d));
      Tensor loss = sum(feats[0]);
      for (size_t l = 1; l < feats.size(); ++l) loss = add(loss, sum(feats[l]));
      loss.backward();
      for (auto& [name, p] : net.named_parameters()) {
        CAPTURE(name);
        REQUIRE(p.grad().defined());
        const auto g = test::values(p.grad());
        double norm = 0.0;
        for (double x : g) norm += x * x;
        CHECK(std::isfinite(norm));
        CHECK(norm > 0.0);
      }
    }
  }
}
