// The CUDA runtime (caching allocator, copies, pinned buffers, switches) and the CUDA kernels of
// src/cuda/{copy,unary,binary,reduce,sort,index,matmul,pool,resize}. Kernels whose front ends exist
// are compared with the CPU through the public ops; the others are called directly (through
// src/backend.hpp) and compared with naive double-precision references written here.
// Every case but the first needs a GPU and skips with a stated reason without one.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "../src/backend.hpp"  // the cuda:: kernels, for ops whose front ends live elsewhere
#include "isrn/cuda/runtime.hpp"
#include "test_util.hpp"

using namespace isrn;
using test::check_close;

namespace {

const Device kCuda = Device::cuda(0);
constexpr int64_t kMiB = int64_t{1} << 20;

TensorOptions on(DType dtype, Device device) { return TensorOptions(dtype).device(device); }

// Random values of any dtype: floats uniform in [lo, hi), integers truncated from them, bools from sign.
Tensor random_of(DType dtype, const Shape& shape, uint64_t seed, double lo = -4.0, double hi = 4.0) {
  Tensor r = test::random(shape, seed, lo, hi);
  if (dtype == DType::Bool) return gt(r, (lo + hi) / 2);
  return r.to(dtype);
}

// Exact equality of two tensors' values (NaN equals NaN, and -0 differs from +0).
void check_identical(const Tensor& actual, const Tensor& expected, const std::string& what) {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs ",
                  shape_str(expected.shape()));
  REQUIRE_MESSAGE(actual.dtype() == expected.dtype(), what, ": dtype ", actual.dtype(), " vs ", expected.dtype());
  const auto a = test::values(actual), e = test::values(expected);
  for (size_t i = 0; i < a.size(); ++i) {
    const bool same = (std::isnan(a[i]) && std::isnan(e[i])) ||
                      (a[i] == e[i] && std::signbit(a[i]) == std::signbit(e[i]));
    if (!same) {
      FAIL_CHECK(what << ": element " << i << " is " << a[i] << ", expected " << e[i]);
      return;
    }
  }
}

// The same view of a host tensor and of its copy on the GPU. (Moving a view with .to() gives a
// contiguous copy, so a view meant to reach a kernel strided is taken after the move.)
template <typename View>
std::pair<Tensor, Tensor> host_and_gpu(const Tensor& base, View&& view) {
  return {view(base), view(base.to(kCuda))};
}

std::vector<DType> all_dtypes() {
  return {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8, DType::Bool};
}

}  // namespace

// --- runs everywhere -------------------------------------------------------------------------------

TEST_CASE("cuda runtime: statistics, switches and pinned buffers exist in every build") {
  const cuda::MemoryStats stats = cuda::memory_stats();
  cuda::empty_cache();  // never throws, with or without a GPU
  cuda::reset_peak_stats();
  if (!cuda_available()) {
    // Without a GPU nothing is ever allocated on one.
    CHECK(stats.active_bytes == 0);
    CHECK(stats.peak_active_bytes == 0);
    CHECK(stats.reserved_bytes == 0);
    CHECK(stats.peak_reserved_bytes == 0);
    CHECK(stats.num_device_mallocs == 0);
    CHECK(stats.num_device_frees == 0);
  } else {
    CHECK(stats.active_bytes <= stats.reserved_bytes);
    CHECK(stats.num_device_frees <= stats.num_device_mallocs);
  }
  const bool tf32_before = cuda::allow_tf32();
  CHECK(!tf32_before);  // FP32 by default
  cuda::set_allow_tf32(true);
  CHECK(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  CHECK(!cuda::allow_tf32());

  cuda::PinnedBuffer buffer(1000);
  REQUIRE(buffer.data() != nullptr);
  CHECK(buffer.size() == 1000);
  CHECK(buffer.pinned() == cuda_available());
  CHECK(reinterpret_cast<uintptr_t>(buffer.data()) % 64 == 0);  // page-locked memory is page aligned
  std::memset(buffer.data(), 7, 1000);
  cuda::PinnedBuffer moved(std::move(buffer));
  CHECK(buffer.data() == nullptr);
  CHECK(moved.size() == 1000);
  CHECK(static_cast<unsigned char*>(moved.data())[999] == 7);
  CHECK(cuda::PinnedBuffer(0).data() == nullptr);
  if (cuda_available()) {  // pinned memory is an ordinary source and destination of copies
    cuda::PinnedBuffer out(1000);
    Tensor on_gpu = empty({1000}, on(DType::UInt8, kCuda));
    copy_bytes(on_gpu.raw_data(), kCuda, moved.data(), Device::cpu(), 1000);
    copy_bytes(out.data(), Device::cpu(), on_gpu.raw_data(), kCuda, 1000);
    CHECK(std::memcmp(out.data(), moved.data(), 1000) == 0);
  }
}

TEST_CASE("pinned tensors: page-locked where a GPU is present, the same values, and copies that do not wait") {
  const Tensor source = test::random({3, 5, 7}, 41);
  const Tensor pinned = source.pin_memory();
  CHECK(pinned.is_pinned() == cuda_available());  // ordinary memory without a GPU to lock pages for
  CHECK(!source.is_pinned());
  CHECK(pinned.device() == Device::cpu());
  CHECK(pinned.to_vector<double>() == source.to_vector<double>());
  if (pinned.is_pinned()) CHECK(pinned.pin_memory().storage() == pinned.storage());  // pinned already: itself
  // A non-contiguous view is pinned as a contiguous copy of its values.
  const Tensor view = source.slice(2, 1, 7, 2).pin_memory();
  CHECK(view.is_contiguous());
  CHECK(view.to_vector<double>() == source.slice(2, 1, 7, 2).to_vector<double>());
  const Tensor factory = full({4, 4}, 2.5, TensorOptions().pinned_memory(true));
  CHECK(factory.is_pinned() == cuda_available());
  CHECK(factory.to_vector<float>() == std::vector<float>(16, 2.5f));
  // Gradients pass through pin_memory as through a copy.
  Tensor leaf = test::random({4}, 42);
  leaf.set_requires_grad(true);
  sum(mul(leaf.pin_memory(), 3.0)).backward();
  CHECK(leaf.grad().to_vector<double>() == std::vector<double>(4, 3.0));
  // Pinned memory is host memory: a CUDA tensor cannot be pinned or made pinned.
  CHECK_THROWS_WITH_AS(empty({2}, TensorOptions().device(kCuda).pinned_memory(true)),
                       doctest::Contains("pinned memory is host memory"), Error);
  if (!cuda_available()) {
    // non_blocking has no GPU to act on: the flag changes nothing for a copy between host tensors.
    CHECK(pinned.to(Device::cpu(), true).storage() == pinned.storage());
    return;
  }
  CHECK_THROWS_WITH_AS(source.to(kCuda).pin_memory(), doctest::Contains("[pin_memory]"), Error);

  // Copies enqueued without waiting, the source released at once: the storage's release waits for the
  // copy, so the device sees the values; several copies from one storage, and one of a view into it.
  std::vector<Tensor> on_device;
  std::vector<std::vector<double>> expected;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Tensor host = test::random({256, 1024}, 100 + seed).pin_memory();  // 2 MiB: a copy that takes a while
    expected.push_back(host.to_vector<double>());
    on_device.push_back(host.to(kCuda, /*non_blocking=*/true));
    on_device.push_back(host.to(kCuda, /*non_blocking=*/true));
    expected.push_back(expected.back());
    on_device.push_back(host.narrow(0, 128, 64).to(kCuda, /*non_blocking=*/true));
    expected.push_back(host.narrow(0, 128, 64).to_vector<double>());
  }  // each `host` is released here, its copies perhaps still in flight
  for (size_t i = 0; i < on_device.size(); ++i) {
    CAPTURE(i);
    CHECK(on_device[i].device() == kCuda);
    CHECK(on_device[i].to_vector<double>() == expected[i]);
  }
  // From pageable memory non_blocking changes nothing; the result is the same.
  CHECK(source.to(kCuda, true).to_vector<double>() == source.to_vector<double>());
  // Waiting on a storage without copies in flight, or after them, returns at once.
  const Tensor settled = test::random({64}, 7).pin_memory();
  settled.storage()->wait_for_device_reads();
  const Tensor up = settled.to(kCuda, true);
  settled.storage()->wait_for_device_reads();
  CHECK(up.to_vector<double>() == settled.to_vector<double>());
}

