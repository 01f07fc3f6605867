// FPN, first-step features, RFE and the detection head (SPEC §3, §4): map sizes from a real backbone,
// parameter names and counts, forwards against the same computation written with raw ops in
// float64, the flattening order, the initial face probability, an RFE gradient check, and the
// separate-step-1-predictors switch.
#include <cmath>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "isrn/models/fpn.hpp"
#include "isrn/models/head.hpp"
#include "isrn/models/resnet.hpp"
#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

std::vector<std::string> parameter_names(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, t] : m.named_parameters()) out.push_back(name);
  return out;
}

int64_t ceil_halve(int64_t n, int k) {
  for (int i = 0; i < k; ++i) n = (n + 1) / 2;
  return n;
}

Conv2dParams conv_params(int64_t pad_h, int64_t pad_w, int64_t stride = 1) {
  Conv2dParams p;
  p.stride = {stride, stride};
  p.padding = {pad_h, pad_h, pad_w, pad_w};
  return p;
}

// conv (+ GN with `groups`, 0 for none) (+ ReLU), from the module's tensors but the test's own
// padding, group count and wiring.
Tensor conv_norm_ref(const Tensor& x, const models::ConvNorm& m, int64_t pad_h, int64_t pad_w, int64_t groups,
                     bool with_relu) {
  Tensor y = conv2d(x, m.conv->weight, m.conv->bias, conv_params(pad_h, pad_w));
  if (groups > 0) y = group_norm_composite(y, groups, m.norm->weight, m.norm->bias, 1e-5);
  return with_relu ? relu(y) : y;
}

const models::ConvNorm& unit(const models::RFE& rfe, int branch, size_t index) {
  return dynamic_cast<const models::ConvNorm&>(*(*rfe.branches[branch])[index]);
}

// RFE of SPEC §4.2 written out: the paddings are the test's own (kernel shapes are checked apart).
Tensor rfe_ref(const models::RFE& rfe, const Tensor& x, int64_t groups_in, int64_t groups_inter) {
  const int64_t pads[4][2] = {{0, 2}, {2, 0}, {0, 1}, {1, 0}};
  std::vector<Tensor> outs;
  for (int b = 0; b < 4; ++b) {
    Tensor y = conv_norm_ref(x, unit(rfe, b, 0), 0, 0, groups_inter, true);
    y = conv_norm_ref(y, unit(rfe, b, 1), pads[b][0], pads[b][1], groups_inter, true);
    outs.push_back(conv_norm_ref(y, unit(rfe, b, 2), 0, 0, groups_inter, true));
  }
  return add(conv_norm_ref(cat(outs, 1), *rfe.fuse, 0, 0, groups_in, true), x);
}

// Pointers to every conv/GN tensor of a module, for gradcheck to swap its leaves in.
std::vector<Tensor*> parameter_slots(nn::Module& m) {
  std::vector<Tensor*> slots;
  for (auto& [name, child] : m.named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(child)) {
      slots.push_back(&conv->weight);
      if (conv->bias.defined()) slots.push_back(&conv->bias);
    }
    if (auto* gn = dynamic_cast<nn::GroupNorm*>(child)) {
      slots.push_back(&gn->weight);
      slots.push_back(&gn->bias);
    }
  }
  return slots;
}

}  // namespace

