// SGD, gradient clipping and the warm-up/multi-step schedule: against hand-computed sequences and
// against numbers printed by PyTorch 1.13 (Debian's python3-torch) from the script quoted below.
#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace isrn;
using namespace isrn::optim;
using test::check_close;

namespace {

TensorOptions f64(Device d) { return TensorOptions(DType::Float64).device(d); }

Tensor param(const std::vector<double>& values, const Shape& shape, Device d) {
  return from_vector(values, shape, d).set_requires_grad(true);
}

}  // namespace

TEST_CASE("optim: SGD with momentum and weight decay follows a hand-computed sequence") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    // One scalar parameter, constant gradient 1, lr 0.1, momentum 0.9, weight decay 0.1:
    //   step 1: d = 1 + 0.1·1      = 1.1      buf = 1.1                      p = 1 - 0.11           = 0.89
    //   step 2: d = 1 + 0.1·0.89   = 1.089    buf = 0.9·1.1 + 1.089  = 2.079    p = 0.89 - 0.2079      = 0.6821
    //   step 3: d = 1 + 0.1·0.6821 = 1.06821  buf = 0.9·2.079 + 1.06821 = 2.93931 p = 0.6821 - 0.293931 = 0.388169
    // Tolerance 1e-15: a few roundings of numbers of order 1 in float64.
    Tensor p = param({1.0}, {1}, d);
    SGD opt({p}, 0.1, 0.9, 0.1);
    const std::vector<double> expected_p{0.89, 0.6821, 0.388169}, expected_buf{1.1, 2.079, 2.93931};
    for (int step = 0; step < 3; ++step) {
      CAPTURE(step);
      p.set_grad(ones({1}, f64(d)));
      opt.step();
      check_close(p, {expected_p[step]}, 0, 1e-15, "parameter");
      check_close(opt.momentum_buffer(0, 0), {expected_buf[step]}, 0, 1e-15, "momentum buffer");
      CHECK(p.grad().to_vector<double>() == std::vector<double>{1.0});  // the gradient is left untouched
    }
    // Plain SGD (no momentum) keeps no buffer.
    Tensor q = param({2.0, -1.0}, {2}, d);
    SGD plain({q}, 0.5);
    q.set_grad(from_vector<double>({1.0, 4.0}, {2}, d));
    plain.step();
    check_close(q, {1.5, -3.0}, 0, 0, "plain SGD");
    CHECK(!plain.momentum_buffer(0, 0).defined());
  }
}