// --- the allocator -----------------------------------------------------------------------------------

TEST_CASE("cuda runtime: the caching allocator rounds, splits, reuses, coalesces and releases") {
  ISRN_REQUIRE_CUDA();
  auto bytes = [](int64_t n) { return empty({n}, on(DType::UInt8, kCuda)); };
  auto address = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()); };
  cuda::empty_cache();  // no small segment survives: every test tensor of earlier cases is gone
  const cuda::MemoryStats s0 = cuda::memory_stats();

  if (!cuda::caching_enabled()) {  // ISRN_CUDA_NO_CACHE=1: exact sizes, one cudaMalloc each
    Tensor a = bytes(1);
    cuda::MemoryStats s = cuda::memory_stats();
    CHECK(s.active_bytes - s0.active_bytes == 1);
    CHECK(s.num_device_mallocs - s0.num_device_mallocs == 1);
    a = Tensor();
    s = cuda::memory_stats();
    CHECK(s.active_bytes == s0.active_bytes);
    CHECK(s.num_device_frees - s0.num_device_frees == 1);
    return;
  }

  // Small pool: 1 byte becomes a 512-byte block carved from a new 2 MiB segment.
  Tensor a = bytes(1);
  cuda::MemoryStats s = cuda::memory_stats();
  CHECK(s.active_bytes - s0.active_bytes == 512);
  CHECK(s.reserved_bytes - s0.reserved_bytes == 2 * kMiB);
  CHECK(s.num_device_mallocs - s0.num_device_mallocs == 1);
  // The next request is carved from the remainder, right behind the first block.
  Tensor b = bytes(1000);
  s = cuda::memory_stats();
  CHECK(s.active_bytes - s0.active_bytes == 512 + 1024);
  CHECK(s.num_device_mallocs - s0.num_device_mallocs == 1);
  CHECK(address(b) == address(a) + 512);
  // A freed block is reused by the best-fitting request (512 B fits a's hole, not the big remainder).
  const uintptr_t a_at = address(a);
  a = Tensor();
  Tensor c = bytes(300);
  CHECK(address(c) == a_at);
  // Everything freed coalesces back into one segment, which empty_cache returns to the driver.
  b = Tensor();
  c = Tensor();
  s = cuda::memory_stats();
  CHECK(s.active_bytes == s0.active_bytes);
  CHECK(s.reserved_bytes - s0.reserved_bytes == 2 * kMiB);  // cached, not freed
  cuda::empty_cache();
  s = cuda::memory_stats();
  CHECK(s.reserved_bytes == s0.reserved_bytes);
  CHECK(s.num_device_frees - s0.num_device_frees == 1);

  // Large pool: 3 MiB carves a 20 MiB segment; a second 3 MiB comes from its remainder.
  Tensor l1 = bytes(3 * kMiB);
  Tensor l2 = bytes(3 * kMiB);
  s = cuda::memory_stats();
  CHECK(s.reserved_bytes - s0.reserved_bytes == 20 * kMiB);
  CHECK(s.active_bytes - s0.active_bytes == 6 * kMiB);
  CHECK(address(l2) == address(l1) + 3 * kMiB);
  l1 = Tensor();
  l2 = Tensor();
  cuda::empty_cache();
  // Above 10 MiB the segment is the request rounded up to 2 MiB; a remainder of ≤ 1 MiB is not
  // split off, so the block keeps it (11 MiB + 1 → a 12 MiB block).
  Tensor big = bytes(11 * kMiB + 1);
  s = cuda::memory_stats();
  CHECK(s.reserved_bytes - s0.reserved_bytes == 12 * kMiB);
  CHECK(s.active_bytes - s0.active_bytes == 12 * kMiB);

  // Peaks follow the high-water mark and reset to the current value.
  cuda::reset_peak_stats();
  {
    Tensor extra = bytes(5 * kMiB);
  }
  s = cuda::memory_stats();
  CHECK(s.peak_active_bytes - s.active_bytes == 5 * kMiB);
  cuda::reset_peak_stats();
  CHECK(cuda::memory_stats().peak_active_bytes == cuda::memory_stats().active_bytes);
  big = Tensor();
  cuda::empty_cache();
  s = cuda::memory_stats();
  CHECK(s.reserved_bytes == s0.reserved_bytes);
  CHECK(s.active_bytes == s0.active_bytes);
  CHECK(s.num_device_mallocs - s0.num_device_mallocs == s.num_device_frees - s0.num_device_frees);
}

TEST_CASE("cuda runtime: allocations from several threads keep the allocator's books balanced") {
  ISRN_REQUIRE_CUDA();
  const cuda::MemoryStats before = cuda::memory_stats();
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t, &mismatches] {
      Generator gen(static_cast<uint64_t>(t) + 1);
      std::vector<Tensor> live;
      for (int i = 0; i < 200; ++i) {
        // Sizes across both pools; each tensor holds its own value, so overlapping blocks would show.
        const int64_t n = 1 + static_cast<int64_t>(gen.uniform() * (gen.uniform() < 0.9 ? 4000.0 : 400000.0));
        live.push_back(full({n}, static_cast<double>(t * 1000 + i), on(DType::Float32, kCuda)));
        if (live.size() > 6) live.erase(live.begin() + static_cast<int64_t>(gen.uniform() * 6));
      }
      for (const Tensor& x : live) {
        const float v = x.to_vector<float>()[0];
        if (max(x).item<float>() != v || min(x).item<float>() != v) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
  const cuda::MemoryStats after = cuda::memory_stats();
  CHECK(after.active_bytes == before.active_bytes);
  CHECK(after.reserved_bytes >= after.active_bytes);
}

TEST_CASE("cuda runtime: running out of device memory raises isrn::Error naming the request") {
  ISRN_REQUIRE_CUDA();
  const int64_t tebibyte = int64_t{1} << 40;
  CHECK_THROWS_WITH_AS(empty({tebibyte}, on(DType::UInt8, kCuda)),
                       doctest::Contains("out of memory allocating 1099511627776 bytes"), Error);
  // The failure leaves no error behind: the device keeps working.
  Tensor x = full({1000}, 2.0, on(DType::Float32, kCuda));
  CHECK(sum(x).item<float>() == 2000.0f);
  CHECK_THROWS_WITH_AS(empty({4}, TensorOptions().device(Device::cuda(cuda_device_count()))),
                       doctest::Contains("does not exist"), Error);
}

// --- copies ------------------------------------------------------------------------------------------

TEST_CASE("cuda runtime: host-device round trips and conversions of every dtype, non-contiguous") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (DType dtype : all_dtypes()) {
    CAPTURE(dtype);
    // Values in [0, 100): every conversion below is exact or rounds the same way on both sides.
    Tensor host = random_of(dtype, {7, 13, 3}, ++seed, 0.0, 100.0);
    Tensor views[] = {host, host.transpose(0, 2), host.slice(1, 1, 12, 3), host.select(2, 1),
                      host.slice(0, 2, 3).expand({4, 13, 3}), host.narrow(0, 0, 0)};
    for (const Tensor& view : views) {
      CAPTURE(shape_str(view.shape()));
      Tensor device = view.to(kCuda);
      CHECK(device.device() == kCuda);
      check_identical(device.to(Device::cpu()), view.contiguous(), "host → device → host");
      // Non-contiguous on the device: strided copy kernels, then device → host.
      Tensor device_view = host.to(kCuda).transpose(0, 1);
      check_identical(device_view.to(Device::cpu()), host.transpose(0, 1).contiguous(), "strided device → host");
      check_identical(device_view.clone().to(Device::cpu()), host.transpose(0, 1).contiguous(), "device clone");
      for (DType target : all_dtypes()) {
        CAPTURE(target);
        check_identical(device.to(target).to(Device::cpu()), view.to(target), "conversion on the device");
        check_identical(device_view.to(target).to(Device::cpu()), host.transpose(0, 1).to(target),
                        "strided conversion on the device");
      }
    }
  }
  // A scalar and an empty tensor.
  check_identical(scalar_tensor(3.5, on(DType::Float64, kCuda)).to(Device::cpu()), scalar_tensor(3.5, DType::Float64),
                  "0-d");
  CHECK(empty({0, 5}, on(DType::Float32, kCuda)).to(Device::cpu()).numel() == 0);
}

