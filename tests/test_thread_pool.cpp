// isrn's thread pool (src/cpu/parallel.hpp): coverage of every index, chunk boundaries that depend only on
// the range, the grain and the thread count, nested and concurrent callers, exceptions, resizing, a job
// finished by its caller alone when no worker claims anything, and a clean exit with live workers.
#include <algorithm>
#include <array>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cpu/parallel.hpp"
#include "test_util.hpp"

using namespace isrn;
using cpu::parallel_chunks;
using cpu::parallel_for;

namespace {

// Sets the thread count for a scope and restores it.
class ThreadCount {
 public:
  explicit ThreadCount(int threads) : saved_(get_num_threads()) { set_num_threads(threads); }
  ~ThreadCount() { set_num_threads(saved_); }

 private:
  int saved_;
};

// Pauses the workers for a scope.
class PausedWorkers {
 public:
  PausedWorkers() { cpu::detail::set_workers_paused_for_test(true); }
  ~PausedWorkers() { cpu::detail::set_workers_paused_for_test(false); }
};

// Ends the process when `progress` stops moving for `limit`: a deadlocked pool would otherwise hang the
// test until ctest's timeout, with no word on which case it was.
class Watchdog {
 public:
  Watchdog(const char* what, const std::atomic<int64_t>& progress, std::chrono::seconds limit)
      : thread_([this, what, &progress, limit] {
          int64_t last = progress.load();
          auto since = std::chrono::steady_clock::now();
          while (!done_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            const int64_t now = progress.load();
            if (now != last) {
              last = now;
              since = std::chrono::steady_clock::now();
            } else if (std::chrono::steady_clock::now() - since > limit) {
              std::fprintf(stderr, "thread_pool test '%s': no progress for %lld s (deadlock?)\n", what,
                           static_cast<long long>(limit.count()));
              std::_Exit(EXIT_FAILURE);
            }
          }
        }) {}
  ~Watchdog() {
    done_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

using Chunks = std::vector<std::pair<int64_t, int64_t>>;

// The chunks one parallel_for call hands out, sorted, and the threads that ran them.
struct Recorded {
  Chunks chunks;
  std::vector<std::thread::id> threads;
};

Recorded record(int64_t begin, int64_t end, int64_t grain, int spin_us = 0) {
  Recorded r;
  std::mutex m;
  parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    if (spin_us > 0) {  // busy, not sleeping: a chunk that keeps its thread, as a kernel does
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    std::lock_guard<std::mutex> lock(m);
    r.chunks.emplace_back(b, e);
    r.threads.push_back(std::this_thread::get_id());
  });
  std::sort(r.chunks.begin(), r.chunks.end());
  return r;
}

// Σ i·i over [0, n) in chunk partials added in chunk order: a float sum whose bits depend on the
// chunk boundaries (so on nothing else, if they do not).
float ordered_sum_of_squares(int64_t n, int64_t grain) {
  const int64_t pieces = cpu::chunk_count(n, grain, get_num_threads());
  std::vector<float> partial(static_cast<size_t>(std::max<int64_t>(pieces, 1)), 0.0f);
  parallel_chunks(pieces, [&](int64_t c) {
    float s = 0.0f;
    for (int64_t i = cpu::chunk_begin(0, n, pieces, c); i < cpu::chunk_begin(0, n, pieces, c + 1); ++i)
      s += static_cast<float>(i) * static_cast<float>(i) * 1e-3f;
    partial[c] = s;
  });
  float total = 0.0f;
  for (float p : partial) total += p;
  return total;
}

}  // namespace

TEST_CASE("thread_pool: every index is visited exactly once, in chunks that tile the range") {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 0},  {5, 5},      {9, 3},     {0, 1},    {3, 4},
                                                           {0, 2},  {-7, 13},    {0, 1000},  {17, 10017},
                                                           {0, 65537}};
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadCount tc(threads);
    for (const auto& [begin, end] : ranges)
      for (int64_t grain : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7}, int64_t{64}, int64_t{1000},
                            int64_t{1} << 20}) {
        CAPTURE(threads);
        CAPTURE(begin);
        CAPTURE(end);
        CAPTURE(grain);
        const int64_t length = std::max<int64_t>(end - begin, 0);
        std::vector<std::atomic<int>> visits(static_cast<size_t>(length));
        std::atomic<int64_t> calls{0};
        parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
          calls.fetch_add(1);
          for (int64_t i = b; i < e; ++i) visits[static_cast<size_t>(i - begin)].fetch_add(1);
        });
        int64_t wrong = 0;
        for (const auto& v : visits) wrong += v.load() != 1;
        CHECK(wrong == 0);

        const Chunks chunks = record(begin, end, grain).chunks;
        // As many chunks of at least `grain` as fit, at most kChunksPerThread per thread, one on one thread.
        const int64_t most = int64_t{threads} * cpu::detail::kChunksPerThread;
        const int64_t expected = length == 0    ? 0
                                 : threads == 1 ? 1
                                                : std::clamp<int64_t>(length / std::max<int64_t>(grain, 1), 1, most);
        CHECK(calls.load() == expected);
        REQUIRE(static_cast<int64_t>(chunks.size()) == expected);
        for (size_t c = 0; c < chunks.size(); ++c) {
          CHECK(chunks[c].first < chunks[c].second);  // no empty chunk
          CHECK(chunks[c].first == (c == 0 ? begin : chunks[c - 1].second));
          if (chunks.size() > 1) CHECK(chunks[c].second - chunks[c].first >= std::max<int64_t>(grain, 1));
        }
        if (!chunks.empty()) {  // equal shares: sizes differ by at most one
          int64_t smallest = length, largest = 0;
          for (const auto& [b, e] : chunks) {
            smallest = std::min(smallest, e - b);
            largest = std::max(largest, e - b);
          }
          CHECK(largest - smallest <= 1);
        }
        if (!chunks.empty()) CHECK(chunks.back().second == end);
      }
  }
}