TEST_CASE("optim: the fused SGD step equals the op-by-op sequence bit for bit") {
  // The reference is the step written with the elementwise ops, each rounding its result (as PyTorch's
  // torch.optim.SGD computes it). The fused kernel must give the same bits in float32 and float64, with and
  // without weight decay, momentum and nesterov, on the first step (buffer written) and later ones (buffer
  // read), for a parameter large enough to be split across threads and for a non-contiguous one.
  struct Setting {
    double lr, momentum, weight_decay;
    bool nesterov;
  };
  const Setting settings[] = {{0.01, 0.9, 1e-4, false}, {0.1, 0.0, 0.0, false}, {0.05, 0.0, 3e-3, false},
                              {0.02, 0.5, 0.1, true}, {0.3, 0.7, 0.0, true}};
  for (Device d : test::devices()) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
      for (const Setting& st : settings) {
        CAPTURE(d);
        CAPTURE(dtype);
        CAPTURE(st.lr);
        CAPTURE(st.momentum);
        CAPTURE(st.nesterov);
        // [300, 257] = 77,100 elements, above the CPU kernel's one-thread grain; the second parameter is a
        // transposed (non-contiguous) leaf.
        Tensor a = test::random({300, 257}, 11, -2, 2, dtype).to(d).set_requires_grad(true);
        Tensor b = test::random({9, 7}, 12, -2, 2, dtype).to(d).transpose(0, 1).detach().set_requires_grad(true);
        REQUIRE(!b.is_contiguous());
        SGD opt({ParamGroup{{a, b}, st.lr, st.momentum, st.weight_decay, st.nesterov}});
        std::vector<Tensor> ref_params{a.detach().clone(), b.detach().contiguous()}, ref_bufs(2);
        for (int step = 0; step < 3; ++step) {
          CAPTURE(step);
          const std::vector<Tensor> grads{test::random({300, 257}, 20 + step, -1, 1, dtype).to(d),
                                          test::random({7, 9}, 30 + step, -1, 1, dtype).to(d)};
          a.set_grad(grads[0]);
          b.set_grad(grads[1]);
          opt.step();
          for (size_t k = 0; k < 2; ++k) {
            Tensor& p = ref_params[k];
            Tensor d_p = st.weight_decay != 0.0 ? add(grads[k], mul(p, st.weight_decay)) : grads[k];
            if (st.momentum != 0.0) {
              ref_bufs[k] = ref_bufs[k].defined() ? add(mul(ref_bufs[k], st.momentum), d_p) : d_p.clone();
              d_p = st.nesterov ? add(d_p, mul(ref_bufs[k], st.momentum)) : ref_bufs[k];
            }
            p = sub(p, mul(d_p, st.lr));
          }
          CHECK(test::values(a) == test::values(ref_params[0]));
          CHECK(test::values(b) == test::values(ref_params[1]));
          if (st.momentum != 0.0) {
            CHECK(test::values(opt.momentum_buffer(0, 0)) == test::values(ref_bufs[0]));
            CHECK(test::values(opt.momentum_buffer(0, 1)) == test::values(ref_bufs[1]));
          } else {
            CHECK(!opt.momentum_buffer(0, 0).defined());
          }
        }
      }
    }
  }
}