TEST_CASE("cuda kernels: fill and copy_ through views and broadcasts match the CPU") {
  ISRN_REQUIRE_CUDA();
  for (DType dtype : all_dtypes()) {
    CAPTURE(dtype);
    Tensor cpu = zeros({5, 9, 4}, dtype), gpu = zeros({5, 9, 4}, on(dtype, kCuda));
    for (Tensor* t : {&cpu, &gpu}) {
      t->slice(1, 1, 9, 2).fill_(3.0);                  // strided
      t->select(2, 3).fill_(1.0);                       // another stride
      t->select(0, 4).copy_(random_of(dtype, {4, 9}, 7, 0.0, 50.0).to(t->device()).transpose(0, 1));  // strided source
      t->select(0, 0).copy_(random_of(dtype, {4}, 8, 0.0, 50.0).to(t->device()));  // broadcast source
    }
    check_identical(gpu.to(Device::cpu()), cpu, "fill and copy_");
  }
  Tensor odd = full({1}, 5.0, on(DType::Int64, kCuda)).expand({3, 1}).contiguous();  // stride-0 source
  check_identical(odd.to(Device::cpu()), full({3, 1}, 5.0, DType::Int64), "expanded copy");
}

// --- elementwise ---------------------------------------------------------------------------------------

TEST_CASE("cuda kernels: unary ops and their gradients match the CPU") {
  ISRN_REQUIRE_CUDA();
  // CUDA's float libm is within 2 ulp (powf 4) of the exact value, glibc's within 1, and the composite
  // forms (pow's gradient, sigmoid, softplus) add a few roundings: float32 agrees to ~16 ulp = 2e-6
  // relative, float64 to ~1e-15. atol covers results near zero (log near 1) and sigmoid's gradient
  // y(1−y), which moves by 6e-8·|g| when y near 1 rounds one ulp differently.
  struct Case {
    UnaryOp op;
    double lo, hi, p0, p1;
  };
  const Case cases[] = {{UnaryOp::Neg, -3, 3, 0, 0},       {UnaryOp::Exp, -5, 5, 0, 0},
                        {UnaryOp::Log, 0.01, 9, 0, 0},     {UnaryOp::Sqrt, 0.01, 9, 0, 0},
                        {UnaryOp::Abs, -3, 3, 0, 0},       {UnaryOp::Pow, 0.1, 3, 2.5, 0},
                        {UnaryOp::Clamp, -3, 3, -1, 1.5},  {UnaryOp::Relu, -3, 3, 0, 0},
                        {UnaryOp::Sigmoid, -9, 9, 0, 0},   {UnaryOp::Softplus, -30, 30, 0, 0},
                        {UnaryOp::LogSigmoid, -30, 30, 0, 0}};
  uint64_t seed = 200;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const double rtol = dtype == DType::Float32 ? 2e-6 : 1e-14, atol = dtype == DType::Float32 ? 3e-7 : 1e-15;
    for (const Case& c : cases) {
      CAPTURE(dtype);
      CAPTURE(static_cast<int>(c.op));
      Tensor base = test::random({37, 65}, ++seed, c.lo, c.hi).to(dtype);
      Tensor x_cpu = base.transpose(0, 1).detach().set_requires_grad(true);       // non-contiguous
      Tensor x_gpu = base.to(kCuda).transpose(0, 1).detach().set_requires_grad(true);
      Tensor y_cpu = unary(c.op, x_cpu, c.p0, c.p1), y_gpu = unary(c.op, x_gpu, c.p0, c.p1);
      check_close(y_gpu, y_cpu, rtol, atol, "forward");
      Tensor g = test::random({65, 37}, ++seed, -1, 1).to(dtype);
      y_cpu.backward(g);
      y_gpu.backward(g.to(kCuda));
      check_close(x_gpu.grad(), x_cpu.grad(), rtol, atol, "backward");
    }
    // Extreme logits: the stable forms stay finite and agree.
    Tensor extreme = from_vector<double>({-300, -80, -20, 0, 20, 80, 300}).to(dtype);
    for (UnaryOp op : {UnaryOp::Sigmoid, UnaryOp::Softplus, UnaryOp::LogSigmoid})
      check_close(unary(op, extreme.to(kCuda)), unary(op, extreme), rtol, atol, "extreme inputs");
  }
  // Integers: the ops that stay in their type are exact.
  for (DType dtype : {DType::Int32, DType::Int64, DType::UInt8}) {
    const auto [x, x_gpu] = host_and_gpu(random_of(dtype, {11, 7}, ++seed, dtype == DType::UInt8 ? 0.0 : -50.0, 50.0),
                                         [](const Tensor& t) { return t.transpose(0, 1); });
    for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Clamp})
      check_identical(unary(op, x_gpu, 3, 20).to(Device::cpu()), unary(op, x, 3, 20), "integer unary");
  }
  CHECK(unary(UnaryOp::Exp, empty({0, 3}, on(DType::Float32, kCuda))).numel() == 0);
}

TEST_CASE("cuda kernels: binary, scalar, comparison and where ops match the CPU exactly") {
  ISRN_REQUIRE_CUDA();
  // IEEE +, -, *, / are correctly rounded on both devices (isrn builds without fast math): exact.
  uint64_t seed = 300;
  const BinaryOp binary_ops[] = {BinaryOp::Add, BinaryOp::Sub,     BinaryOp::Mul,
                                 BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum};
  const CompareOp compare_ops[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt,
                                   CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::UInt8}) {
    CAPTURE(dtype);
    // Divisors are kept away from zero; small integer ranges give ties for the comparisons.
    const auto [a, a_gpu] = host_and_gpu(random_of(dtype, {3, 17, 5}, ++seed, 1.0, 9.0),
                                         [](const Tensor& t) { return t.permute({2, 0, 1}); });  // [5, 3, 17], strided
    Tensor b = random_of(dtype, {3, 1}, ++seed, 1.0, 9.0);  // broadcast
    Tensor b_gpu = b.to(kCuda);
    for (BinaryOp op : binary_ops) {
      CAPTURE(static_cast<int>(op));
      check_identical(binary(op, a_gpu, b_gpu).to(Device::cpu()), binary(op, a, b), "binary");
      check_identical(binary(op, b_gpu, a_gpu).to(Device::cpu()), binary(op, b, a), "binary swapped");
    }
    check_identical(add(a_gpu, 2.0).to(Device::cpu()), add(a, 2.0), "add scalar");
    check_identical(mul(a_gpu, 3.0).to(Device::cpu()), mul(a, 3.0), "mul scalar");
    check_identical(div(a_gpu, 2.0).to(Device::cpu()), div(a, 2.0), "div scalar");
    check_identical(sub(a_gpu, 1.0).to(Device::cpu()), sub(a, 1.0), "sub scalar");
    for (CompareOp op : compare_ops) {
      CAPTURE(static_cast<int>(op));
      check_identical(compare(op, a_gpu, b_gpu).to(Device::cpu()), compare(op, a, b), "compare");
    }
    Tensor cond = random_of(DType::Bool, {5, 1, 17}, ++seed);
    check_identical(where(cond.to(kCuda), a_gpu, b_gpu).to(Device::cpu()), where(cond, a, b), "where");
  }
  // Comparisons of bools, and NaN in float comparisons.
  Tensor p = random_of(DType::Bool, {40}, 1), q = random_of(DType::Bool, {40}, 2);
  check_identical(eq(p.to(kCuda), q.to(kCuda)).to(Device::cpu()), eq(p, q), "bool eq");
  Tensor n = from_vector<float>({std::nanf(""), 1.0f, -0.0f}), m = from_vector<float>({1.0f, std::nanf(""), 0.0f});
  for (CompareOp op : compare_ops)
    check_identical(compare(op, n.to(kCuda), m.to(kCuda)).to(Device::cpu()), compare(op, n, m), "NaN compare");
}

