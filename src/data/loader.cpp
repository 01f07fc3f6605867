#include "isrn/data/loader.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "isrn/core/error.hpp"
#include "isrn/data/image.hpp"

namespace isrn::data {

namespace {

// splitmix64's finalizer: a bijection that scatters nearby inputs over the whole 64-bit range.
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Distinct tags keep the permutation stream and the per-sample streams of one (seed, epoch) apart.
constexpr uint64_t kOrderTag = 0x6f72646572ULL;   // "order"
constexpr uint64_t kSampleTag = 0x73616d706cULL;  // "sampl"

uint64_t chain(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b) { return mix(mix(mix(seed ^ tag) ^ a) ^ b); }

}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, size_t index) {
  return chain(seed, kSampleTag, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
}

std::vector<size_t> epoch_order(size_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(size);
  for (size_t i = 0; i < size; ++i) order[i] = i;
  if (!shuffle) return order;
  Generator gen(chain(seed, kOrderTag, static_cast<uint64_t>(epoch), 0));
  // Fisher–Yates. The modulo's bias is below size / 2^64: immaterial for any data set.
  for (size_t i = size; i > 1; --i) {
    const size_t j = static_cast<size_t>(gen.next_u64() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

namespace {

// Gives the float32 [B, 3, H, W] tensor a batch is written into; collate_into overwrites every element.
using Allocate = std::function<Tensor(const Shape&)>;

Batch collate_into(std::vector<Sample> samples, std::vector<size_t> indices, const Allocate& allocate) {
  ISRN_CHECK(!samples.empty(), "[collate] no samples");
  ISRN_CHECK(indices.empty() || indices.size() == samples.size(), "[collate] ", indices.size(), " indices for ",
             samples.size(), " samples");
  int64_t height = 0, width = 0;
  for (const Sample& s : samples) {
    const Image& im = s.image;
    ISRN_CHECK(im.height >= 0 && im.width >= 0 && im.pixels.size() == static_cast<size_t>(im.height * im.width * 3),
               "[collate] sample '", s.id, "': the pixel buffer holds ", im.pixels.size(), " bytes, not ", im.height,
               "x", im.width, "x3");
    height = std::max(height, im.height);
    width = std::max(width, im.width);
  }
  const int64_t count = static_cast<int64_t>(samples.size());
  Batch batch;
  batch.images = allocate({count, 3, height, width});
  float* base = batch.images.data_ptr<float>();
  const int64_t plane = height * width;
  for (int64_t b = 0; b < count; ++b) {
    Sample& s = samples[static_cast<size_t>(b)];
    float* dst = base + b * 3 * plane;
    // The padding is written here rather than by a zero-filled allocation: the collating thread is the
    // loader's one serial stage, and a recycled buffer holds the previous batch's values.
    normalize_padded_into(s.image, dst, height, width);
    batch.boxes.push_back(boxes_to_tensor(s.boxes));
    batch.sizes.emplace_back(s.image.height, s.image.width);
    batch.ids.push_back(std::move(s.id));
  }
  batch.indices = std::move(indices);
  return batch;
}

// Host buffers for batch images, reused once the consumer has let go of a batch. A fresh allocation of
// this size comes straight from mmap and is faulted in one 4 KiB page at a time on first touch: measured
// on [8, 3, 1024, 1024] floats, touching a fresh tensor took 3-4 times as long as normalizing eight images
// into an already-touched one. Used by one thread at a time (the collator, or next() without workers).
class BatchBuffers {
 public:
  BatchBuffers(size_t capacity, bool pinned) : capacity_(capacity), pinned_(pinned) {}

  Tensor take(const Shape& shape) {
    const int64_t n = std::max<int64_t>(shape_numel(shape), 1);
    // Free: no batch (or anything made from one) still shares the storage. Of those, the smallest that fits.
    auto is_free = [](const Tensor& t) { return t.storage().use_count() == 1; };
    Tensor* best = nullptr;
    Tensor* evictable = nullptr;
    for (Tensor& t : buffers_) {
      if (!is_free(t)) continue;
      if (t.numel() >= n && (best == nullptr || t.numel() < best->numel())) best = &t;
      if (evictable == nullptr || t.numel() < evictable->numel()) evictable = &t;
    }
    if (best != nullptr) {
      // Pairs with the release in the last holder's reference drop: its reads of the buffer happen before our writes.
      std::atomic_thread_fence(std::memory_order_acquire);
      // A copy to the GPU enqueued without waiting (Tensor::to(device, true)) may still be reading it.
      best->storage()->wait_for_device_reads();
      return best->narrow(0, 0, shape_numel(shape)).view(shape);
    }
    Tensor fresh = empty({n}, TensorOptions(DType::Float32).pinned_memory(pinned_));
    if (buffers_.size() < capacity_) {
      buffers_.push_back(fresh);
    } else if (evictable != nullptr) {
      *evictable = fresh;  // too small for this batch size: keep the larger one instead
    }
    return fresh.narrow(0, 0, shape_numel(shape)).view(shape);
  }

 private:
  size_t capacity_;
  bool pinned_;
  std::vector<Tensor> buffers_;  // flat float32
};

}  // namespace

Batch collate(std::vector<Sample> samples, std::vector<size_t> indices) {
  return collate_into(std::move(samples), std::move(indices),
                      [](const Shape& shape) { return empty(shape, DType::Float32); });
}

namespace {

// The outcome of loading one permutation position.
struct Loaded {
  enum class Kind { Sample, Skipped, Failed };
  Kind kind = Kind::Failed;
  size_t index = 0;
  Sample sample;
  std::string message;         // Skipped: the data error
  std::exception_ptr failure;  // Failed: what next() rethrows
};

// One element of the ready queue: a batch, the end of the epoch, or a failure.
struct Ready {
  Batch batch;
  int64_t position_after = 0;
  std::vector<SkippedSample> skips;  // passed over while gathering this batch
  std::exception_ptr failure;
  bool end = false;
};

// Thrown inside the collating thread when the pipeline is being stopped.
struct Stopping {};

}  // namespace

struct DataLoader::Impl {
  const Dataset& dataset;
  LoaderConfig config;
  Transform transform;

  // The epoch being delivered. `epoch` and `order` are fixed while the pipeline runs (workers read
  // them); the rest is the consumer's alone.
  int64_t epoch = 0;
  std::vector<size_t> order;
  LoaderState state;
  bool started = false;
  bool finished = false;
  std::exception_ptr failure;
  std::vector<SkippedSample> skipped;
  int64_t sync_position = 0;  // num_workers == 0: where the next batch starts

  // The pipeline (num_workers > 0), guarded by `mutex`.
  std::mutex mutex;
  std::condition_variable work_cv;    // workers: a position may be claimed, or stop
  std::condition_variable result_cv;  // collator: a result arrived, or stop
  std::condition_variable space_cv;   // collator: the ready queue has room, or stop
  std::condition_variable ready_cv;   // consumer: a batch is ready
  bool stopping = false;
  int64_t next_claim = 0;  // the next position a worker loads
  int64_t collated = 0;    // positions the collator has taken; workers stay within collated + window
  std::map<int64_t, Loaded> results;
  std::deque<Ready> ready;
  std::vector<std::thread> workers;
  std::thread collator;
  // Used by whichever thread collates (the collator, or next() without workers). Capacity: the batch the
  // consumer holds, the ready queue's, the one being built, and one to spare.
  BatchBuffers buffers{static_cast<size_t>(config.prefetch) + 3, config.pin_memory};

  Impl(const Dataset& d, LoaderConfig c, Transform t) : dataset(d), config(c), transform(std::move(t)) {}

  int64_t size() const { return static_cast<int64_t>(order.size()); }
  int64_t window() const { return config.batch_size + config.num_workers; }

  Loaded load(int64_t position) const {
    Loaded out;
    out.index = order[static_cast<size_t>(position)];
    Sample sample;
    try {
      sample = dataset.get(out.index);
    } catch (const Error& e) {
      out.kind = Loaded::Kind::Skipped;
      out.message = e.what();
      return out;
    } catch (...) {
      out.failure = std::current_exception();
      return out;
    }
    if (transform) {
      try {
        Generator gen(sample_seed(config.seed, epoch, out.index));
        sample = transform(std::move(sample), gen);
      } catch (...) {
        out.failure = std::current_exception();
        return out;
      }
    }
    out.sample = std::move(sample);
    out.kind = Loaded::Kind::Sample;
    return out;
  }

  // Takes positions from `position` on until a batch is full or the epoch ends; `take` yields the
  // outcome of one position, in order.
  template <typename Take>
  Ready gather(int64_t& position, Take&& take) {
    Ready r;
    std::vector<Sample> samples;
    std::vector<size_t> indices;
    while (static_cast<int64_t>(samples.size()) < config.batch_size && position < size()) {
      Loaded loaded = take(position);
      ++position;
      if (loaded.kind == Loaded::Kind::Skipped) {
        r.skips.push_back(SkippedSample{epoch, loaded.index, std::move(loaded.message)});
      } else if (loaded.kind == Loaded::Kind::Failed) {
        r.failure = loaded.failure;
        return r;
      } else {
        samples.push_back(std::move(loaded.sample));
        indices.push_back(loaded.index);
      }
    }
    r.position_after = position;
    if (samples.empty() || (config.drop_last && static_cast<int64_t>(samples.size()) < config.batch_size)) {
      r.end = true;
      return r;
    }
    try {
      r.batch = collate_into(std::move(samples), std::move(indices),
                             [this](const Shape& shape) { return buffers.take(shape); });
    } catch (...) {
      r.failure = std::current_exception();
    }
    return r;
  }

  void work_loop() {
    while (true) {
      int64_t position = 0;
      {
        std::unique_lock lock(mutex);
        work_cv.wait(lock, [&] { return stopping || next_claim >= size() || next_claim < collated + window(); });
        if (stopping || next_claim >= size()) return;
        position = next_claim++;
      }
      Loaded loaded = load(position);
      {
        std::lock_guard lock(mutex);
        results.emplace(position, std::move(loaded));
      }
      result_cv.notify_one();
    }
  }

  void collate_loop(int64_t position) {
    auto take = [&](int64_t p) {
      std::unique_lock lock(mutex);
      result_cv.wait(lock, [&] { return stopping || results.count(p) != 0; });
      if (stopping) throw Stopping{};
      auto it = results.find(p);
      Loaded loaded = std::move(it->second);
      results.erase(it);
      collated = p + 1;
      lock.unlock();
      work_cv.notify_all();
      return loaded;
    };
    try {
      while (true) {
        Ready r;
        try {
          r = gather(position, take);
        } catch (const Stopping&) {
          return;
        } catch (...) {
          r.failure = std::current_exception();  // e.g. out of memory while gathering
        }
        const bool last = r.end || r.failure;
        {
          std::unique_lock lock(mutex);
          space_cv.wait(lock, [&] { return stopping || static_cast<int64_t>(ready.size()) < config.prefetch; });
          if (stopping) return;
          ready.push_back(std::move(r));
        }
        ready_cv.notify_one();
        if (last) return;
      }
    } catch (...) {
      // Only a failure to queue the failure itself lands here; the consumer must not wait forever.
      std::lock_guard lock(mutex);
      Ready r;
      r.failure = std::current_exception();
      ready.push_back(std::move(r));
      ready_cv.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    work_cv.notify_all();
    result_cv.notify_all();
    space_cv.notify_all();
    for (std::thread& t : workers)
      if (t.joinable()) t.join();
    if (collator.joinable()) collator.join();
    workers.clear();
    results.clear();
    ready.clear();
    stopping = false;
  }

  void start(int64_t position) {
    if (config.num_workers == 0) {
      sync_position = position;
      return;
    }
    next_claim = position;
    collated = position;
    try {
      for (int64_t w = 0; w < config.num_workers; ++w) workers.emplace_back([this] { work_loop(); });
      collator = std::thread([this, position] { collate_loop(position); });
    } catch (...) {
      stop();
      throw;
    }
  }
};

DataLoader::DataLoader(const Dataset& dataset, LoaderConfig config, Transform transform) {
  ISRN_CHECK(config.batch_size >= 1, "[DataLoader] batch_size must be positive, got ", config.batch_size);
  ISRN_CHECK(config.num_workers >= 0, "[DataLoader] num_workers must be >= 0, got ", config.num_workers);
  ISRN_CHECK(config.prefetch >= 1, "[DataLoader] prefetch must be positive, got ", config.prefetch);
  impl_ = std::make_unique<Impl>(dataset, config, std::move(transform));
}

DataLoader::~DataLoader() { impl_->stop(); }

void DataLoader::start_epoch(int64_t epoch) {
  LoaderState s;
  s.epoch = epoch;
  s.dataset_size = static_cast<int64_t>(impl_->dataset.size());
  resume(s);
}

void DataLoader::resume(const LoaderState& s) {
  Impl& m = *impl_;
  const int64_t n = static_cast<int64_t>(m.dataset.size());
  ISRN_CHECK(s.epoch >= 0, "[DataLoader] epoch must be >= 0, got ", s.epoch);
  ISRN_CHECK(s.dataset_size == n, "[DataLoader] the state was taken over a data set of ", s.dataset_size,
             " samples; this one has ", n, ", so the epoch's order would differ");
  ISRN_CHECK(s.position >= 0 && s.position <= n, "[DataLoader] position ", s.position, " is outside 0..", n);
  ISRN_CHECK(s.batch >= 0, "[DataLoader] batch must be >= 0, got ", s.batch);
  m.stop();
  m.epoch = s.epoch;
  m.order = epoch_order(static_cast<size_t>(n), m.config.seed, s.epoch, m.config.shuffle);
  m.state = s;
  m.finished = false;
  m.failure = nullptr;
  m.started = false;  // until the threads are up: a failed start must not leave next() waiting on nothing
  m.start(s.position);
  m.started = true;
}

bool DataLoader::next(Batch& batch) {
  Impl& m = *impl_;
  ISRN_CHECK(m.started, "[DataLoader] next() before start_epoch() or resume()");
  if (m.failure) std::rethrow_exception(m.failure);
  if (m.finished) return false;
  Ready r;
  if (m.config.num_workers == 0) {
    r = m.gather(m.sync_position, [&](int64_t p) { return m.load(p); });
  } else {
    {
      std::unique_lock lock(m.mutex);
      m.ready_cv.wait(lock, [&] { return !m.ready.empty(); });
      r = std::move(m.ready.front());
      m.ready.pop_front();
    }
    m.space_cv.notify_one();
  }
  m.skipped.insert(m.skipped.end(), std::make_move_iterator(r.skips.begin()), std::make_move_iterator(r.skips.end()));
  if (r.failure) {
    m.failure = r.failure;
    m.stop();  // the epoch cannot go on: release the workers now
    std::rethrow_exception(r.failure);
  }
  m.state.position = r.position_after;
  if (r.end) {
    m.finished = true;
    m.stop();
    return false;
  }
  ++m.state.batch;
  batch = std::move(r.batch);
  return true;
}

LoaderState DataLoader::state() const { return impl_->state; }

const LoaderConfig& DataLoader::config() const { return impl_->config; }

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(impl_->dataset.size());
  const int64_t b = impl_->config.batch_size;
  return impl_->config.drop_last ? n / b : (n + b - 1) / b;
}

const std::vector<SkippedSample>& DataLoader::skipped() const { return impl_->skipped; }

}  // namespace isrn::data