TEST_CASE("fpn_head: sizes from a real backbone flow through FPN, first-step features and head") {
  // 128×96 halves evenly down to C5 (4×3); 99×70 makes every level a ceil-halving (C2 25×18, C3 13×9,
  // C4 7×5, C5 4×3), so an upsample to anything but the lateral's exact size would fail the add.
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{128, 96}, {99, 70}}) {
    CAPTURE(h);
    CAPTURE(w);
    models::ResNetConfig rc;
    rc.depth = 18;
    rc.width_mult = 1.0 / 16;
    models::ResNet net(rc);
    models::FPNConfig fc;
    fc.width_mult = 1.0 / 16;
    REQUIRE(fc.channels() == 16);
    models::FirstStepFeatures first(net.out_channels(), fc);
    models::FPN fpn(net.out_channels(), fc);
    models::HeadConfig hc;
    hc.channels = fc.channels();
    models::Head head(hc);

    Generator gen(7);
    const Tensor x = randn({2, 3, h, w}, {}, &gen);
    const auto c = net.forward(x);
    REQUIRE(c.size() == 6);
    const auto f1 = first.forward(c);
    const auto p = fpn.forward(c);
    REQUIRE(f1.size() == 6);
    REQUIRE(p.size() == 6);
    int64_t anchors = 0;
    for (int l = 0; l < 6; ++l) {
      CAPTURE(l + 2);
      const int64_t hl = ceil_halve(h, l + 2), wl = ceil_halve(w, l + 2);
      CHECK(c[l].size(2) == hl);
      CHECK(c[l].size(3) == wl);
      CHECK(f1[l].shape() == Shape{2, 16, hl, wl});
      CHECK(p[l].shape() == Shape{2, 16, hl, wl});
      anchors += hl * wl * 2;
    }
    for (int step : {1, 2}) {
      const auto out = head.forward(step == 1 ? f1 : p, step);
      REQUIRE(out.cls.size() == 6);
      REQUIRE(out.box.size() == 6);
      for (int l = 0; l < 6; ++l) {
        CHECK(out.cls[l].shape() == Shape{2, 2, p[l].size(2), p[l].size(3)});
        CHECK(out.box[l].shape() == Shape{2, 8, p[l].size(2), p[l].size(3)});
      }
      const auto flat = models::flatten_predictions(out, 2);
      CHECK(flat.logits.shape() == Shape{2, anchors});
      CHECK(flat.deltas.shape() == Shape{2, anchors, 4});
    }
  }
}

TEST_CASE("fpn_head: FPN and first-step features equal the computation written with raw ops") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Tolerance 1e-12: float64 throughout; the fused GN kernel and the composite sum in different orders.
    const double tol = 1e-12;
    const std::vector<int64_t> in_ch{3, 5, 6, 7, 4, 2};
    const int64_t sizes[6][2] = {{13, 11}, {7, 6}, {4, 3}, {2, 2}, {1, 1}, {1, 1}};
    std::vector<Tensor> c;
    for (int l = 0; l < 6; ++l) c.push_back(test::random({2, in_ch[l], sizes[l][0], sizes[l][1]}, 40 + l).to(d));
    c[0] = test::random({2, 3, 11, 13}, 40).to(d).transpose(2, 3);  // a non-contiguous C2

    struct Variant {
      const char* name;
      ResizeMode mode;
      models::P6Source p6;
      nn::NormConfig norm;
    };
    for (const Variant& v : {Variant{"bilinear, p6 from lateral, GN", ResizeMode::Bilinear,
                                     models::P6Source::lateral, nn::NormConfig::group(4)},
                             Variant{"nearest, p6 from p5, no norm", ResizeMode::Nearest, models::P6Source::p5,
                                     nn::NormConfig::none()}}) {
      CAPTURE(v.name);
      models::FPNConfig fc;
      fc.width_mult = 8.0 / 256;
      fc.upsample = v.mode;
      fc.p6_from = v.p6;
      fc.norm = v.norm;
      fc.dtype = DType::Float64;
      models::FPN fpn(in_ch, fc);
      models::FirstStepFeatures first(in_ch, fc);
      test::randomize_parameters(fpn, 50);
      test::randomize_parameters(first, 51);
      fpn.to(d);
      first.to(d);

      const auto f1 = first.forward(c);
      for (int l = 0; l < 6; ++l)
        check_close(f1[l], conv2d(c[l], first.convs[l]->weight, first.convs[l]->bias, conv_params(0, 0)), tol, tol,
                    "F1_" + std::to_string(l + 2));

      const bool bilinear = v.mode == ResizeMode::Bilinear;
      Tensor lat[4], s[4];
      for (int l = 0; l < 4; ++l) lat[l] = conv2d(c[l], fpn.laterals[l]->weight, fpn.laterals[l]->bias, conv_params(0, 0));
      s[3] = lat[3];
      for (int l = 2; l >= 0; --l)
        s[l] = add(resize(s[l + 1], sizes[l][0], sizes[l][1], v.mode, bilinear), lat[l]);
      const int64_t groups = v.norm.enabled() ? 4 : 0;
      std::vector<Tensor> expected;
      for (int l = 0; l < 4; ++l) expected.push_back(conv_norm_ref(s[l], *fpn.smooths[l], 1, 1, groups, false));
      const Tensor p6_src = v.p6 == models::P6Source::lateral ? lat[3] : expected[3];
      expected.push_back(conv2d(p6_src, fpn.p6->weight, fpn.p6->bias, conv_params(1, 1, 2)));
      expected.push_back(conv2d(expected[4], fpn.p7->weight, fpn.p7->bias, conv_params(1, 1, 2)));

      const auto p = fpn.forward(c);
      REQUIRE(p.size() == 6);
      for (int l = 0; l < 6; ++l) check_close(p[l], expected[l], tol, tol, "P" + std::to_string(l + 2));
    }
  }
}