// PyTorch reference (run with /usr/bin/python3; prints the numbers pasted below):
//   import torch
//   torch.set_default_dtype(torch.float64)
//   w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], requires_grad=True)
//   b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
//   g = torch.tensor([1.0, -2.0, 3.0, -4.0], requires_grad=True)
//   n = torch.tensor([0.7, -0.3], requires_grad=True)
//   opt = torch.optim.SGD([
//       {"params": [w, b], "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2},
//       {"params": [g], "lr": 0.05, "momentum": 0.8, "weight_decay": 0.0},
//       {"params": [n], "lr": 0.02, "momentum": 0.5, "weight_decay": 0.1, "nesterov": True},
//   ], lr=0.1)
//   for step in range(5):
//       opt.zero_grad()
//       loss = (w * w * torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.5, 2.5]])).sum() + (w * 0.3).sum() \
//            + ((b - 1.0) ** 2).sum() + (g ** 2 * 0.25).sum() - g.sum() + ((n * n) * torch.tensor([4.0, 0.5])).sum()
//       loss.backward()
//       if step == 2:
//           g.grad = None          # a parameter without a gradient is skipped
//       if step == 3:
//           opt.param_groups[0]["lr"] = 0.05
//       opt.step()
//   for t in (w, b, g, n):
//       print([repr(v) for v in t.detach().flatten().tolist()])
//   for t in (w, b, g, n):
//       print([repr(v) for v in opt.state[t]["momentum_buffer"].flatten().tolist()])
TEST_CASE("optim: SGD matches PyTorch with groups, no weight decay in one, nesterov, a skipped step and set_lr") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor w = param({0.5, -1.0, 2.0, 1.5, 0.25, -0.75}, {2, 3}, d);
    Tensor b = param({0.1, -0.2, 0.3}, {3}, d);
    Tensor g = param({1.0, -2.0, 3.0, -4.0}, {4}, d);
    Tensor n = param({0.7, -0.3}, {2}, d);
    SGD opt({ParamGroup{{w, b}, 0.1, 0.9, 1e-2}, ParamGroup{{g}, 0.05, 0.8, 0.0},
             ParamGroup{{n}, 0.02, 0.5, 0.1, /*nesterov=*/true}});
    const Tensor cw = from_vector<double>({1.0, 2.0, 3.0, 0.5, 1.5, 2.5}, {2, 3}, d);
    const Tensor cn = from_vector<double>({4.0, 0.5}, {2}, d);
    for (int step = 0; step < 5; ++step) {
      opt.zero_grad();
      Tensor loss = add(add(sum(mul(mul(w, w), cw)), sum(mul(w, 0.3))), sum(pow(sub(b, 1.0), 2.0)));
      loss = add(add(loss, sub(sum(mul(mul(g, g), 0.25)), sum(g))), sum(mul(mul(n, n), cn)));
      loss.backward();
      if (step == 2) g.set_grad(Tensor());
      if (step == 3) opt.set_lr(0, 0.05);
      opt.step();
    }
    CHECK(opt.lr(0) == 0.05);
    // Float64 on both sides; the gradients are computed by two autograd engines in a different
    // operation order, so the last bits may differ: 1e-13 relative over five steps.
    const double rtol = 1e-13, atol = 1e-14;
    check_close(w, {-0.33203643920469517, 0.5375192023193678, -1.131696180197508, 0.09052613566611703,
                    -0.29454872473400756, 0.38122662460518025}, rtol, atol, "w");
    check_close(b, {1.2469988920530626, 1.331457108789025, 1.1906934142290875}, rtol, atol, "b");
    check_close(g, {1.1969496093749998, -1.2122015625, 2.803050390625, -2.81830234375}, rtol, atol, "g");
    check_close(n, {0.08993113733068989, -0.2444100624250821}, rtol, atol, "n");
    check_close(opt.momentum_buffer(0, 0), {2.0021038698989027, 0.27284556490264533, -11.612998671729843,
                                            4.857856657492658, 0.6588570387326511, 2.035485340938898},
                rtol, atol, "buf w");
    check_close(opt.momentum_buffer(0, 1), {-2.7599883999602493, -3.6850984639825013, -2.1432483572787486}, rtol, atol,
                "buf b");
    check_close(opt.momentum_buffer(1, 0), {-1.3761796875, -5.50471875, 1.3761796875, -8.257078125}, rtol, atol,
                "buf g");
    check_close(opt.momentum_buffer(2, 0), {3.8895873941036694, -0.56545285530393}, rtol, atol, "buf n");
  }
}

TEST_CASE("optim: momentum buffers restored into a new optimizer continue the same trajectory") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    auto grad_at = [d](int step) { return from_vector<double>({std::sin(step + 1.0), std::cos(3.0 * step)}, {2}, d); };
    Tensor a = param({0.3, -0.6}, {2}, d), c = param({0.3, -0.6}, {2}, d);
    SGD first({a}, 0.1, 0.9, 1e-3);
    for (int step = 0; step < 3; ++step) {
      a.set_grad(grad_at(step));
      first.step();
    }
    // "Checkpoint": copy the parameter and buffer, then rebuild an optimizer around a new tensor.
    {
      NoGradGuard ng;
      c.copy_(a);
    }
    SGD second({c}, 0.1, 0.9, 1e-3);
    second.set_momentum_buffer(0, 0, first.momentum_buffer(0, 0).clone());
    for (int step = 3; step < 6; ++step) {
      a.set_grad(grad_at(step));
      c.set_grad(grad_at(step));
      first.step();
      second.step();
    }
    check_close(c, a, 0, 0, "resumed parameter");
    check_close(second.momentum_buffer(0, 0), first.momentum_buffer(0, 0), 0, 0, "resumed buffer");
    // The restored buffer is a private copy: the caller's tensor is not updated by step().
    const Tensor mine = full({2}, 5.0, f64(d));
    second.set_momentum_buffer(0, 0, mine);
    c.set_grad(grad_at(0));
    second.step();
    check_close(mine, {5.0, 5.0}, 0, 0, "caller's tensor untouched");
    second.set_momentum_buffer(0, 0, Tensor());
    CHECK(!second.momentum_buffer(0, 0).defined());
  }
}