// --- reductions ----------------------------------------------------------------------------------------

TEST_CASE("cuda kernels: row sums, maxima and minima match with first-index ties and NaN") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 400;
  // Row lengths on both sides of the warp/block switch (512) and not multiples of 32.
  for (int64_t n : {1, 7, 33, 512, 513, 5001}) {
    for (int64_t m : {1, 3, 37}) {
      CAPTURE(n);
      CAPTURE(m);
      // float32 sums accumulate in float on the GPU: at most (n/32 + 10)·2^-24·Σ|x| from the exact
      // sum (see src/cuda/reduce.cu), plus the final rounding of the double reference.
      Tensor x64 = test::random({n, m}, ++seed);  // summed along dim 0: a transposed view of rows
      Tensor x32 = x64.to(DType::Float32);
      Tensor s = sum(x32.to(kCuda), {0});
      Tensor exact = sum(x32.to(DType::Float64), {0});
      Tensor abs_total = sum(abs(x32.to(DType::Float64)), {0});
      const auto got = test::values(s), want = test::values(exact), scale = test::values(abs_total);
      const double ulp = std::ldexp(1.0, -24);
      for (int64_t r = 0; r < m; ++r)
        CHECK(std::abs(got[r] - want[r]) <= (static_cast<double>(n) / 32 + 10) * ulp * scale[r] + ulp * std::abs(want[r]));
      check_close(sum(x64.to(kCuda), {0}), sum(x64, {0}), 1e-13, 1e-13, "float64 sum");
      // Integers from a small range: many ties, exact sums; the index of the first extremum wins.
      Tensor xi = random_of(DType::Int32, {m, n}, ++seed, -3.0, 3.0);
      check_identical(sum(xi.to(kCuda), {1}).to(Device::cpu()), sum(xi, {1}), "int sum");
      for (bool is_max : {true, false}) {
        const ValuesIndices c = is_max ? max(xi, 1) : min(xi, 1), g = is_max ? max(xi.to(kCuda), 1) : min(xi.to(kCuda), 1);
        check_identical(g.values.to(Device::cpu()), c.values, "int extremum values");
        check_identical(g.indices.to(Device::cpu()), c.indices, "int extremum indices (first)");
        const ValuesIndices cf = is_max ? max(x32, 0) : min(x32, 0), gf = is_max ? max(x32.to(kCuda), 0) : min(x32.to(kCuda), 0);
        check_identical(gf.values.to(Device::cpu()), cf.values, "float extremum values");
        check_identical(gf.indices.to(Device::cpu()), cf.indices, "float extremum indices");
      }
      // NaN wins wherever it is; with two NaNs, the first.
      std::vector<double> v = test::random({m, n}, ++seed).to_vector<double>();
      std::vector<int64_t> first_nan(m);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t p1 = (r * 7) % n, p2 = (r * 13 + 1) % n;
        v[r * n + p1] = v[r * n + p2] = std::nan("");
        first_nan[r] = std::min(p1, p2);
      }
      Tensor xn = from_vector(v, {m, n}).to(DType::Float32);
      for (bool is_max : {true, false}) {
        const ValuesIndices g = is_max ? max(xn.to(kCuda), 1) : min(xn.to(kCuda), 1);
        CHECK(g.indices.to_vector<int64_t>() == first_nan);
        for (float value : g.values.to_vector<float>()) CHECK(std::isnan(value));
      }
    }
  }
  CHECK(sum(empty({0, 4}, on(DType::Float32, kCuda)), {0}).to(Device::cpu()).to_vector<float>() ==
        std::vector<float>(4, 0.0f));
}

// --- sorting -----------------------------------------------------------------------------------------

namespace {

// Stable order of one row: ascending or descending by value, NaN the largest, -0 equal to +0,
// ties by ascending index.
std::vector<int64_t> reference_order(const std::vector<double>& row, bool descending) {
  std::vector<int64_t> order(row.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    const double a = row[i], b = row[j];
    const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
    if (a_nan || b_nan) return descending ? (a_nan && !b_nan) : (b_nan && !a_nan);
    return descending ? a > b : a < b;
  });
  return order;
}

// Rows with many ties; floats also get NaN, -0 and +0.
Tensor tie_heavy(DType dtype, int64_t m, int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v(static_cast<size_t>(m * n));
  for (auto& x : v) x = std::floor(gen.uniform() * 6.0);  // 0..5
  if (is_floating(dtype)) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (i % 11 == 3) v[i] = std::nan("");
      if (i % 13 == 5) v[i] = -0.0;
      if (i % 13 == 6) v[i] = 0.0;
      if (i % 17 == 1) v[i] = -v[i] - 0.5;
    }
  }
  Tensor t = from_vector(v, {m, n});
  return dtype == DType::Bool ? gt(t, 2.5) : t.to(dtype);
}

}  // namespace

TEST_CASE("cuda kernels: sort_rows and topk_rows are stable, ties by index, NaN largest") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 500;
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {1, 1000}, {1, 5003}, {4, 37}, {33, 300}, {2, 1}};
  for (DType dtype : all_dtypes()) {
    for (auto [m, n] : shapes) {
      CAPTURE(dtype);
      CAPTURE(m);
      CAPTURE(n);
      Tensor x = tie_heavy(dtype, m, n, ++seed);
      const std::vector<double> xs = test::values(x);
      Tensor xg = x.to(kCuda);
      for (bool descending : {false, true}) {
        CAPTURE(descending);
        Tensor values = empty({m, n}, on(dtype, kCuda)), indices = empty({m, n}, on(DType::Int64, kCuda));
        cuda::sort_rows(xg, descending, values, indices);
        const std::vector<int64_t> got = indices.to_vector<int64_t>();
        const std::vector<double> got_values = test::values(values);
        for (const int64_t k : {int64_t{1}, std::min<int64_t>(5, n), n}) {
          Tensor top_values = empty({m, k}, on(dtype, kCuda)), top_indices = empty({m, k}, on(DType::Int64, kCuda));
          cuda::topk_rows(xg, k, descending, top_values, top_indices);
          const std::vector<int64_t> top = top_indices.to_vector<int64_t>();
          const std::vector<double> top_v = test::values(top_values);
          for (int64_t r = 0; r < m; ++r) {
            const std::vector<double> row(xs.begin() + r * n, xs.begin() + (r + 1) * n);
            const std::vector<int64_t> want = reference_order(row, descending);
            for (int64_t j = 0; j < k; ++j) {
              REQUIRE_MESSAGE(top[r * k + j] == want[j], "topk row ", r, " position ", j);
              const double expect = row[want[j]], value = top_v[r * k + j];
              CHECK(((std::isnan(expect) && std::isnan(value)) ||
                     (expect == value && std::signbit(expect) == std::signbit(value))));
            }
            if (k != n) continue;
            for (int64_t j = 0; j < n; ++j) {
              REQUIRE_MESSAGE(got[r * n + j] == want[j], "sort row ", r, " position ", j);
              const double expect = row[want[j]], value = got_values[r * n + j];
              CHECK(((std::isnan(expect) && std::isnan(value)) ||
                     (expect == value && std::signbit(expect) == std::signbit(value))));
            }
          }
        }
      }
    }
  }
  // Empty rows and k = 0 launch nothing.
  Tensor none = empty({3, 0}, on(DType::Float32, kCuda)), none_i = empty({3, 0}, on(DType::Int64, kCuda));
  cuda::sort_rows(none, false, none, none_i);
  cuda::topk_rows(full({2, 4}, 1.0, on(DType::Float32, kCuda)), 0, true, none, none_i);
}

// --- indexing ------------------------------------------------------------------------------------------