TEST_CASE("fpn_head: parameter names, roles and counts") {
  const double width = 1.0 / 16;
  const int64_t ch = 16, inter = 4;
  models::FPNConfig fc;
  fc.width_mult = width;
  const std::vector<int64_t> in_ch{4, 8, 16, 32, 16, 4};
  models::FPN fpn(in_ch, fc);
  std::vector<std::string> expected;
  for (int l = 2; l <= 5; ++l)
    for (const char* t : {"weight", "bias"}) expected.push_back("lateral" + std::to_string(l) + "." + t);
  for (int l = 2; l <= 5; ++l)
    for (const char* t : {"conv.weight", "conv.bias", "norm.weight", "norm.bias"})
      expected.push_back("smooth" + std::to_string(l) + "." + t);
  for (const char* t : {"p6.weight", "p6.bias", "p7.weight", "p7.bias"}) expected.push_back(t);
  CHECK(parameter_names(fpn) == expected);
  CHECK(fpn.find("p6.weight").shape() == Shape{ch, ch, 3, 3});
  CHECK(fpn.find("lateral3.weight").shape() == Shape{ch, 8, 1, 1});

  models::FirstStepFeatures first(in_ch, fc);
  expected.clear();
  for (int l = 2; l <= 7; ++l)
    for (const char* t : {"weight", "bias"}) expected.push_back("conv" + std::to_string(l) + "." + t);
  CHECK(parameter_names(first) == expected);
  CHECK(first.find("conv6.weight").shape() == Shape{ch, 16, 1, 1});

  models::HeadConfig hc;
  hc.channels = ch;
  models::Head head(hc);
  const std::vector<std::pair<std::string, Shape>> probes{
      {"cls_subnet.conv1.conv.weight", {ch, ch, 3, 3}},
      {"cls_subnet.conv1.norm.weight", {ch}},
      {"cls_subnet.rfe.branch0.0.conv.weight", {inter, ch, 1, 1}},
      {"cls_subnet.rfe.branch0.1.conv.weight", {inter, inter, 1, 5}},
      {"cls_subnet.rfe.branch1.1.conv.weight", {inter, inter, 5, 1}},
      {"cls_subnet.rfe.branch2.1.conv.weight", {inter, inter, 1, 3}},
      {"cls_subnet.rfe.branch3.1.conv.weight", {inter, inter, 3, 1}},
      {"cls_subnet.rfe.branch3.2.norm.bias", {inter}},
      {"cls_subnet.rfe.fuse.conv.weight", {ch, 4 * inter, 1, 1}},
      {"box_subnet.conv2.conv.bias", {ch}},
      {"cls_pred.weight", {2, ch, 1, 1}},
      {"cls_pred.bias", {2}},
      {"box_pred.weight", {8, ch, 1, 1}},
      {"box_pred.bias", {8}}};
  for (const auto& [name, shape] : probes) {
    CAPTURE(name);
    REQUIRE(head.contains(name));
    CHECK(head.find(name).shape() == shape);
  }
  CHECK_FALSE(head.contains("cls_pred_step1.weight"));
  // Roles drive weight decay: conv weights decay, conv biases and GN parameters do not.
  for (const auto& p : head.named_parameters_with_roles()) {
    CAPTURE(p.name);
    const bool gn = p.name.find(".norm.") != std::string::npos;
    const bool bias = p.name.size() > 5 && p.name.substr(p.name.size() - 5) == ".bias";
    CHECK(p.role == (gn ? nn::ParamRole::norm : bias ? nn::ParamRole::bias : nn::ParamRole::weight));
  }
  // Counted from SPEC §4: per subnet two 3x3 convs with GN, RFE (4 branches of three convs with GN,
  // fuse 1x1 with GN); predictors 1x1 to A and 4A.
  const int64_t conv3 = 9 * ch * ch + ch + 2 * ch;
  const int64_t branch_asym[4] = {5, 5, 3, 3};
  int64_t rfe = 0;
  for (int64_t k : branch_asym)
    rfe += (ch * inter + inter + 2 * inter) + (k * inter * inter + inter + 2 * inter) + (inter * inter + inter + 2 * inter);
  rfe += 4 * inter * ch + ch + 2 * ch;
  const int64_t subnet = 2 * conv3 + rfe;
  CHECK(head.num_parameters() == 2 * subnet + (ch * 2 + 2) + (ch * 8 + 8));

  // Without a norm the GN entries disappear and nothing else changes.
  hc.norm = nn::NormConfig::none();
  models::Head plain(hc);
  for (const auto& name : parameter_names(plain)) CHECK(name.find(".norm.") == std::string::npos);
  CHECK(plain.contains("cls_subnet.rfe.branch0.0.conv.weight"));
  int64_t gn_params = 0;
  for (const auto& p : head.named_parameters_with_roles())
    if (p.role == nn::ParamRole::norm) gn_params += p.tensor.numel();
  CHECK(plain.num_parameters() == head.num_parameters() - gn_params);
}