TEST_CASE("optim: zero_grad drops or zeroes gradients; float32 parameters update in their dtype") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor p = from_vector<float>({1.0f, 2.0f}, {2}, d).set_requires_grad(true);
    SGD opt({p}, 0.25f, 0.0, 0.5);
    sum(mul(p, p)).backward();  // grad 2p
    opt.step();                 // p -= 0.25 · (2p + 0.5p) = p - 0.625p
    CHECK(p.dtype() == DType::Float32);
    check_close(p, {0.375, 0.75}, 0, 1e-7, "float32 step");  // exact in binary; 1e-7 for the float roundings
    opt.zero_grad(/*set_to_none=*/false);
    check_close(p.grad(), {0.0, 0.0}, 0, 0, "zeroed");
    opt.zero_grad();
    CHECK(!p.grad().defined());
    opt.step();  // nothing to do without a gradient
    check_close(p, {0.375, 0.75}, 0, 1e-7, "skipped");
  }
}

TEST_CASE("optim: SGD rejects bad parameters and hyperparameters") {
  Tensor p = zeros({2}).set_requires_grad(true);
  Tensor derived = mul(p, 2.0);
  CHECK_THROWS_WITH_AS(SGD({derived}, 0.1), doctest::Contains("[SGD] parameter 0 of group 0 is not a leaf"), Error);
  CHECK_THROWS_WITH_AS(SGD({p, p}, 0.1), doctest::Contains("[SGD] parameter 1 of group 0 appears more than once"), Error);
  CHECK_THROWS_WITH_AS(SGD({ParamGroup{{p}, 0.1}, ParamGroup{{p}, 0.1}}),
                       doctest::Contains("[SGD] parameter 0 of group 1 appears more than once"), Error);
  CHECK_THROWS_WITH_AS(SGD({zeros({2}, DType::Int64)}, 0.1), doctest::Contains("only float32/float64 tensors"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, -0.1), doctest::Contains("[SGD] lr of group 0 must be finite and non-negative"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, 0.1, -0.9), doctest::Contains("[SGD] momentum of group 0"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, 0.1, 0.9, std::nan("")), doctest::Contains("[SGD] weight_decay of group 0"), Error);
  CHECK_THROWS_WITH_AS(SGD({p}, 0.1, 0.0, 0.0, true), doctest::Contains("[SGD] nesterov momentum needs momentum > 0"),
                       Error);
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{}, 0.1), doctest::Contains("[SGD] got an empty parameter list"), Error);
  CHECK_THROWS_WITH_AS(SGD({Tensor()}, 0.1), doctest::Contains("[SGD] parameter 0 of group 0 is undefined"), Error);
  SGD opt({p}, 0.1, 0.9);
  CHECK_THROWS_WITH_AS(opt.set_lr(1, 0.1), doctest::Contains("[SGD] group 1 does not exist"), Error);
  CHECK_THROWS_WITH_AS(opt.set_lr(0, INFINITY), doctest::Contains("[SGD] lr of group 0"), Error);
  CHECK_THROWS_WITH_AS(opt.momentum_buffer(0, 1), doctest::Contains("[SGD] group 0 has no parameter 1"), Error);
  CHECK_THROWS_WITH_AS(opt.set_momentum_buffer(0, 0, zeros({3})), doctest::Contains("[SGD] momentum buffer [3]"), Error);
  CHECK_THROWS_WITH_AS(opt.set_momentum_buffer(0, 0, zeros({2}, DType::Float64)),
                       doctest::Contains("does not match parameter 0 of group 0"), Error);
}

