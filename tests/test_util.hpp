#pragma once
// Shared test machinery: the devices a case runs on, tensor comparison with stated tolerances,
// finite-difference gradient checks in float64, and golden-file loading.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "isrn/isrn.hpp"

namespace isrn::test {

// The devices every device-generic case runs on: the CPU, and CUDA when a GPU is present.
// ISRN_TEST_DEVICE=cpu|cuda narrows the run to one device.
inline std::vector<Device> devices() {
  const char* only = std::getenv("ISRN_TEST_DEVICE");
  const std::string want = only ? only : "";
  std::vector<Device> out;
  if (want.empty() || want == "cpu") out.push_back(Device::cpu());
  if (want.empty() || want == "cuda") {
    if (cuda_available()) {
      out.push_back(Device::cuda(0));
    } else {
      static bool said = false;
      if (!said) {
        said = true;
        const std::string why = cuda_built() ? "CUDA cases skipped: this build has the CUDA backend but no GPU is present"
                                       : "CUDA cases skipped: this build has no CUDA backend";
        MESSAGE(why);
      }
    }
  }
  return out;
}

// Skips the rest of a CUDA-only case with a stated reason when no GPU is present.
#define ISRN_REQUIRE_CUDA()                                                                   \
  do {                                                                                        \
    if (!::isrn::cuda_available()) {                                                          \
      MESSAGE("skipped: needs a CUDA GPU ("                                                    \
              << std::string(::isrn::cuda_built() ? "none present" : "no CUDA backend") << ")");  \
      return;                                                                                 \
    }                                                                                         \
  } while (0)

inline std::vector<double> values(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::Float64).to_vector<double>();
}

// |actual - expected| <= atol + rtol * |expected| elementwise; NaN matches NaN, inf matches the same inf.
inline void check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                        const std::string& what = "") {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs expected ",
                  shape_str(expected.shape()));
  const auto a = values(actual), e = values(expected);
  double worst = 0.0;
  int64_t worst_at = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(e[i]) && std::isnan(a[i])) continue;
    if (std::isinf(e[i]) && a[i] == e[i]) continue;
    const double err = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    if (!(err <= 0.0) && (worst_at < 0 || err > worst || std::isnan(err))) {
      worst = err;
      worst_at = static_cast<int64_t>(i);
    }
  }
  if (worst_at >= 0) {
    FAIL_CHECK(what << ": element " << worst_at << " is " << a[worst_at] << ", expected " << e[worst_at]
                    << " (rtol " << rtol << ", atol " << atol << ")");
  }
}

inline void check_close(const Tensor& actual, const std::vector<double>& expected, double rtol, double atol,
                        const std::string& what = "") {
  check_close(actual, from_vector(expected, actual.shape()), rtol, atol, what);
}

// Compares the analytic gradient of sum(f(inputs) * w) (w a fixed random weighting) with central
// differences, all in float64. Inputs must be float64 leaves; they are perturbed in place on the CPU
// and copied to `device` for every evaluation. Tolerances: central differences with h = 1e-6 have
// truncation error O(h²·f''') ≈ 1e-10 and rounding O(ε/h) ≈ 1e-10, so 1e-6 relative is ample for
// smooth functions; kinks (relu, max, clamp) are kept away from the sample points by the tests.
inline void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                      Device device = Device::cpu(), double rtol = 1e-6, double atol = 1e-7, double h = 1e-6,
                      const std::string& what = "") {
  for (auto& t : inputs) REQUIRE(t.dtype() == DType::Float64);
  auto on_device = [&](const std::vector<Tensor>& host, bool grad) {
    std::vector<Tensor> out;
    for (const auto& t : host) {
      Tensor d = t.detach().to(device);
      if (d.device() == t.device()) d = d.clone().detach();
      if (grad) d.set_requires_grad(true);
      out.push_back(d);
    }
    return out;
  };
  std::vector<Tensor> host;
  for (auto& t : inputs) host.push_back(t.detach().to(Device::cpu()).contiguous().clone().detach());
  Generator gen(1234);
  std::vector<Tensor> dev = on_device(host, true);
  Tensor y = f(dev);
  Tensor w = rand(y.shape(), TensorOptions(DType::Float64), &gen, 0.5, 1.5);
  Tensor loss = sum(mul(y, w.to(device)));
  loss.backward();
  for (size_t k = 0; k < host.size(); ++k) {
    Tensor analytic = dev[k].grad().defined() ? dev[k].grad() : zeros_like(dev[k]);
    Tensor numeric = zeros(host[k].shape(), TensorOptions(DType::Float64));
    double* p = host[k].data_ptr<double>();
    double* pn = numeric.data_ptr<double>();
    for (int64_t i = 0; i < host[k].numel(); ++i) {
      const double saved = p[i];
      NoGradGuard ng;
      p[i] = saved + h;
      const double fp = sum(mul(f(on_device(host, false)), w.to(device))).item<double>();
      p[i] = saved - h;
      const double fm = sum(mul(f(on_device(host, false)), w.to(device))).item<double>();
      p[i] = saved;
      pn[i] = (fp - fm) / (2 * h);
    }
    check_close(analytic, numeric, rtol, atol, what + " d/d input " + std::to_string(k));
  }
}

// A fresh directory per use (unique by process and counter), removed with everything in it at scope end.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix) {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Overwrites every parameter of a module with seeded N(0, 0.3) values, GroupNorm γ with N(1, 0.3), so a
// forward comparison cannot pass on the all-zero / all-one starting values.
inline void randomize_parameters(nn::Module& m, uint64_t seed) {
  Generator gen(seed);
  for (auto& p : m.named_parameters_with_roles()) {
    const bool gamma = p.role == nn::ParamRole::norm && p.name.size() >= 6 && p.name.ends_with("weight");
    nn::init::normal_(p.tensor, gen, gamma ? 1.0 : 0.0, 0.3);
  }
}

// Random float64 values in [lo, hi), deterministic by seed.
inline Tensor random(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                     DType dtype = DType::Float64) {
  Generator gen(seed);
  return rand(shape, TensorOptions(dtype), &gen, lo, hi);
}

// The detector configuration the model tests use: ResNet-18 layout at 1/16 width (16 feature channels), small
// enough for CPU tests, with every ISRN part in place.
inline models::DetectorConfig tiny_detector_config() {
  models::DetectorConfig c;
  c.backbone.depth = 18;
  c.backbone.width_mult = 1.0 / 16.0;
  return c;
}

// An 8-bit image of uniform noise, deterministic by seed.
inline data::Image textured_image(int64_t h, int64_t w, uint64_t seed) {
  data::Image img(h, w);
  Generator gen(seed);
  for (auto& p : img.pixels) p = static_cast<uint8_t>(gen.uniform() * 256);
  return img;
}

// Raw file bytes, for tests that damage files on purpose.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace isrn::test