TEST_CASE("fpn_head: RFE equals the computation written with raw ops") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // Tolerance 1e-12: float64 throughout; only summation order differs from the reference.
    const double tol = 1e-12;
    // 9×7 spatial (transposed view: non-contiguous), 12 channels → inter 3; group(4): GN 4 groups on
    // 12 channels, gcd(4, 3) = 1 group on the 3 inter channels.
    const Tensor x = test::random({2, 12, 7, 9}, 60).to(d).transpose(2, 3);
    SUBCASE("GN") {
      models::RFE rfe(12, nn::NormConfig::group(4), DType::Float64);
      CHECK(rfe.inter_channels() == 3);
      test::randomize_parameters(rfe, 61);
      rfe.to(d);
      const Tensor y = rfe.forward(x);
      CHECK(y.shape() == Shape{2, 12, 9, 7});
      check_close(y, rfe_ref(rfe, x, 4, 1), tol, tol, "rfe with GN");
    }
    SUBCASE("no norm") {
      models::RFE rfe(12, nn::NormConfig::none(), DType::Float64);
      test::randomize_parameters(rfe, 62);
      rfe.to(d);
      check_close(rfe.forward(x), rfe_ref(rfe, x, 0, 0), tol, tol, "rfe without norm");
    }
    SUBCASE("bad input") {
      models::RFE rfe(12, nn::NormConfig::none(), DType::Float64);
      rfe.to(d);
      CHECK_THROWS_WITH_AS(rfe.forward(test::random({1, 8, 3, 3}, 1).to(d)),
                           doctest::Contains("[rfe] expects NCHW with 12 channels"), Error);
      CHECK_THROWS_WITH_AS(models::RFE(3, nn::NormConfig::none()), doctest::Contains("[rfe] needs at least 4 channels"),
                           Error);
    }
  }
}

TEST_CASE("fpn_head: RFE gradients match central differences in float64") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    for (const nn::NormConfig& norm : {nn::NormConfig::group(2), nn::NormConfig::none()}) {
      CAPTURE(norm.enabled());
      models::RFE rfe(8, norm, DType::Float64);
      test::randomize_parameters(rfe, 70);
      rfe.to(d);
      // The forward reads the public handles, so pointing them at gradcheck's leaves checks the
      // gradient of the input and of every RFE parameter through the block's own wiring.
      std::vector<Tensor*> slots = parameter_slots(rfe);
      CHECK(slots.size() == rfe.parameters().size());
      std::vector<Tensor> inputs{test::random({1, 8, 4, 5}, 71)};
      for (Tensor* s : slots) inputs.push_back(s->to(Device::cpu()).detach().clone());
      auto f = [&](const std::vector<Tensor>& in) {
        for (size_t k = 0; k < slots.size(); ++k) *slots[k] = in[k + 1];
        return rfe.forward(in[0]);
      };
      // Default tolerances (test_util: 1e-6 relative); with random parameters of scale 0.3 the
      // ReLU inputs sit far from 0 compared with the 1e-6 step.
      test::gradcheck(f, inputs, d);
    }
  }
}