namespace {

int64_t flat3(const Shape& s, int64_t i, int64_t j, int64_t k) { return (i * s[1] + j) * s[2] + k; }

// Random indices in [0, bound) of the given shape and dtype.
Tensor random_index(const Shape& shape, int64_t bound, DType dtype, uint64_t seed) {
  return test::random(shape, seed, 0.0, static_cast<double>(bound)).to(DType::Int64).to(dtype);  // truncates
}

// index_add / scatter_add, either device.
using AddKernel = void (*)(const Tensor& grad_out, int64_t dim, const Tensor& index, Tensor& grad_x);

// A CUDA add kernel's grad_x against its CPU twin (the same additions in the same order: the same bits) and
// against a rerun of itself.
void check_add_is_deterministic(const char* op, AddKernel on_gpu, AddKernel on_cpu, const Tensor& grad_out,
                                const Tensor& grad_out_gpu, int64_t dim, const Tensor& index,
                                const Tensor& index_gpu, const Tensor& grad_x) {
  Tensor grad_x_cpu = zeros(grad_x.shape(), TensorOptions(grad_x.dtype()));
  on_cpu(grad_out.contiguous(), dim, index.contiguous(), grad_x_cpu);
  check_close(grad_x, grad_x_cpu, 0, 0, std::string(op) + ", CUDA against the CPU twin");
  Tensor rerun = zeros(grad_x.shape(), on(grad_x.dtype(), kCuda));
  on_gpu(grad_out_gpu, dim, index_gpu, rerun);
  check_close(rerun, grad_x, 0, 0, std::string(op) + ", rerun");
}

}  // namespace

TEST_CASE("cuda kernels: index_select and index_add along every dim, strided, both index dtypes") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 600;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (DType index_dtype : {DType::Int64, DType::Int32}) {
      for (int64_t dim = 0; dim < 3; ++dim) {
        CAPTURE(dtype);
        CAPTURE(index_dtype);
        CAPTURE(dim);
        const auto [x, x_gpu] = host_and_gpu(test::random({3, 7, 5}, ++seed).to(dtype),
                                             [](const Tensor& t) { return t.transpose(0, 2); });  // [5, 7, 3], strided
        const Shape xs = x.shape();
        const int64_t length = 9;  // longer than some dims: indices repeat
        Tensor index_base = random_index({2 * length}, xs[dim], index_dtype, ++seed);
        const auto [index, index_gpu] = host_and_gpu(index_base, [&](const Tensor& t) {
          return t.slice(0, 0, 2 * length, 2);  // a strided 1-D index
        });
        Shape os = xs;
        os[dim] = length;
        Tensor out = empty(os, on(dtype, kCuda));
        REQUIRE(!x_gpu.is_contiguous());  // the strided kernel path, not a contiguous copy
        cuda::index_select(x_gpu, dim, index_gpu, out);
        const auto xv = test::values(x.contiguous()), iv = test::values(index);
        std::vector<double> want(static_cast<size_t>(shape_numel(os)));
        for (int64_t i = 0; i < os[0]; ++i)
          for (int64_t j = 0; j < os[1]; ++j)
            for (int64_t k = 0; k < os[2]; ++k) {
              int64_t at[3] = {i, j, k};
              at[dim] = static_cast<int64_t>(iv[at[dim]]);
              want[flat3(os, i, j, k)] = xv[flat3(xs, at[0], at[1], at[2])];
            }
        check_close(out, want, 0, 0, "index_select");

        // index_add: the transpose of index_select; repeated indices accumulate.
        const auto [grad_out, grad_out_gpu] = host_and_gpu(test::random({os[2], os[1], os[0]}, ++seed).to(dtype),
                                                           [](const Tensor& t) { return t.permute({2, 1, 0}); });
        Tensor grad_x = zeros(xs, on(dtype, kCuda));
        cuda::index_add(grad_out_gpu, dim, index_gpu, grad_x);
        const auto gv = test::values(grad_out.contiguous());
        std::vector<double> acc(static_cast<size_t>(shape_numel(xs)), 0.0);
        for (int64_t i = 0; i < os[0]; ++i)
          for (int64_t j = 0; j < os[1]; ++j)
            for (int64_t k = 0; k < os[2]; ++k) {
              int64_t at[3] = {i, j, k};
              at[dim] = static_cast<int64_t>(iv[at[dim]]);
              acc[flat3(xs, at[0], at[1], at[2])] += gv[flat3(os, i, j, k)];
            }
        // At most a few terms per cell, summed in index order: a few roundings of the type.
        check_close(grad_x, acc, dtype == DType::Float32 ? 1e-6 : 1e-14, 1e-6, "index_add");
        check_add_is_deterministic("index_add", cuda::index_add, cpu::index_add, grad_out, grad_out_gpu, dim, index,
                                   index_gpu, grad_x);
      }
    }
  }
  // Every dtype can be selected; an empty index selects nothing.
  for (DType dtype : all_dtypes()) {
    Tensor x = random_of(dtype, {4, 6}, ++seed, 0.0, 50.0);
    Tensor index = from_vector<int64_t>({5, 0, 5, 2});
    Tensor out = empty({4, 4}, on(dtype, kCuda));
    cuda::index_select(x.to(kCuda), 1, index.to(kCuda), out);
    Tensor want = empty({4, 4}, dtype);
    const std::vector<int64_t> picks = index.to_vector<int64_t>();
    for (int64_t j = 0; j < 4; ++j) want.select(1, j).copy_(x.select(1, picks[j]));
    check_identical(out.to(Device::cpu()), want, "index_select dtype");
  }
}

TEST_CASE("cuda kernels: gather and scatter_add along every dim, strided, both index dtypes") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 700;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (DType index_dtype : {DType::Int64, DType::Int32}) {
      for (int64_t dim = 0; dim < 3; ++dim) {
        CAPTURE(dtype);
        CAPTURE(index_dtype);
        CAPTURE(dim);
        const auto [x, x_gpu] = host_and_gpu(test::random({4, 5, 6}, ++seed).to(dtype),
                                             [](const Tensor& t) { return t.permute({2, 0, 1}); });  // [6, 4, 5], strided
        const Shape xs = x.shape();
        // The index may be smaller than x in the other dims and longer along dim (repeats).
        Shape is = {5, 3, 4};
        is[dim] = 9;
        const auto [index, index_gpu] = host_and_gpu(random_index({is[2], is[1], is[0]}, xs[dim], index_dtype, ++seed),
                                                     [](const Tensor& t) { return t.permute({2, 1, 0}); });
        Tensor out = empty(is, on(dtype, kCuda));
        cuda::gather(x_gpu, dim, index_gpu, out);
        const auto xv = test::values(x.contiguous()), iv = test::values(index.contiguous());
        std::vector<double> want(static_cast<size_t>(shape_numel(is)));
        for (int64_t i = 0; i < is[0]; ++i)
          for (int64_t j = 0; j < is[1]; ++j)
            for (int64_t k = 0; k < is[2]; ++k) {
              int64_t at[3] = {i, j, k};
              at[dim] = static_cast<int64_t>(iv[flat3(is, i, j, k)]);
              want[flat3(is, i, j, k)] = xv[flat3(xs, at[0], at[1], at[2])];
            }
        check_close(out, want, 0, 0, "gather");

        const auto [grad_out, grad_out_gpu] = host_and_gpu(test::random({is[1], is[0], is[2]}, ++seed).to(dtype),
                                                           [](const Tensor& t) { return t.transpose(0, 1); });
        Tensor grad_x = zeros(xs, on(dtype, kCuda));
        cuda::scatter_add(grad_out_gpu, dim, index_gpu, grad_x);
        const auto gv = test::values(grad_out.contiguous());
        std::vector<double> acc(static_cast<size_t>(shape_numel(xs)), 0.0);
        for (int64_t i = 0; i < is[0]; ++i)
          for (int64_t j = 0; j < is[1]; ++j)
            for (int64_t k = 0; k < is[2]; ++k) {
              int64_t at[3] = {i, j, k};
              at[dim] = static_cast<int64_t>(iv[flat3(is, i, j, k)]);
              acc[flat3(xs, at[0], at[1], at[2])] += gv[flat3(is, i, j, k)];
            }
        // A handful of terms per cell in index order: a few roundings of the type.
        check_close(grad_x, acc, dtype == DType::Float32 ? 1e-6 : 1e-14, 1e-6, "scatter_add");
        check_add_is_deterministic("scatter_add", cuda::scatter_add, cpu::scatter_add, grad_out, grad_out_gpu, dim,
                                   index, index_gpu, grad_x);
      }
    }
  }
  // Empty indices touch nothing.
  Tensor x = full({3, 4}, 1.0, on(DType::Float32, kCuda));
  Tensor none = empty({0, 4}, on(DType::Float32, kCuda));
  cuda::index_select(x, 0, empty({0}, on(DType::Int64, kCuda)), none);
  cuda::gather(x, 0, empty({0, 4}, on(DType::Int64, kCuda)), none);
  Tensor untouched = zeros({3, 4}, on(DType::Float32, kCuda));
  cuda::scatter_add(none, 0, empty({0, 4}, on(DType::Int64, kCuda)), untouched);
  cuda::index_add(none, 0, empty({0}, on(DType::Int64, kCuda)), untouched);
  check_close(untouched, std::vector<double>(12, 0.0), 0, 0, "empty scatter");
}

