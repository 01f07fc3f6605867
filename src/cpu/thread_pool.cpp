// The thread pool behind cpu/parallel.hpp, and set_num_threads/get_num_threads.
//
// One job at a time: a caller that gets the pool (a try-lock) publishes the job (a chunk function
// and a chunk count) in one claim word, generation:32 | front:16 | back:16. The caller claims chunks
// from the front, the workers from the back, each by a compare-and-swap on the whole word, so
//  - a worker that wakes after the job ended finds front == back and touches nothing else; a
//    claim that succeeds is on the job the word's generation names, which cannot end (and so
//    cannot be replaced) before the claimed chunk has finished;
//  - with two threads the caller runs the leading chunks and the worker the trailing ones, so
//    consecutive jobs over the same data find it in the same core's cache, as a static schedule did.
// The caller then waits for `remaining` (chunks not yet finished) to reach zero: it never waits for
// a worker that has not claimed a chunk, only for chunks in progress.
//
// Waiting: workers spin briefly after a job (the next kernel usually follows within microseconds),
// then yield the core between checks for a while, then sleep on a futex; the caller waits for chunks
// still running on workers the same way, so that a worker preempted in a chunk can have the caller's
// core. Spinning at a barrier without giving the core away is what made OpenMP collapse when another
// process held a core.
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu/parallel.hpp"
#include "isrn/core/error.hpp"
#include "isrn/core/threading.hpp"

namespace isrn {

namespace {

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  word.wait(expected, std::memory_order_seq_cst);
#endif
}

void futex_wake(std::atomic<uint32_t>& word, int count) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
#else
  if (count == 1)
    word.notify_one();
  else
    word.notify_all();
#endif
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

using Clock = std::chrono::steady_clock;

// Spins until done() or `spin` has passed, then yields the core between checks until `spin + yield`
// has; true when done() came true. Yielding costs nothing on a quiet machine (no one else wants the
// core) and hands the core to a runnable process on a busy one.
template <typename Done>
bool spin_until(Done&& done, std::chrono::microseconds spin, std::chrono::microseconds yield) {
  if (done()) return true;
  const Clock::time_point start = Clock::now(), spin_end = start + spin, yield_end = spin_end + yield;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (Clock::now() >= spin_end) break;
  }
  while (Clock::now() < yield_end) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}

// A positive integer from the environment (the first of a comma-separated list, as OMP_NUM_THREADS
// allows), or 0 when unset or malformed.
int threads_from_env(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || (*end != '\0' && *end != ',') || value < 1 || value > 4096) return 0;
  return static_cast<int>(value);
}

