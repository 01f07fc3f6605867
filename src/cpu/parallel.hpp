#pragma once
// isrn's work-sharing thread pool, as the CPU kernels see it: parallel_for over a range cut into
// chunks, and parallel_chunks over a fixed number of indexed pieces.
//
// Determinism: where a range is cut depends only on (begin, end, grain) and the configured thread
// count (get_num_threads), never on which thread runs what or whether the pool was free, so a kernel
// whose result depends on the chunk boundaries (partial sums combined in chunk order) gives the same
// bits on every run. Which thread runs a chunk is unspecified; per-thread scratch stays per thread
// (thread_local), and anything a chunk hands to later code is keyed by its chunk index.
//
// Robustness: the calling thread takes chunks itself and waits only for chunks a worker has
// already claimed, so a worker the scheduler has put aside (another process on its core) costs the
// job nothing unless it is in the middle of a chunk. Calls from inside a chunk, from a thread while
// another thread's job holds the pool, or after the pool shut down at exit run their chunks inline,
// in chunk order, on the calling thread. An exception thrown by a chunk is rethrown in the caller
// once the job's claimed chunks have finished (the first one thrown wins; unclaimed chunks are skipped).
#include <cstdint>
#include <type_traits>
#include <utility>

#include "isrn/core/threading.hpp"

namespace isrn::cpu {

namespace detail {

// Chunks a range is cut into per configured thread: more than one, so that the caller can take over
// the share of a worker that comes late, and few, so that claiming stays cheap beside the work.
inline constexpr int64_t kChunksPerThread = 4;
// The claim word packs the chunk counters into 16 bits each (the job's generation takes the rest).
inline constexpr int64_t kMaxChunks = (int64_t{1} << 16) - 1;

using ChunkFn = void (*)(const void* body, int64_t chunk);

// Runs run(body, c) once for every c in [0, chunks): on the pool, or inline in order (see above).
void run_chunks(int64_t chunks, ChunkFn run, const void* body);

// The thread count a process starts with, read from the environment now: ISRN_NUM_THREADS, else
// OMP_NUM_THREADS (the first number of its list), else the number of cores.
int default_thread_count();

// Test hook: while paused, the workers claim nothing, so every job is done by its caller alone.
void set_workers_paused_for_test(bool paused);
// Test hook: the number of worker threads (not counting callers) currently running.
int worker_count_for_test();

}  // namespace detail

// The number of chunks parallel_for cuts [begin, begin + length) into: as many pieces of at least
// `grain` iterations as there are, at most kChunksPerThread per thread (and kMaxChunks), one when
// single-threaded.
inline int64_t chunk_count(int64_t length, int64_t grain, int threads) {
  if (length <= 0) return 0;
  if (threads <= 1) return 1;
  const int64_t pieces = length / (grain < 1 ? 1 : grain);
  const int64_t wanted = static_cast<int64_t>(threads) * detail::kChunksPerThread;
  const int64_t most = wanted < detail::kMaxChunks ? wanted : detail::kMaxChunks;
  return pieces < 1 ? 1 : (pieces < most ? pieces : most);
}

// The first iteration of chunk c of `chunks` over [begin, begin + length): equal shares, their sizes
// differing by at most one.
inline int64_t chunk_begin(int64_t begin, int64_t length, int64_t chunks, int64_t c) {
  return begin + c * (length / chunks) + (c * (length % chunks)) / chunks;
}

// The smallest number of iterations that costs at least `min_cost` when one costs `cost_per_iteration`:
// the grain that keeps each chunk worth a thread (the kernels' thresholds are in elements).
inline int64_t grain_for(int64_t cost_per_iteration, int64_t min_cost) {
  if (cost_per_iteration < 1) cost_per_iteration = 1;
  const int64_t grain = (min_cost + cost_per_iteration - 1) / cost_per_iteration;
  return grain < 1 ? 1 : grain;
}

// The grain of a loop of `length` iterations that is worth threads only when `worth` holds: any
// split when it does, none when it does not.
inline int64_t grain_when(bool worth, int64_t length) { return worth ? 1 : length; }

// fn(chunk_begin, chunk_end) over [begin, end) in chunks of at least `grain` iterations; runs on
// the calling thread alone when the range holds fewer than two grains.
template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Fn&& fn) {
  const int64_t length = end - begin;
  const int64_t chunks = chunk_count(length, grain, get_num_threads());
  if (chunks == 0) return;
  if (chunks == 1) {
    fn(begin, end);
    return;
  }
  struct Body {
    std::remove_reference_t<Fn>* fn;
    int64_t begin, length, chunks;
  } body{&fn, begin, length, chunks};
  detail::run_chunks(
      chunks,
      [](const void* p, int64_t c) {
        const Body& b = *static_cast<const Body*>(p);
        (*b.fn)(chunk_begin(b.begin, b.length, b.chunks, c), chunk_begin(b.begin, b.length, b.chunks, c + 1));
      },
      &body);
}

// fn(index) for every index in [0, pieces), each index its own unit of work: the form for a fixed
// partition (one piece per thread's share, per-piece partial results combined in index order). At
// most detail::kMaxChunks pieces.
template <typename Fn>
void parallel_chunks(int64_t pieces, Fn&& fn) {
  if (pieces <= 0) return;
  if (pieces == 1) {
    fn(int64_t{0});
    return;
  }
  detail::run_chunks(
      pieces, [](const void* p, int64_t c) { (*static_cast<std::remove_reference_t<Fn>*>(const_cast<void*>(p)))(c); },
      static_cast<const void*>(&fn));
}

}  // namespace isrn::cpu