TEST_CASE("cuda kernels: nonzero_flat lists the true positions in order") {
  ISRN_REQUIRE_CUDA();
  uint64_t seed = 800;
  for (int64_t n : {0, 1, 7, 1000, 100003}) {
    for (double density : {0.0, 0.03, 0.5, 1.0}) {
      CAPTURE(n);
      CAPTURE(density);
      Tensor mask = lt(test::random({n}, ++seed, 0.0, 1.0), density);
      if (density == 1.0) mask = gt(test::random({n}, seed, 0.0, 1.0), -1.0);  // all true
      std::vector<int64_t> want;
      const std::vector<bool> mv = mask.to_vector<bool>();
      for (int64_t i = 0; i < n; ++i)
        if (mv[i]) want.push_back(i);
      Tensor got = cuda::nonzero_flat(mask.to(kCuda));
      CHECK(got.device() == kCuda);
      CHECK(got.dtype() == DType::Int64);
      CHECK(got.to_vector<int64_t>() == want);
    }
  }
  // A 2-D mask is flattened in row-major order.
  Tensor mask = from_vector<bool>({false, true, true, false, false, true}, {2, 3});
  CHECK(cuda::nonzero_flat(mask.to(kCuda)).to_vector<int64_t>() == std::vector<int64_t>{1, 2, 5});
}

// --- matmul ------------------------------------------------------------------------------------------

namespace {

// The operand as stored for cuBLAS in several layouts, each as a (host, GPU) pair of the same view:
// contiguous, rows padded (ld > width), column-major (a transposed view), batch-broadcast
// (stride 0), and an element-expanded view that fits no cuBLAS layout (copied).
std::vector<std::tuple<std::string, Tensor, Tensor>> layouts(const Tensor& t, uint64_t seed) {
  const int64_t b = t.size(0), r = t.size(1), c = t.size(2);
  std::vector<std::tuple<std::string, Tensor, Tensor>> out;
  auto add = [&](const std::string& name, const Tensor& base, auto view) {
    auto [host, gpu] = host_and_gpu(base, view);
    out.emplace_back(name, host, gpu);
  };
  add("contiguous", t, [](const Tensor& u) { return u; });
  Tensor padded = test::random({b, r, c + 3}, seed).to(t.dtype());
  padded.narrow(2, 0, c).copy_(t);
  add("padded rows", padded, [c](const Tensor& u) { return u.narrow(2, 0, c); });
  add("column-major", t.transpose(1, 2).contiguous(), [](const Tensor& u) { return u.transpose(1, 2); });
  add("batch broadcast", t, [b, r, c](const Tensor& u) { return u.narrow(0, 0, 1).expand({b, r, c}); });
  if (c > 0) add("expanded columns", t, [b, r, c](const Tensor& u) { return u.narrow(2, 0, 1).expand({b, r, c}); });
  return out;
}

}  // namespace

TEST_CASE("cuda kernels: matmul through cuBLAS, every transpose and layout, FP32 unless TF32 is allowed") {
  ISRN_REQUIRE_CUDA();
  struct Dims {
    int64_t batch, m, k, n;
  };
  const Dims dims[] = {{1, 1, 1, 1}, {3, 17, 33, 9}, {2, 64, 128, 96}, {2, 5, 0, 4}, {1, 1, 70, 1}};
  uint64_t seed = 900;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Dims& d : dims) {
      for (bool trans_a : {false, true}) {
        for (bool trans_b : {false, true}) {
          CAPTURE(dtype);
          CAPTURE(d.m);
          CAPTURE(d.k);
          CAPTURE(trans_a);
          CAPTURE(trans_b);
          Tensor a = test::random(trans_a ? Shape{d.batch, d.k, d.m} : Shape{d.batch, d.m, d.k}, ++seed).to(dtype);
          Tensor b = test::random(trans_b ? Shape{d.batch, d.n, d.k} : Shape{d.batch, d.k, d.n}, ++seed).to(dtype);
          for (const auto& [a_name, a_view, a_gpu] : layouts(a, ++seed)) {
            for (const auto& [b_name, b_view, b_gpu] : layouts(b, ++seed)) {
              CAPTURE(a_name);
              CAPTURE(b_name);
              Tensor out = empty({d.batch, d.m, d.n}, on(dtype, kCuda));
              cuda::matmul(a_gpu, trans_a, b_gpu, trans_b, out);
              const auto av = test::values(a_view.contiguous()), bv = test::values(b_view.contiguous());
              const auto got = test::values(out);
              // FP32: each product and partial sum rounds once: |error| ≤ (k + 2)·2^-24·Σ|a||b|;
              // float64 the same with 2^-53.
              const double unit = dtype == DType::Float32 ? std::ldexp(1.0, -24) : std::ldexp(1.0, -53);
              for (int64_t bi = 0; bi < d.batch; ++bi)
                for (int64_t i = 0; i < d.m; ++i)
                  for (int64_t j = 0; j < d.n; ++j) {
                    double exact = 0.0, magnitude = 0.0;
                    for (int64_t kk = 0; kk < d.k; ++kk) {
                      const double x = trans_a ? av[(bi * d.k + kk) * d.m + i] : av[(bi * d.m + i) * d.k + kk];
                      const double y = trans_b ? bv[(bi * d.n + j) * d.k + kk] : bv[(bi * d.k + kk) * d.n + j];
                      exact += x * y;
                      magnitude += std::abs(x * y);
                    }
                    const double value = got[(bi * d.m + i) * d.n + j];
                    REQUIRE_MESSAGE(std::abs(value - exact) <= (d.k + 2) * unit * magnitude,
                                    "element (", bi, ", ", i, ", ", j, ") is ", value, ", expected ", exact);
                  }
            }
          }
        }
      }
    }
  }
  // TF32 keeps 10 mantissa bits: 1 + 2^-12 becomes 1. With FP32 math the sum of sixteen of them is exact.
  const double x = 1.0 + std::ldexp(1.0, -12);
  Tensor a = full({1, 8, 16}, x, on(DType::Float32, kCuda)), b = ones({1, 16, 8}, on(DType::Float32, kCuda));
  Tensor out = empty({1, 8, 8}, on(DType::Float32, kCuda));
  cuda::matmul(a, false, b, false, out);
  check_close(out, std::vector<double>(64, 16.0 * x), 0, 0, "FP32 by default");
  cuda::set_allow_tf32(true);
  cuda::matmul(a, false, b, false, out);
  cuda::set_allow_tf32(false);
  // cuBLAS may or may not pick a tensor-core kernel for so small a product: either answer is allowed.
  check_close(out, std::vector<double>(64, 16.0), 0, 16.0 * (x - 1.0), "TF32 allowed");
}

// --- pooling -----------------------------------------------------------------------------------------