// PyTorch reference for clip_grad_norm_ (same session as above):
//   p1 = torch.zeros(2, 2, requires_grad=True); p2 = torch.zeros(3, requires_grad=True)
//   p3 = torch.zeros(1, requires_grad=True)
//   p1.grad = torch.tensor([[0.5, -1.5], [2.0, 0.25]]); p2.grad = torch.tensor([-3.0, 1.0, 0.125])
//   total = torch.nn.utils.clip_grad_norm_([p1, p2, p3], 0.75)
//   print(repr(total.item()), p1.grad.flatten().tolist(), p2.grad.flatten().tolist())
TEST_CASE("optim: clip_grad_norm matches PyTorch and leaves small gradients alone") {
  for (Device d : test::devices()) {
    CAPTURE(d);
    Tensor p1 = zeros({2, 2}, f64(d)).set_requires_grad(true), p2 = zeros({3}, f64(d)).set_requires_grad(true);
    Tensor p3 = zeros({1}, f64(d)).set_requires_grad(true);
    p1.set_grad(from_vector<double>({0.5, -1.5, 2.0, 0.25}, {2, 2}, d));
    p2.set_grad(from_vector<double>({-3.0, 1.0, 0.125}, {3}, d));
    const double total = clip_grad_norm({p1, p2, p3}, 0.75);
    CHECK(total == doctest::Approx(4.071624368725582).epsilon(1e-15));
    // The coefficient 0.75 / (norm + 1e-6) is computed in the same float64 on both sides.
    check_close(p1.grad(), {0.09210081135666341, -0.2763024340699902, 0.36840324542665365, 0.046050405678331706}, 1e-15,
                0, "p1 clipped");
    check_close(p2.grad(), {-0.5526048681399804, 0.18420162271332682, 0.023025202839165853}, 1e-15, 0, "p2 clipped");
    CHECK(!p3.grad().defined());
    // Norm 5 under a limit of 10: returned and not rescaled. Float32 gradients use a float64 norm.
    Tensor q = zeros({2}, TensorOptions(DType::Float32).device(d)).set_requires_grad(true);
    q.set_grad(from_vector<float>({3.0f, -4.0f}, {2}, d));
    CHECK(clip_grad_norm({q}, 10.0) == 5.0);
    check_close(q.grad(), {3.0, -4.0}, 0, 0, "unclipped");
    // A float32 gradient whose squares overflow float32 still has a finite norm.
    q.set_grad(from_vector<float>({3e30f, 4e30f}, {2}, d));
    CHECK(clip_grad_norm({q}, 1.0) == doctest::Approx(5e30).epsilon(1e-7));
    check_close(q.grad(), {0.6, 0.8}, 1e-6, 0, "clipped float32");  // float32 rounding of the scaled values
    // No gradients: norm 0. A NaN gradient: NaN norm, spread to the gradients as in PyTorch.
    CHECK(clip_grad_norm({p3}, 1.0) == 0.0);
    q.set_grad(from_vector<float>({std::numeric_limits<float>::quiet_NaN(), 1.0f}, {2}, d));
    CHECK(std::isnan(clip_grad_norm({q}, 1.0)));
    CHECK(std::isnan(q.grad().to_vector<float>()[1]));
  }
  CHECK_THROWS_WITH_AS(clip_grad_norm({}, -1.0), doctest::Contains("[clip_grad_norm] max_norm must be finite"), Error);
}