TEST_CASE("thread_pool: chunk boundaries depend only on the range, the grain and the thread count") {
  for (int threads : {2, 3, 4}) {
    CAPTURE(threads);
    ThreadCount tc(threads);
    // 200 µs of work per chunk, so that workers take part and the assignment of chunks to threads varies.
    const Recorded first = record(0, 100003, 7, 200);
    CHECK(first.chunks.size() == static_cast<size_t>(threads * cpu::detail::kChunksPerThread));
    for (int run = 0; run < 10; ++run) CHECK(record(0, 100003, 7, run % 2 ? 200 : 0).chunks == first.chunks);
    {
      PausedWorkers paused;  // every chunk on the caller: the same cut
      CHECK(record(0, 100003, 7).chunks == first.chunks);
    }
    // Inline inside another job's chunk: the same cut again.
    Chunks nested;
    parallel_chunks(2, [&](int64_t c) {
      if (c == 0) nested = record(0, 100003, 7).chunks;
    });
    CHECK(nested == first.chunks);
    // An order-dependent float sum gives the same bits on every run, whoever runs the chunks.
    const float reference = ordered_sum_of_squares(1 << 20, 1);
    for (int run = 0; run < 20; ++run) CHECK(ordered_sum_of_squares(1 << 20, 1) == reference);
    PausedWorkers paused;
    CHECK(ordered_sum_of_squares(1 << 20, 1) == reference);
  }
}

TEST_CASE("thread_pool: parallel_chunks runs each index once and rejects more chunks than the pool can count") {
  ThreadCount tc(3);
  for (int64_t pieces : {0, 1, 2, 3, 5, 64, 1000}) {
    CAPTURE(pieces);
    std::vector<std::atomic<int>> visits(static_cast<size_t>(pieces));
    parallel_chunks(pieces, [&](int64_t c) { visits[static_cast<size_t>(c)].fetch_add(1); });
    for (const auto& v : visits) CHECK(v.load() == 1);
  }
  CHECK_THROWS_WITH_AS(parallel_chunks(cpu::detail::kMaxChunks + 1, [](int64_t) {}),
                       doctest::Contains("[parallel] 65536 chunks exceed the pool's limit"), Error);
  // parallel_for never asks for more: with absurdly many threads its cut stops at the limit.
  CHECK(cpu::chunk_count(int64_t{1} << 40, 1, 1 << 20) == cpu::detail::kMaxChunks);
  CHECK(cpu::chunk_count(int64_t{1} << 40, 1, 5) == 5 * cpu::detail::kChunksPerThread);
}

TEST_CASE("thread_pool: a call from inside a chunk runs inline on that chunk's thread and completes") {
  ThreadCount tc(3);
  std::atomic<int64_t> inner_total{0}, mismatched_threads{0};
  parallel_for(0, 12, 1, [&](int64_t b, int64_t e) {
    const std::thread::id outer = std::this_thread::get_id();
    for (int64_t i = b; i < e; ++i)
      parallel_for(0, 1000, 1, [&](int64_t ib, int64_t ie) {
        if (std::this_thread::get_id() != outer) mismatched_threads.fetch_add(1);
        for (int64_t j = ib; j < ie; ++j) inner_total.fetch_add(j);
      });
  });
  CHECK(inner_total.load() == 12 * (999 * 1000 / 2));
  CHECK(mismatched_threads.load() == 0);
  // A real kernel nested in a chunk: the same bits as called from the top.
  const Tensor x = test::random({300001}, 7, -1.0, 1.0, DType::Float32);
  const float direct = sum(x).item<float>();
  std::vector<float> nested(4, 0.0f);
  parallel_chunks(4, [&](int64_t c) { nested[static_cast<size_t>(c)] = sum(x).item<float>(); });
  for (float v : nested) CHECK(v == direct);
}

