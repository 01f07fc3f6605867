// Host replay of the own implicit-GEMM convolution (src/cuda/conv_gemm.cuh), runnable without a
// GPU: the real operand loaders and their setup (fill_loaders), tile shapes and split plan, driven by a
// thread-by-thread copy of implicit_gemm_kernel's block loop (conv.cu), against a float64 direct
// convolution. It checks the index math of all three passes (implicit im2col, the transposed
// convolution's stride/dilation solutions, split-K slices, epilogue addressing) for every tile
// shape, plus IntDivider against plain division. The CUDA tests check the kernels themselves.
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/conv_gemm.cuh"

using namespace isrn;
using namespace isrn::cuda::conv_gemm;

namespace {

struct Problem {
  ConvGeometry g;
  int m, ncols, k;
  int64_t per_image, image_stride, row_stride, numel, bias_inner;
  float* out;
  const float* bias;
};

// The block loop of implicit_gemm_kernel, one thread at a time between barriers.
template <class Tile, class LA, class LB>
void replay(LA la0, LB lb0, const Problem& p, int64_t want_splits) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  constexpr int T = (BM / TM) * (BN / TN);
  int64_t k_per_split = 0;
  const int64_t splits = plan_splits(p.k, want_splits, BK, k_per_split);
  std::vector<float> partial(splits * p.numel, NAN);
  float* out_base = splits == 1 ? p.out : partial.data();
  const float* bias = splits == 1 ? p.bias : nullptr;
  const IntDivider div_per_image(static_cast<uint32_t>(p.per_image));
  static float As[2][BK][BM + kSmemPad], Bs[2][BK][BN + kSmemPad];
  std::vector<LA> la(T);
  std::vector<LB> lb(T);
  std::vector<std::array<std::array<float, TN>, TM>> acc(T);
  const int col_tiles = (p.ncols + BN - 1) / BN, row_tiles = (p.m + BM - 1) / BM;
  for (int bz = 0; bz < splits; ++bz)
    for (int by = 0; by < row_tiles; ++by)
      for (int bx = 0; bx < col_tiles; ++bx) {
        const int row0 = by * BM, col0 = bx * BN;
        const int k_begin = static_cast<int>(bz * k_per_split);
        const int k_end = std::min<int>(p.k, static_cast<int>(k_begin + k_per_split));
        for (int t = 0; t < T; ++t) {
          la[t] = la0;
          lb[t] = lb0;
          la[t].init(row0, t);
          lb[t].init(col0, t);
          for (auto& r : acc[t]) r.fill(0.0f);
        }
        for (auto& b : As) for (auto& r : b) for (auto& v : r) v = NAN;  // unwritten smem poisons the result
        for (auto& b : Bs) for (auto& r : b) for (auto& v : r) v = NAN;
        auto fetch_store = [&](int k0, int buf) {
          for (int t = 0; t < T; ++t) {
            float a[LA::E], b[LB::E];
            la[t].fetch(k0, a);
            lb[t].fetch(k0, b);
            la[t].store(&As[buf][0][0], a);
            lb[t].store(&Bs[buf][0][0], b);
          }
        };
        if (k_begin < k_end) fetch_store(k_begin, 0);
        int buf = 0;
        for (int k0 = k_begin; k0 < k_end; k0 += BK) {
          for (int t = 0; t < T; ++t) {
            const int ty = t / (BN / TN), tx = t % (BN / TN);
            for (int kk = 0; kk < BK; ++kk)
              for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j)
                  acc[t][i][j] = std::fma(As[buf][kk][(i / 4) * (BM * 4 / TM) + ty * 4 + i % 4],
                                          Bs[buf][kk][(j / 4) * (BN * 4 / TN) + tx * 4 + j % 4], acc[t][i][j]);
          }
          if (k0 + BK < k_end) fetch_store(k0 + BK, buf ^ 1);
          buf ^= 1;
        }
        float* out = out_base + bz * p.numel;
        for (int t = 0; t < T; ++t) {
          const int ty = t / (BN / TN), tx = t % (BN / TN);
          for (int j = 0; j < TN; ++j) {
            const int col = col0 + (j / 4) * (BN * 4 / TN) + tx * 4 + j % 4;
            if (col >= p.ncols) continue;
            uint32_t image, within;
            div_per_image.divmod(static_cast<uint32_t>(col), image, within);
            for (int i = 0; i < TM; ++i) {
              const int row = row0 + (i / 4) * (BM * 4 / TM) + ty * 4 + i % 4;
              if (row >= p.m) continue;
              out[image * p.image_stride + within + int64_t(row) * p.row_stride] = acc[t][i][j] + (bias ? bias[row] : 0.0f);
            }
          }
        }
      }
  if (splits > 1)
    for (int64_t i = 0; i < p.numel; ++i) {
      float a = p.bias ? p.bias[(i / p.bias_inner) % p.m] : 0.0f;
      for (int64_t s = 0; s < splits; ++s) a += partial[s * p.numel + i];
      p.out[i] = a;
    }
}