namespace {

// PyTorch's output size, including ceil mode's rule that the last window starts inside the input
// or its left padding.
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t span = in + 2 * pad - kernel;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

}  // namespace

TEST_CASE("cuda kernels: max_pool2d forward and backward against a naive reference") {
  ISRN_REQUIRE_CUDA();
  struct Case {
    int64_t k, s, p;
    bool ceil_mode;
  };
  const Case cases[] = {{2, 2, 0, false}, {3, 2, 1, false}, {3, 1, 1, false}, {2, 3, 0, false},
                        {3, 2, 0, true},  {2, 2, 1, true},  {1, 1, 0, false}};
  uint64_t seed = 1000;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Case& c : cases) {
      CAPTURE(dtype);
      CAPTURE(c.k);
      CAPTURE(c.s);
      CAPTURE(c.p);
      CAPTURE(c.ceil_mode);
      const int64_t n = 2, ch = 3, h = 11, w = 13;
      std::vector<double> xv = test::random({n, ch, h, w}, ++seed).to_vector<double>();
      for (size_t i = 0; i < xv.size(); i += 37) xv[i] = std::nan("");        // NaN wins
      for (size_t i = 5; i < xv.size(); i += 29) xv[i] = xv[i - 1];           // ties: the first wins
      for (size_t i = 9; i < xv.size(); i += 31) xv[i] = -std::numeric_limits<double>::infinity();
      Tensor x = from_vector(xv, {n, ch, h, w}).to(dtype);
      xv = test::values(x);  // as rounded to the dtype
      Pool2dParams params;
      params.kernel = {c.k, c.k};
      params.stride = {c.s, c.s};
      params.padding = {c.p, c.p};
      params.ceil_mode = c.ceil_mode;
      const int64_t oh = pooled_size(h, c.k, c.s, c.p, c.ceil_mode), ow = pooled_size(w, c.k, c.s, c.p, c.ceil_mode);
      Tensor y = empty({n, ch, oh, ow}, on(dtype, kCuda)), indices = empty({n, ch, oh, ow}, on(DType::Int64, kCuda));
      cuda::max_pool2d_forward(x.to(kCuda), params, y, indices);
      std::vector<double> want_y;
      std::vector<int64_t> want_i;
      for (int64_t plane = 0; plane < n * ch; ++plane)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            int64_t best_at = -1;
            double best = 0;
            for (int64_t hh = i * c.s - c.p; hh < i * c.s - c.p + c.k; ++hh)
              for (int64_t ww = j * c.s - c.p; ww < j * c.s - c.p + c.k; ++ww) {
                if (hh < 0 || hh >= h || ww < 0 || ww >= w) continue;
                const double v = xv[plane * h * w + hh * w + ww];
                // PyTorch's rule, as on the CPU: v > best || isnan(v) (the last NaN of a window wins).
                const bool better = best_at < 0 || std::isnan(v) || v > best;
                if (better) {
                  best = v;
                  best_at = hh * w + ww;
                }
              }
            want_y.push_back(best);
            want_i.push_back(best_at);
          }
      check_close(y, want_y, 0, 0, "max_pool2d values");
      CHECK(indices.to_vector<int64_t>() == want_i);

      // Backward: each output's gradient lands on its argmax; overlapping windows add up.
      const auto [grad_y, grad_y_gpu] = host_and_gpu(test::random({n, ch, ow, oh}, ++seed).to(dtype),
                                                     [](const Tensor& t) { return t.transpose(2, 3); });  // strided
      Tensor grad_x = zeros({n, ch, h, w}, on(dtype, kCuda));
      cuda::max_pool2d_backward(grad_y_gpu, indices, params, grad_x);
      const auto gv = test::values(grad_y.contiguous());
      std::vector<double> acc(static_cast<size_t>(n * ch * h * w), 0.0);
      for (int64_t plane = 0; plane < n * ch; ++plane)
        for (int64_t o = 0; o < oh * ow; ++o) acc[plane * h * w + want_i[plane * oh * ow + o]] += gv[plane * oh * ow + o];
      // At most k² terms per cell, added in output order (the reference adds in double).
      check_close(grad_x, acc, dtype == DType::Float32 ? 1e-6 : 1e-14, 1e-7, "max_pool2d backward");
      // No atomics: the same additions in the same order as the CPU twin give the same bits, on every run.
      Tensor grad_x_cpu = zeros({n, ch, h, w}, TensorOptions(dtype));
      cpu::max_pool2d_backward(grad_y.contiguous(), indices.to(Device::cpu()), params, grad_x_cpu);
      check_close(grad_x, grad_x_cpu, 0, 0, "max_pool2d backward, CUDA against the CPU twin");
      Tensor rerun = zeros({n, ch, h, w}, on(dtype, kCuda));
      cuda::max_pool2d_backward(grad_y_gpu, indices, params, rerun);
      check_close(rerun, grad_x, 0, 0, "max_pool2d backward, rerun");
    }
  }
}

// --- resize --------------------------------------------------------------------------------------------

namespace {

// PyTorch's source coordinates (aten/src/ATen/native/UpSample.h), written out independently.
struct Tap {
  int64_t i0, i1;
  double w0, w1;
};

Tap bilinear_tap(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  double src;
  if (align_corners) {
    src = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) * dst : 0.0;
  } else {
    src = static_cast<double>(in) / static_cast<double>(out) * (dst + 0.5) - 0.5;
    if (src < 0) src = 0;
  }
  const int64_t i0 = static_cast<int64_t>(src);
  const double w1 = src - static_cast<double>(i0);
  return {i0, std::min(i0 + 1, in - 1), 1.0 - w1, w1};
}

int64_t nearest_tap(int64_t dst, int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);  // PyTorch computes this in float
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(dst) * scale)), in - 1);
}

}  // namespace