TEST_CASE("fpn_head: flatten_predictions orders anchors as (y·W + x)·A + a with box channel 4a + k") {
  const int64_t batch = 2, A = 2;
  const int64_t sizes[2][2] = {{2, 3}, {3, 1}};
  // Every value names its origin: batch, level, channel, y, x (all < 10 except the channel < 100).
  auto code = [](int64_t b, int64_t l, int64_t ch, int64_t y, int64_t x) {
    return static_cast<double>(b * 1000000 + l * 100000 + ch * 100 + y * 10 + x);
  };
  std::vector<Tensor> cls, box;
  for (int64_t l = 0; l < 2; ++l) {
    const int64_t H = sizes[l][0], W = sizes[l][1];
    std::vector<double> c, bx;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t ch = 0; ch < A; ++ch)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) c.push_back(code(b, l, ch, y, x));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t ch = 0; ch < 4 * A; ++ch)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) bx.push_back(code(b, l, ch, y, x));
    cls.push_back(from_vector(c, {batch, A, H, W}));
    box.push_back(from_vector(bx, {batch, 4 * A, H, W}));
  }
  // A non-contiguous level: the same values reached through a transposed copy.
  cls[0] = cls[0].transpose(2, 3).contiguous().transpose(2, 3);
  REQUIRE_FALSE(cls[0].is_contiguous());

  std::vector<double> want_logits, want_deltas;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t y = 0; y < sizes[l][0]; ++y)
        for (int64_t x = 0; x < sizes[l][1]; ++x)
          for (int64_t a = 0; a < A; ++a) {
            want_logits.push_back(code(b, l, a, y, x));
            for (int64_t k = 0; k < 4; ++k) want_deltas.push_back(code(b, l, 4 * a + k, y, x));
          }
  const auto flat = models::flatten_predictions(cls, box, A);
  const int64_t total = (2 * 3 + 3 * 1) * A;
  REQUIRE(flat.logits.shape() == Shape{batch, total});
  REQUIRE(flat.deltas.shape() == Shape{batch, total, 4});
  // Exact: the flattening only moves values.
  check_close(flat.logits, want_logits, 0.0, 0.0, "logits");
  check_close(flat.deltas, want_deltas, 0.0, 0.0, "deltas");

  CHECK_THROWS_WITH_AS(models::flatten_predictions(cls, box, 3), doctest::Contains("[flatten_predictions] cls level 0"),
                       Error);
  CHECK_THROWS_WITH_AS(models::flatten_predictions(cls, {box[0], box[0]}, A),
                       doctest::Contains("[flatten_predictions] box level 1"), Error);
  CHECK_THROWS_WITH_AS(models::flatten_predictions(cls, {box[0]}, A),
                       doctest::Contains("[flatten_predictions] needs the same non-zero number"), Error);
}