struct Case {
  int n, c, h, w, co, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw;
};

int failures = 0, checks = 0;

void compare(const char* what, const char* tile, int64_t splits, const Case& cs, const std::vector<float>& got,
             const std::vector<double>& want, const std::vector<double>& scale) {
  ++checks;
  for (size_t i = 0; i < got.size(); ++i) {
    // FP32 accumulation of at most a few hundred products: 1e-4 of Σ|terms| is generous, and any
    // index error moves a value by O(1).
    if (!(std::abs(got[i] - want[i]) <= 1e-4 * scale[i] + 1e-6)) {
      std::printf("FAIL %s, tile %s, %lld splits, case n%d c%d %dx%d co%d k%dx%d s%d,%d p%d,%d,%d,%d d%d,%d: "
                  "element %zu is %g, expected %g\n",
                  what, tile, static_cast<long long>(splits), cs.n, cs.c, cs.h, cs.w, cs.co, cs.kh, cs.kw, cs.sh, cs.sw,
                  cs.pt, cs.pb, cs.pl, cs.pr, cs.dh, cs.dw, i, got[i], want[i]);
      ++failures;
      return;
    }
  }
}

template <class Tile>
void run_case(const Case& cs, std::mt19937& rng, const char* tile) {
  Conv2dParams prm;
  prm.stride = {cs.sh, cs.sw};
  prm.padding = {cs.pt, cs.pb, cs.pl, cs.pr};
  prm.dilation = {cs.dh, cs.dw};
  const int oh = static_cast<int>(prm.out_h(cs.h, cs.kh)), ow = static_cast<int>(prm.out_w(cs.w, cs.kw));
  if (oh < 1 || ow < 1) return;
  const ConvGeometry g{cs.n, cs.c, cs.h, cs.w, cs.co, cs.kh, cs.kw, oh, ow, cs.sh, cs.sw, cs.pt, cs.pl, cs.dh, cs.dw};
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(size_t(cs.n) * cs.c * cs.h * cs.w), w(size_t(cs.co) * cs.c * cs.kh * cs.kw), b(cs.co),
      gy(size_t(cs.n) * cs.co * oh * ow);
  for (auto* v : {&x, &w, &b, &gy})
    for (float& e : *v) e = u(rng);
  std::vector<double> y_ref(gy.size()), y_scale(gy.size()), gx_ref(x.size()), gx_scale(x.size()), gw_ref(w.size()),
      gw_scale(w.size());
  for (int n = 0; n < cs.n; ++n)
    for (int o = 0; o < cs.co; ++o)
      for (int i = 0; i < oh; ++i)
        for (int j = 0; j < ow; ++j) {
          const size_t yi = ((size_t(n) * cs.co + o) * oh + i) * ow + j;
          y_ref[yi] = b[o];
          y_scale[yi] = std::abs(b[o]);
          for (int c = 0; c < cs.c; ++c)
            for (int r = 0; r < cs.kh; ++r)
              for (int s = 0; s < cs.kw; ++s) {
                const int ih = i * cs.sh - cs.pt + r * cs.dh, iw = j * cs.sw - cs.pl + s * cs.dw;
                if (ih < 0 || ih >= cs.h || iw < 0 || iw >= cs.w) continue;
                const size_t xi = ((size_t(n) * cs.c + c) * cs.h + ih) * cs.w + iw;
                const size_t wi = ((size_t(o) * cs.c + c) * cs.kh + r) * cs.kw + s;
                y_ref[yi] += double(x[xi]) * w[wi];
                y_scale[yi] += std::abs(double(x[xi]) * w[wi]);
                gx_ref[xi] += double(gy[yi]) * w[wi];
                gx_scale[xi] += std::abs(double(gy[yi]) * w[wi]);
                gw_ref[wi] += double(gy[yi]) * x[xi];
                gw_scale[wi] += std::abs(double(gy[yi]) * x[xi]);
              }
        }
  const int khw = cs.kh * cs.kw;
  for (int64_t splits : {1, 2, 5}) {
    std::vector<float> y(gy.size(), NAN), gx(x.size(), NAN), gw(w.size(), NAN);
    const int k_fwd = cs.c * khw, k_bwd_in = cs.co * khw, k_bwd_w = cs.n * oh * ow;
    {
      typename PassLoaders<Pass::Forward, Tile>::A la{};
      typename PassLoaders<Pass::Forward, Tile>::B lb{};
      fill_loaders<Pass::Forward, Tile>({w.data(), x.data()}, g, cs.co, cs.n * oh * ow, k_fwd, la, lb);
      replay<Tile>(la, lb, {g, cs.co, cs.n * oh * ow, k_fwd, oh * ow, int64_t(cs.co) * oh * ow, oh * ow,
                            int64_t(y.size()), oh * ow, y.data(), b.data()}, splits);
    }
    {
      typename PassLoaders<Pass::BackwardInput, Tile>::A la{};
      typename PassLoaders<Pass::BackwardInput, Tile>::B lb{};
      fill_loaders<Pass::BackwardInput, Tile>({w.data(), gy.data()}, g, cs.c, cs.n * cs.h * cs.w, k_bwd_in, la, lb);
      replay<Tile>(la, lb, {g, cs.c, cs.n * cs.h * cs.w, k_bwd_in, cs.h * cs.w, int64_t(cs.c) * cs.h * cs.w,
                            cs.h * cs.w, int64_t(gx.size()), 1, gx.data(), nullptr}, splits);
    }
    {
      typename PassLoaders<Pass::BackwardWeight, Tile>::A la{};
      typename PassLoaders<Pass::BackwardWeight, Tile>::B lb{};
      fill_loaders<Pass::BackwardWeight, Tile>({gy.data(), x.data()}, g, cs.co, cs.c * khw, k_bwd_w, la, lb);
      replay<Tile>(la, lb, {g, cs.co, cs.c * khw, k_bwd_w, cs.c * khw, 0, cs.c * khw, int64_t(gw.size()), 1,
                            gw.data(), nullptr}, splits);
    }
    compare("forward", tile, splits, cs, y, y_ref, y_scale);
    compare("backward input", tile, splits, cs, gx, gx_ref, gx_scale);
    compare("backward weight", tile, splits, cs, gw, gw_ref, gw_scale);
  }
}