TEST_CASE("cuda kernels: resize forward and backward (bilinear both alignments, nearest) against a reference") {
  ISRN_REQUIRE_CUDA();
  struct Sizes {
    int64_t h, w, oh, ow;
  };
  const Sizes sizes[] = {{5, 7, 11, 3}, {8, 8, 16, 16}, {9, 6, 4, 13}, {1, 1, 3, 2}, {4, 5, 1, 1}, {6, 6, 6, 6}};
  struct Mode {
    ResizeMode mode;
    bool align_corners;
  };
  const Mode modes[] = {{ResizeMode::Bilinear, false}, {ResizeMode::Bilinear, true}, {ResizeMode::Nearest, false}};
  uint64_t seed = 1100;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Sizes& sz : sizes) {
      for (const Mode& md : modes) {
        CAPTURE(dtype);
        CAPTURE(sz.h);
        CAPTURE(sz.w);
        CAPTURE(sz.oh);
        CAPTURE(sz.ow);
        CAPTURE(static_cast<int>(md.mode));
        CAPTURE(md.align_corners);
        const int64_t n = 2, ch = 3, planes = n * ch;
        const auto [x, x_gpu] = host_and_gpu(test::random({n, ch, sz.w, sz.h}, ++seed).to(dtype),
                                             [](const Tensor& t) { return t.transpose(2, 3); });  // strided NCHW
        Tensor y = empty({n, ch, sz.oh, sz.ow}, on(dtype, kCuda));
        REQUIRE((!x_gpu.is_contiguous() || sz.h == 1 || sz.w == 1));  // a 1×1 plane's transpose is still dense
        cuda::resize_forward(x_gpu, md.mode, md.align_corners, y);
        const auto xv = test::values(x.contiguous());
        // Weights are computed in the tensor's type on the GPU and in double here.
        const double rtol = dtype == DType::Float32 ? 2e-6 : 1e-13, atol = dtype == DType::Float32 ? 2e-6 : 1e-13;
        std::vector<double> want;
        for (int64_t p = 0; p < planes; ++p)
          for (int64_t i = 0; i < sz.oh; ++i)
            for (int64_t j = 0; j < sz.ow; ++j) {
              const double* xp = xv.data() + p * sz.h * sz.w;
              if (sz.h == sz.oh && sz.w == sz.ow) {
                want.push_back(xp[i * sz.w + j]);
              } else if (md.mode == ResizeMode::Nearest) {
                want.push_back(xp[nearest_tap(i, sz.h, sz.oh) * sz.w + nearest_tap(j, sz.w, sz.ow)]);
              } else {
                const Tap th = bilinear_tap(i, sz.h, sz.oh, md.align_corners);
                const Tap tw = bilinear_tap(j, sz.w, sz.ow, md.align_corners);
                want.push_back(th.w0 * (tw.w0 * xp[th.i0 * sz.w + tw.i0] + tw.w1 * xp[th.i0 * sz.w + tw.i1]) +
                               th.w1 * (tw.w0 * xp[th.i1 * sz.w + tw.i0] + tw.w1 * xp[th.i1 * sz.w + tw.i1]));
              }
            }
        check_close(y, want, rtol, atol, "resize forward");

        const auto [grad_y, grad_y_gpu] = host_and_gpu(test::random({n, ch, sz.ow, sz.oh}, ++seed).to(dtype),
                                                       [](const Tensor& t) { return t.transpose(2, 3); });  // strided
        Tensor grad_x = zeros({n, ch, sz.h, sz.w}, on(dtype, kCuda));
        cuda::resize_backward(grad_y_gpu, md.mode, md.align_corners, grad_x);
        const auto gv = test::values(grad_y.contiguous());
        std::vector<double> acc(static_cast<size_t>(planes * sz.h * sz.w), 0.0);
        for (int64_t p = 0; p < planes; ++p)
          for (int64_t i = 0; i < sz.oh; ++i)
            for (int64_t j = 0; j < sz.ow; ++j) {
              double* gp = acc.data() + p * sz.h * sz.w;
              const double g = gv[(p * sz.oh + i) * sz.ow + j];
              if (sz.h == sz.oh && sz.w == sz.ow) {
                gp[i * sz.w + j] += g;
              } else if (md.mode == ResizeMode::Nearest) {
                gp[nearest_tap(i, sz.h, sz.oh) * sz.w + nearest_tap(j, sz.w, sz.ow)] += g;
              } else {
                const Tap th = bilinear_tap(i, sz.h, sz.oh, md.align_corners);
                const Tap tw = bilinear_tap(j, sz.w, sz.ow, md.align_corners);
                gp[th.i0 * sz.w + tw.i0] += th.w0 * tw.w0 * g;
                gp[th.i0 * sz.w + tw.i1] += th.w0 * tw.w1 * g;
                gp[th.i1 * sz.w + tw.i0] += th.w1 * tw.w0 * g;
                gp[th.i1 * sz.w + tw.i1] += th.w1 * tw.w1 * g;
              }
            }
        // Sums of up to ~(in/out + 1)² weighted terms (the 4×5 → 1×1 case sums 4), in output order.
        check_close(grad_x, acc, dtype == DType::Float32 ? 1e-5 : 1e-13, dtype == DType::Float32 ? 1e-5 : 1e-13,
                    "resize backward");
        Tensor rerun = zeros({n, ch, sz.h, sz.w}, on(dtype, kCuda));
        cuda::resize_backward(grad_y_gpu, md.mode, md.align_corners, rerun);
        check_close(rerun, grad_x, 0, 0, "resize backward, rerun");
      }
    }
  }
}

TEST_CASE("cuda kernels: gradients of many-to-one ops repeat bit for bit (no atomics), at sizes where sources collide") {
  // Upsampling, overlapping pooling windows and repeated indices send many values to one cell. With
  // atomicAdd their order, and so the float32 sum, changed from run to run: a training run did not
  // repeat (seen on an H100: the tiny detector's float32 loss by quarter differed between runs). Each
  // backward now runs three times and must give the same bits; where the CPU twin adds the same terms
  // in the same order (pooling, index_add, scatter_add: sums without products) its bits too.
  ISRN_REQUIRE_CUDA();
  auto same_three_times = [](const char* what, auto&& run) {
    const Tensor first = run();
    for (int again = 0; again < 2; ++again) check_close(run(), first, 0, 0, what);
    return first;
  };
  for (const bool align_corners : {false, true}) {
    CAPTURE(align_corners);
    const Tensor g = test::random({2, 64, 80, 80}, 1202).to(DType::Float32).to(kCuda);
    const Tensor gx = same_three_times("resize bilinear backward", [&] {
      Tensor out = zeros({2, 64, 40, 40}, on(DType::Float32, kCuda));
      cuda::resize_backward(g, ResizeMode::Bilinear, align_corners, out);
      return out;
    });
    Tensor gx_cpu = zeros({2, 64, 40, 40}, TensorOptions(DType::Float32));
    cpu::resize_backward(g.to(Device::cpu()), ResizeMode::Bilinear, align_corners, gx_cpu);
    check_close(gx, gx_cpu, 1e-6, 1e-6, "resize bilinear backward against the CPU twin");
  }
  {
    const Tensor g = test::random({2, 64, 120, 100}, 1203).to(DType::Float32).to(kCuda);  // 3x and 2.5x
    same_three_times("resize nearest backward", [&] {
      Tensor out = zeros({2, 64, 40, 40}, on(DType::Float32, kCuda));
      cuda::resize_backward(g, ResizeMode::Nearest, false, out);
      return out;
    });
  }
  {
    Pool2dParams params;
    params.kernel = {3, 3};
    params.stride = {1, 2};
    params.padding = {1, 1};
    // Three distinct values: many windows pick the same cell.
    const Tensor x = test::random({2, 32, 48, 48}, 1204, 0.0, 3.0).to(DType::Int64).to(DType::Float32).to(kCuda);
    const int64_t oh = params.out_h(48), ow = params.out_w(48);
    Tensor y = empty({2, 32, oh, ow}, on(DType::Float32, kCuda));
    Tensor indices = empty({2, 32, oh, ow}, on(DType::Int64, kCuda));
    cuda::max_pool2d_forward(x, params, y, indices);
    const Tensor g = test::random({2, 32, oh, ow}, 1205).to(DType::Float32).to(kCuda);
    const Tensor gx = same_three_times("max_pool2d backward", [&] {
      Tensor out = zeros({2, 32, 48, 48}, on(DType::Float32, kCuda));
      cuda::max_pool2d_backward(g, indices, params, out);
      return out;
    });
    Tensor gx_cpu = zeros({2, 32, 48, 48}, TensorOptions(DType::Float32));
    cpu::max_pool2d_backward(g.to(Device::cpu()), indices.to(Device::cpu()), params, gx_cpu);
    check_close(gx, gx_cpu, 0, 0, "max_pool2d backward against the CPU twin");
  }
  struct RepeatedIndices {
    const char* op;
    AddKernel on_gpu, on_cpu;
    Tensor index, grad_out;
    Shape grad_x_shape;
  };
  const RepeatedIndices cases[] = {
      {"index_add", cuda::index_add, cpu::index_add, random_index({20000}, 7, DType::Int64, 1206),  // ~2,900 per cell
       test::random({3, 20000, 5}, 1207).to(DType::Float32), {3, 7, 5}},
      {"scatter_add", cuda::scatter_add, cpu::scatter_add, random_index({4, 5000, 6}, 9, DType::Int32, 1208),
       test::random({4, 5000, 6}, 1209).to(DType::Float32), {4, 9, 6}},
  };
  for (const RepeatedIndices& c : cases) {
    CAPTURE(c.op);
    const Tensor grad_out_gpu = c.grad_out.to(kCuda), index_gpu = c.index.to(kCuda);
    const Tensor gx = same_three_times(c.op, [&] {
      Tensor out = zeros(c.grad_x_shape, on(DType::Float32, kCuda));
      c.on_gpu(grad_out_gpu, 1, index_gpu, out);
      return out;
    });
    Tensor gx_cpu = zeros(c.grad_x_shape, TensorOptions(DType::Float32));
    c.on_cpu(c.grad_out, 1, c.index, gx_cpu);
    check_close(gx, gx_cpu, 0, 0, "against the CPU twin");
  }
}