int environment_threads() {
  if (const int n = threads_from_env("ISRN_NUM_THREADS")) return n;
  if (const int n = threads_from_env("OMP_NUM_THREADS")) return n;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Microseconds; ISRN_POOL_{WORKER,CALLER}_{SPIN,YIELD}_US override the defaults (for measuring them).
std::chrono::microseconds spin_from_env(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return std::chrono::microseconds(fallback);
  return std::chrono::microseconds(std::atoi(text));
}

std::atomic<int>& configured_threads() {
  static std::atomic<int> threads{environment_threads()};
  return threads;
}

// True on a thread while it runs chunks for the pool: a kernel called from there runs inline.
thread_local bool t_inside_job = false;

class ThreadPool {
 public:
  // Measured on bench/isrn_bench's small_cpu training step and detection, 2 threads on 2 cores. Workers
  // that slept at once cost 30% on a quiet machine (a futex wake per kernel); spinning 200 µs or more
  // on the CPU made the step with one core taken by another process 20-40% slower than 50 µs (the
  // spinning worker spends the CPU time it then lacks when a job comes). A short spin followed by
  // a long phase of yielding the core keeps both: yielding costs nothing when no one else wants the
  // core and gives it away when someone does.
  ThreadPool()
      : worker_spin_(spin_from_env("ISRN_POOL_WORKER_SPIN_US", 20)),
        worker_yield_(spin_from_env("ISRN_POOL_WORKER_YIELD_US", 2000)),
        caller_spin_(spin_from_env("ISRN_POOL_CALLER_SPIN_US", 50)),
        caller_yield_(spin_from_env("ISRN_POOL_CALLER_YIELD_US", 500)) {}

  // Runs the job on the pool; false (nothing run) when this thread cannot have it.
  bool try_run(int64_t chunks, cpu::detail::ChunkFn run, const void* body, int threads) {
    if (t_inside_job) return false;
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (!lock.owns_lock() || shut_down_.load(std::memory_order_relaxed)) return false;
    resize(threads - 1);
    if (workers_.empty()) return false;

    run_.store(run, std::memory_order_relaxed);
    body_.store(body, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    remaining_.store(static_cast<uint32_t>(chunks), std::memory_order_relaxed);
    generation_ += 1;
    claim_.store(pack(generation_, 0, static_cast<uint32_t>(chunks)), std::memory_order_release);
    wake_seq_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0)
      futex_wake(wake_seq_, static_cast<int>(std::min<int64_t>(chunks - 1, INT_MAX)));

    t_inside_job = true;
    for (int64_t c; (c = claim_front()) >= 0;) execute(run, body, c);
    if (remaining_.load(std::memory_order_acquire) != 0 &&
        !spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; }, caller_spin_, caller_yield_)) {
      caller_sleeping_.store(1, std::memory_order_seq_cst);
      for (uint32_t left; (left = remaining_.load(std::memory_order_seq_cst)) != 0;) futex_wait(remaining_, left);
      caller_sleeping_.store(0, std::memory_order_relaxed);
    }
    t_inside_job = false;
    if (failed_.load(std::memory_order_acquire)) {
      std::exception_ptr error = std::move(error_);
      error_ = nullptr;
      lock.unlock();
      std::rethrow_exception(error);
    }
    return true;
  }

  // Joins the workers; later jobs run inline. Called once, at exit.
  void shut_down() {
    shut_down_.store(true, std::memory_order_relaxed);
    if (t_inside_job) return;  // exit() from inside a chunk: its job holds the lock; leave the threads be
    std::lock_guard<std::mutex> lock(busy_);
    resize(0);
  }

  void set_paused(bool paused) { paused_.store(paused, std::memory_order_seq_cst); }
  int worker_count() {
    std::lock_guard<std::mutex> lock(busy_);
    return static_cast<int>(workers_.size());
  }

 private:
  static uint64_t pack(uint32_t generation, uint32_t front, uint32_t back) {
    return (uint64_t{generation} << 32) | (uint64_t{front} << 16) | back;
  }
  static uint32_t front_of(uint64_t word) { return static_cast<uint32_t>(word >> 16) & 0xffff; }
  static uint32_t back_of(uint64_t word) { return static_cast<uint32_t>(word) & 0xffff; }

  int64_t claim_front() {
    uint64_t word = claim_.load(std::memory_order_acquire);
    for (;;) {
      const uint32_t front = front_of(word);
      if (front >= back_of(word)) return -1;
      if (claim_.compare_exchange_weak(word, word + (uint64_t{1} << 16), std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return front;
    }
  }

  int64_t claim_back() {
    uint64_t word = claim_.load(std::memory_order_acquire);
    for (;;) {
      const uint32_t back = back_of(word);
      if (front_of(word) >= back) return -1;
      if (claim_.compare_exchange_weak(word, word - 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return back - 1;
    }
  }

  // Runs chunk c (unless an earlier chunk threw) and counts it finished.
  void execute(cpu::detail::ChunkFn run, const void* body, int64_t c) {
    if (!failed_.load(std::memory_order_relaxed)) {
      try {
        run(body, c);
      } catch (...) {
        if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
      }
    }
    if (remaining_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst))
      futex_wake(remaining_, 1);
  }

  void worker_loop() {
    t_inside_job = true;
    for (;;) {
      const uint32_t seen = wake_seq_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      if (!paused_.load(std::memory_order_acquire)) {
        // The claim's acquire makes the job's function (stored before the claim word) visible.
        for (int64_t c; (c = claim_back()) >= 0;)
          execute(run_.load(std::memory_order_relaxed), body_.load(std::memory_order_relaxed), c);
      }
      if (spin_until([&] { return wake_seq_.load(std::memory_order_acquire) != seen; }, worker_spin_, worker_yield_))
        continue;
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while (wake_seq_.load(std::memory_order_seq_cst) == seen) futex_wait(wake_seq_, seen);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  // Starts or stops workers to have `count`; only with busy_ held and no job running.
  void resize(int count) {
    if (static_cast<int>(workers_.size()) == count) return;
    if (!workers_.empty()) {
      stop_.store(true, std::memory_order_seq_cst);
      wake_seq_.fetch_add(1, std::memory_order_seq_cst);
      futex_wake(wake_seq_, INT_MAX);
      for (std::thread& t : workers_) t.join();
      workers_.clear();
      stop_.store(false, std::memory_order_relaxed);
    }
    for (int i = 0; i < count; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  std::mutex busy_;  // held by the thread whose job is on the pool
  std::vector<std::thread> workers_;
  uint32_t generation_ = 0;
  std::atomic<bool> shut_down_{false};
  const std::chrono::microseconds worker_spin_, worker_yield_, caller_spin_, caller_yield_;

  alignas(64) std::atomic<uint64_t> claim_{0};
  std::atomic<cpu::detail::ChunkFn> run_{nullptr};
  std::atomic<const void*> body_{nullptr};
  alignas(64) std::atomic<uint32_t> remaining_{0};  // futex word of the waiting caller
  std::atomic<uint32_t> caller_sleeping_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // written by the first chunk that threw, read by the caller after the job
  alignas(64) std::atomic<uint32_t> wake_seq_{0};  // futex word of the sleeping workers
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
};

// The pool lives for the whole process (never freed, so a kernel run by a static destructor after
// the shutdown still finds it, and runs inline); its workers are joined at exit.
ThreadPool& pool() {
  static ThreadPool* const instance = new ThreadPool;
  struct JoinAtExit {
    ~JoinAtExit() { instance->shut_down(); }
  };
  static JoinAtExit join_at_exit;
  return *instance;
}

}  // namespace

namespace cpu::detail {

void run_chunks(int64_t chunks, ChunkFn run, const void* body) {
  ISRN_CHECK(chunks <= kMaxChunks, "[parallel] ", chunks, " chunks exceed the pool's limit of ", kMaxChunks);
  const int threads = configured_threads().load(std::memory_order_relaxed);
  if (threads > 1 && chunks > 1 && pool().try_run(chunks, run, body, threads)) return;
  for (int64_t c = 0; c < chunks; ++c) run(body, c);
}

int default_thread_count() { return environment_threads(); }
void set_workers_paused_for_test(bool paused) { pool().set_paused(paused); }
int worker_count_for_test() { return pool().worker_count(); }

}  // namespace cpu::detail

void set_num_threads(int threads) {
  ISRN_CHECK(threads >= 1, "[set_num_threads] expects at least 1 thread, got ", threads);
  configured_threads().store(threads, std::memory_order_relaxed);
}

int get_num_threads() { return configured_threads().load(std::memory_order_relaxed); }

}  // namespace isrn