// PyTorch reference for the schedule (same session): linear warm-up chained with multi-step decay.
//   q = torch.zeros(1, requires_grad=True)
//   o = torch.optim.SGD([q], lr=0.01)
//   sched = torch.optim.lr_scheduler.ChainedScheduler([
//       torch.optim.lr_scheduler.LinearLR(o, start_factor=1/3, total_iters=50),
//       torch.optim.lr_scheduler.MultiStepLR(o, milestones=[100, 200], gamma=0.1)])
//   lrs = []
//   for it in range(260):
//       lrs.append(o.param_groups[0]["lr"]); o.step(); sched.step()
//   print({i: repr(lrs[i]) for i in (0, 1, 25, 49, 50, 51, 99, 100, 101, 199, 200, 259)})
TEST_CASE("optim: WarmupMultiStep at warm-up, its end and the milestones") {
  const WarmupMultiStep s(0.01, {100, 200}, 0.1, 1.0 / 3.0, 50);
  const std::vector<std::pair<int64_t, double>> torch_lrs{
      {0, 0.003333333333333333},    {1, 0.0034666666666666665},   {25, 0.006666666666666662},
      {49, 0.009866666666666652},   {50, 0.009999999999999986},   {51, 0.009999999999999986},
      {99, 0.009999999999999986},   {100, 0.0009999999999999987}, {101, 0.0009999999999999987},
      {199, 0.0009999999999999987}, {200, 9.999999999999988e-05}, {259, 9.999999999999988e-05}};
  // PyTorch updates the rate recursively (by ratios), so its values carry ~1e-15 relative drift;
  // isrn evaluates the closed form.
  for (const auto& [iter, lr] : torch_lrs) {
    CAPTURE(iter);
    CHECK(s.lr_at(iter) == doctest::Approx(lr).epsilon(1e-12));
  }
  // Closed-form values by hand: 1/3 at 0, halfway to 1 at 25, exactly 1 from 50, then ×0.1 per milestone.
  CHECK(s.factor_at(0) == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
  CHECK(s.factor_at(25) == doctest::Approx(2.0 / 3.0).epsilon(1e-15));
  CHECK(s.factor_at(50) == 1.0);
  CHECK(s.factor_at(99) == 1.0);
  CHECK(s.factor_at(100) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(s.factor_at(100000) == doctest::Approx(0.01).epsilon(1e-15));
  // No warm-up, and a milestone inside the warm-up multiplies the warm-up factor.
  CHECK(WarmupMultiStep(0.5, {}, 0.1, 1.0, 0).lr_at(7) == 0.5);
  CHECK(WarmupMultiStep(1.0, {10}, 0.5, 0.0, 20).lr_at(10) == doctest::Approx(0.25).epsilon(1e-15));
  CHECK(s.base_lr() == 0.01);
  CHECK(s.milestones() == std::vector<int64_t>{100, 200});
  CHECK_THROWS_WITH_AS(WarmupMultiStep(0.01, {200, 100}), doctest::Contains("[WarmupMultiStep] milestones must be strictly increasing"),
                       Error);
  CHECK_THROWS_WITH_AS(WarmupMultiStep(0.01, {100}, 0.1, 1.5), doctest::Contains("[WarmupMultiStep] warmup_factor must be in [0, 1]"),
                       Error);
  CHECK_THROWS_WITH_AS(WarmupMultiStep(-1, {}), doctest::Contains("[WarmupMultiStep] base_lr"), Error);
  CHECK_THROWS_WITH_AS(s.lr_at(-1), doctest::Contains("[WarmupMultiStep] iteration must not be negative"), Error);
}

TEST_CASE("optim: a schedule drives the optimizer's rate per group") {
  Tensor a = zeros({1}).set_requires_grad(true), b = zeros({1}).set_requires_grad(true);
  SGD opt({ParamGroup{{a}, 0.02}, ParamGroup{{b}, 0.04}});
  const WarmupMultiStep schedule(1.0, {3}, 0.1, 0.5, 2);
  const double base[2] = {0.02, 0.04};
  for (int64_t it = 0; it < 5; ++it) {
    for (size_t gi = 0; gi < 2; ++gi) opt.set_lr(gi, base[gi] * schedule.factor_at(it));
    CHECK(opt.lr(1) == doctest::Approx(2.0 * opt.lr(0)).epsilon(1e-15));
  }
  CHECK(opt.lr(0) == doctest::Approx(0.002).epsilon(1e-15));
}