TEST_CASE("fpn_head: the initial face probability is the prior 0.01") {
  models::HeadConfig hc;
  hc.channels = 16;
  models::Head head(hc);
  // SPEC §4.1: −log((1 − π)/π) = −log 99 for π = 0.01. Float32 storage: 1e-6 relative.
  check_close(head.cls_pred->bias, std::vector<double>{-std::log(99.0), -std::log(99.0)}, 1e-6, 0.0, "cls bias");
  check_close(head.box_pred->bias, std::vector<double>(8, 0.0), 0.0, 0.0, "box bias");
  Generator gen(80);
  const std::vector<Tensor> features{randn({2, 16, 21, 17}, {}, &gen), randn({2, 16, 9, 11}, {}, &gen),
                                     randn({2, 16, 3, 2}, {}, &gen)};
  for (int step : {1, 2}) {
    const auto flat = models::flatten_predictions(head.forward(features, step), 2);
    const double mean_probability = test::values(isrn::mean(sigmoid(flat.logits)))[0];
    CAPTURE(mean_probability);
    // Tolerance 1e-3: the predictor weights N(0, 0.01) over 16 post-GN-ReLU channels (mean ≈ 0.4)
    // shift the mean logit by about 0.01·0.4·√16 ≈ 0.016 per anchor, i.e. the mean probability by
    // σ'(−4.6)·0.016 ≈ 1.6e-4 (one standard deviation); 1e-3 is 6σ, and a missing or wrong-sign
    // prior (0.5, 0.99) or π = 0.02 would fail it.
    CHECK(std::abs(mean_probability - 0.01) < 1e-3);
  }
}

TEST_CASE("fpn_head: separate_step1_predictors adds exactly the step-1 predictor parameters") {
  const int64_t ch = 16;
  models::HeadConfig hc;
  hc.channels = ch;
  Generator gen_a(90), gen_b(90);
  models::Head shared(hc, gen_a);
  hc.separate_step1_predictors = true;
  models::Head separate(hc, gen_b);

  auto names = parameter_names(shared);
  for (const char* n : {"cls_pred_step1.weight", "cls_pred_step1.bias", "box_pred_step1.weight", "box_pred_step1.bias"})
    names.push_back(n);
  CHECK(parameter_names(separate) == names);
  CHECK(separate.num_parameters() - shared.num_parameters() == (ch * 2 + 2) + (ch * 8 + 8));
  check_close(separate.cls_pred_step1->bias, std::vector<double>(2, -std::log(99.0)), 1e-6, 0.0, "step-1 prior");

  // Randomized the same way, so step-1 and step-2 predictors differ in value as well as identity.
  test::randomize_parameters(shared, 91);
  test::randomize_parameters(separate, 91);
  Generator gen(92);
  const std::vector<Tensor> features{randn({1, ch, 5, 4}, {}, &gen), randn({1, ch, 3, 2}, {}, &gen)};
  const auto s1 = shared.forward(features, 1), s2 = shared.forward(features, 2);
  const auto p1 = separate.forward(features, 1), p2 = separate.forward(features, 2);
  for (size_t l = 0; l < features.size(); ++l) {
    // Shared: the step makes no difference (bit-identical: same ops on the same values).
    check_close(s1.cls[l], s2.cls[l], 0.0, 0.0, "shared cls");
    check_close(s1.box[l], s2.box[l], 0.0, 0.0, "shared box");
    // Separate: step 2 uses the shared predictors (the same numbers as the shared head, whose
    // parameters were drawn in the same order), step 1 its own.
    check_close(p2.cls[l], s2.cls[l], 0.0, 0.0, "separate step 2 cls");
    check_close(p2.box[l], s2.box[l], 0.0, 0.0, "separate step 2 box");
    CHECK(test::values(max(abs(sub(p1.cls[l], p2.cls[l]))))[0] > 1e-3);
    CHECK(test::values(max(abs(sub(p1.box[l], p2.box[l]))))[0] > 1e-3);
  }

  CHECK_THROWS_WITH_AS(shared.forward(features, 3), doctest::Contains("[head] step must be 1 or 2"), Error);
  CHECK_THROWS_WITH_AS(shared.forward({randn({1, 8, 3, 3})}, 1),
                       doctest::Contains("[head] level 0 must be NCHW with 16 channels"), Error);
  models::FPNConfig fc;
  fc.width_mult = 1.0 / 16;
  CHECK_THROWS_WITH_AS(models::FPN({4, 8, 16}, fc), doctest::Contains("[fpn] needs the channels of C2..C5"), Error);
  models::FPN fpn({4, 8, 16, 32}, fc);
  CHECK_THROWS_WITH_AS(fpn.forward({randn({1, 4, 8, 8}), randn({1, 8, 4, 4}), randn({1, 16, 2, 2}), randn({1, 31, 1, 1})}),
                       doctest::Contains("[fpn] level 5 must be NCHW with 32 channels"), Error);
}