TEST_CASE("thread_pool: an exception in a chunk reaches the caller and the pool keeps working") {
  ThreadCount tc(2);
  CHECK_THROWS_WITH_AS(parallel_for(0, 1000, 1,
                                    [](int64_t b, int64_t e) {
                                      if (b <= 500 && 500 < e) throw Error("[test] chunk with 500 failed");
                                    }),
                       doctest::Contains("chunk with 500 failed"), Error);
  // Every chunk throwing: exactly one exception arrives.
  CHECK_THROWS_AS(parallel_for(0, 1000, 1, [](int64_t, int64_t) { throw std::runtime_error("every chunk"); }),
                  std::runtime_error);
  // One thrown on a worker (not the caller) reaches the caller too. Chunks take 1,000 µs so a worker claims
  // some; tried until one did.
  const std::thread::id caller = std::this_thread::get_id();
  bool worker_threw = false;
  for (int attempt = 0; attempt < 200 && !worker_threw; ++attempt) {
    try {
      parallel_for(0, 8, 1, [&](int64_t, int64_t) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(1000);
        while (std::chrono::steady_clock::now() < until) {
        }
        if (std::this_thread::get_id() != caller) throw Error("[test] thrown on a worker");
      });
    } catch (const Error& e) {
      worker_threw = std::string(e.what()).find("thrown on a worker") != std::string::npos;
    }
  }
  CHECK(worker_threw);
  // The pool still covers every index afterwards.
  std::atomic<int64_t> total{0};
  parallel_for(0, 100000, 1, [&](int64_t b, int64_t e) {
    int64_t s = 0;
    for (int64_t i = b; i < e; ++i) s += i;
    total.fetch_add(s);
  });
  CHECK(total.load() == int64_t{99999} * 100000 / 2);
}

TEST_CASE("thread_pool: concurrent callers from several threads finish with correct results") {
  ThreadCount tc(2);
  const Tensor x = test::random({200003}, 11, -1.0, 1.0, DType::Float32);
  const float expected_sum = sum(x).item<float>();  // the same cut whether the pool or the caller runs it
  std::atomic<int64_t> progress{0}, wrong{0};
  Watchdog watchdog("concurrent callers", progress, std::chrono::seconds(60));
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int job = 0; job < 1500; ++job) {
        const int64_t n = 1000 + 37 * job + t;
        std::atomic<int64_t> total{0};
        parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
          int64_t s = 0;
          for (int64_t i = b; i < e; ++i) s += i;
          total.fetch_add(s);
        });
        if (total.load() != n * (n - 1) / 2) wrong.fetch_add(1);
        if (job % 100 == 0 && sum(x).item<float>() != expected_sum) wrong.fetch_add(1);
        progress.fetch_add(1);
      }
    });
  for (std::thread& c : callers) c.join();
  CHECK(progress.load() == 4 * 1500);
  CHECK(wrong.load() == 0);
}