bool check_int_divider() {
  std::mt19937 rng(7);
  auto ok = [](uint32_t n, uint32_t d) {
    uint32_t q, r;
    IntDivider(d).divmod(n, q, r);
    if (q == n / d && r == n % d) return true;
    std::printf("FAIL IntDivider: %u / %u gave %u rem %u\n", n, d, q, r);
    return false;
  };
  for (int t = 0; t < 300000; ++t) {
    const uint32_t bound = t % 3 == 0 ? 0x7ffffffeu : (t % 3 == 1 ? 5000u : 70u);
    if (!ok(rng() % 0x7fffffffu, 1 + rng() % bound)) return false;
  }
  for (uint32_t d : {1u, 2u, 3u, 7u, 0x40000000u, 0x40000001u, 0x7fffffffu})
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, 0x7ffffffeu})
      if (!ok(n, d)) return false;
  return true;
}

}  // namespace

int main() {
  if (!check_int_divider()) return 1;
  std::mt19937 rng(11);
  // Detector shapes in small sizes (3x3, 1x1, 7x7 s2, 1x5/5x1, dilation, asymmetric padding) and
  // random odd ones: nothing a multiple of a tile.
  std::vector<Case> cases = {
      {2, 5, 7, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   {1, 3, 9, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {2, 4, 10, 9, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1},  {1, 2, 11, 12, 3, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1},
      {1, 3, 6, 13, 2, 1, 5, 1, 1, 0, 0, 2, 2, 1, 1},  {1, 3, 13, 6, 2, 5, 1, 1, 1, 2, 2, 0, 0, 1, 1},
      {2, 3, 9, 10, 4, 3, 3, 2, 2, 0, 1, 1, 0, 2, 2},  {1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1},
      {2, 7, 5, 4, 9, 3, 1, 2, 1, 2, 0, 0, 1, 1, 2},   {3, 2, 4, 17, 70, 1, 3, 1, 2, 1, 0, 1, 1, 1, 1},
      {1, 40, 5, 5, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 2, 9, 3, 3, 3, 1, 1, 0, 1, 1, 1, 1, 1},
  };
  const int sizes[] = {1, 3, 5, 7};
  for (int i = 0; i < 12; ++i) {
    Case c{};
    c.n = 1 + rng() % 2; c.c = 1 + rng() % 9; c.h = 1 + rng() % 14; c.w = 1 + rng() % 14; c.co = 1 + rng() % 40;
    c.kh = sizes[rng() % 4]; c.kw = sizes[rng() % 4]; c.sh = 1 + rng() % 2; c.sw = 1 + rng() % 2;
    c.pt = rng() % c.kh; c.pb = rng() % c.kh; c.pl = rng() % c.kw; c.pr = rng() % c.kw;
    c.dh = 1 + rng() % 2; c.dw = 1 + rng() % 2;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    run_case<TileShort>(c, rng, "32x128");
    run_case<TileMedium>(c, rng, "64x64");
  }
  for (int i = 0; i < 3; ++i) run_case<TileLarge>(cases[i], rng, "128x128");
  run_case<TileLarge>({1, 3, 12, 12, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, rng, "128x128");
  std::printf("conv implicit-GEMM host replay: %d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