TEST_CASE("thread_pool: set_num_threads resizes the pool between jobs") {
  for (int threads : {3, 2, 5, 2}) {
    CAPTURE(threads);
    ThreadCount tc(threads);
    CHECK(get_num_threads() == threads);
    std::atomic<int64_t> total{0};
    parallel_for(0, 50000, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    CHECK(total.load() == 50000);
    CHECK(cpu::detail::worker_count_for_test() == threads - 1);
  }
  ThreadCount one(1);
  const Recorded r = record(0, 50000, 1);
  CHECK(r.chunks == Chunks{{0, 50000}});
  CHECK(r.threads == std::vector<std::thread::id>{std::this_thread::get_id()});
  CHECK_THROWS_WITH_AS(set_num_threads(0), doctest::Contains("[set_num_threads] expects at least 1 thread"), Error);
}

TEST_CASE("thread_pool: a job finishes on its caller alone when no worker claims a chunk") {
  ThreadCount tc(4);
  std::atomic<int64_t> progress{0};
  Watchdog watchdog("paused workers", progress, std::chrono::seconds(60));
  {
    PausedWorkers paused;
    for (int job = 0; job < 50; ++job) {
      const Recorded r = record(0, 4000, 1, 100);
      CHECK(r.chunks.size() == 16);
      for (const std::thread::id& id : r.threads) CHECK(id == std::this_thread::get_id());
      progress.fetch_add(1);
    }
  }
  // A real kernel: the caller alone gives the same bits as the caller with its workers.
  const Tensor x = test::random({2, 8, 67, 131}, 3, -1.0, 1.0, DType::Float32);
  const Tensor w = test::random({16, 8, 3, 3}, 4, -1.0, 1.0, DType::Float32);
  const std::vector<float> shared = conv2d(x, w, Tensor(), Conv2dParams::same(3, 3)).to_vector<float>();
  {
    PausedWorkers paused;
    CHECK(conv2d(x, w, Tensor(), Conv2dParams::same(3, 3)).to_vector<float>() == shared);
    progress.fetch_add(1);
  }
  // Unpaused, the workers do take chunks (so the hook above did keep them out).
  bool worker_ran = false;
  for (int attempt = 0; attempt < 200 && !worker_ran; ++attempt) {
    const Recorded r = record(0, 16, 1, 1000);
    for (const std::thread::id& id : r.threads) worker_ran |= id != std::this_thread::get_id();
    progress.fetch_add(1);
  }
  CHECK(worker_ran);
}

TEST_CASE("thread_pool: matmul split into output blocks on the pool matches a double reference") {
  // Large products (Eigen threads only under OpenMP, which isrn does not use) are cut into blocks of output
  // rows (m >= n) or columns (m < n); all four operand layouts reach the kernel through transposed views.
  ThreadCount tc(3);
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{203, 97, 61}, {45, 130, 251}}) {
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          CAPTURE(dt);
          CAPTURE(m);
          CAPTURE(n);
          CAPTURE(ta);
          CAPTURE(tb);
          const Tensor a = ta ? test::random({k, m}, 21, -1, 1, dt).transpose(0, 1) : test::random({m, k}, 21, -1, 1, dt);
          const Tensor b = tb ? test::random({n, k}, 22, -1, 1, dt).transpose(0, 1) : test::random({k, n}, 22, -1, 1, dt);
          const Tensor c = matmul(a, b);
          const std::vector<double> va = test::values(a.contiguous()), vb = test::values(b.contiguous());
          const std::vector<double> vc = test::values(c);
          // k products of values in [-1, 1]: a correct sum errs by at most k·u·k (u the unit roundoff).
          const double u = dt == DType::Float32 ? 0x1p-24 : 0x1p-53, tolerance = 2.0 * static_cast<double>(k * k) * u;
          int64_t wrong = 0;
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = 0.0;
              for (int64_t q = 0; q < k; ++q) s += va[i * k + q] * vb[q * n + j];
              wrong += std::abs(vc[i * n + j] - s) > tolerance;
            }
          CHECK(wrong == 0);
          PausedWorkers paused;  // the same cut on the caller alone: the same bits
          CHECK(test::values(matmul(a, b)) == vc);
        }
    }
  }
}

TEST_CASE("thread_pool: the default thread count comes from ISRN_NUM_THREADS, then OMP_NUM_THREADS") {
  auto saved = [](const char* name) -> std::pair<bool, std::string> {
    const char* v = std::getenv(name);
    return {v != nullptr, v ? v : ""};
  };
  const auto isrn_env = saved("ISRN_NUM_THREADS"), omp_env = saved("OMP_NUM_THREADS");
  setenv("OMP_NUM_THREADS", "3", 1);
  unsetenv("ISRN_NUM_THREADS");
  CHECK(cpu::detail::default_thread_count() == 3);
  setenv("OMP_NUM_THREADS", "5,2", 1);  // OpenMP's nested list: the first level counts
  CHECK(cpu::detail::default_thread_count() == 5);
  setenv("ISRN_NUM_THREADS", "2", 1);
  CHECK(cpu::detail::default_thread_count() == 2);
  setenv("ISRN_NUM_THREADS", "zero", 1);  // malformed: ignored
  CHECK(cpu::detail::default_thread_count() == 5);
  unsetenv("ISRN_NUM_THREADS");
  unsetenv("OMP_NUM_THREADS");
  CHECK(cpu::detail::default_thread_count() == static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  for (const auto& [name, value] : {std::pair{"ISRN_NUM_THREADS", isrn_env}, std::pair{"OMP_NUM_THREADS", omp_env}})
    if (value.first) setenv(name, value.second.c_str(), 1);
}

// Run only as the child of the next case (--no-skip): exit() while the workers are alive.
TEST_CASE("thread_pool: exit child" * doctest::skip()) {
  set_num_threads(3);
  std::atomic<int64_t> total{0};
  parallel_for(0, 100000, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  std::exit(total.load() == 100000 ? 3 : 4);
}

TEST_CASE("thread_pool: exit() with live workers joins them without a crash") {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  const std::string command =
      "'" + self.string() + "' --no-skip '--test-case=thread_pool: exit child' >/dev/null 2>&1";
  const int status = std::system(command.c_str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
}
