#pragma once
// Batches from a Dataset: worker threads decode and transform samples ahead of the consumer, a
// collating thread pads them into batches, and a bounded queue holds the batches ready.
//
// Reproducibility. The order of an epoch is a permutation drawn from (seed, epoch) alone, and each
// sample's transform gets a Generator seeded from (seed, epoch, dataset index) alone, so the batches
// are the same for any number of workers and any thread timing, and a run resumed from state() gives
// exactly the batches the interrupted run would have given.
//
// Unreadable samples. A dataset get() that throws isrn::Error (a corrupt or missing image) skips that
// sample: it is recorded in skipped() and the batch is filled from the next positions, so every batch
// but the epoch's last has batch_size samples. Any other exception, and any exception from the
// transform, is a bug rather than bad data: next() rethrows it, in order, once the batches before it
// have been delivered.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "isrn/data/dataset.hpp"
#include "isrn/data/sample.hpp"
#include "isrn/tensor.hpp"

namespace isrn::data {

// Runs on worker threads, several at once: it must not touch shared state without its own locking.
using Transform = std::function<Sample(Sample, Generator&)>;

struct LoaderConfig {
  int64_t batch_size = 1;
  // Threads that call get() and the transform; 0 does all the work inside next(), on the caller's thread.
  int64_t num_workers = 0;
  // Batches kept ready ahead of the consumer. Memory held: up to prefetch + 3 batch image buffers
  // (recycled once the consumer drops a batch, so keeping a batch's images longer costs a fresh
  // allocation) plus batch_size + num_workers decoded samples.
  int64_t prefetch = 2;
  bool shuffle = true;
  // Leave out the epoch's last batch when it is smaller than batch_size.
  bool drop_last = false;
  uint64_t seed = 0;
  // Batch images in page-locked memory (Tensor::pin_memory), for training on a GPU: their copy to the
  // device runs at full bus speed and can be enqueued without waiting (images.to(device, true)); a
  // buffer is rewritten only after such copies have read it. Ordinary memory on a machine without a GPU.
  bool pin_memory = false;
};

struct Batch {
  // float32 [B, 3, H, W] on the CPU (pinned with LoaderConfig::pin_memory), normalized with the
  // ImageNet mean and std (image.hpp), each image at the top-left and zero past its own size; H and W
  // are the largest in the batch. The loader reuses its storage for a later batch once nothing refers
  // to it any more.
  Tensor images;
  std::vector<Tensor> boxes;  // float32 [G_i, 4] (x1, y1, x2, y2) per image
  std::vector<std::string> ids;
  std::vector<std::pair<int64_t, int64_t>> sizes;  // (height, width) of each image before padding
  // Dataset indices, for tracing a batch back to its files.
  std::vector<size_t> indices;

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

// Where a run stands: resume(state()) continues with the next batch.
struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;      // permutation positions consumed by the batches delivered so far
  int64_t batch = 0;         // batches delivered in this epoch
  int64_t dataset_size = 0;  // checked on resume: the permutation would differ for another size
  bool operator==(const LoaderState&) const = default;
};

struct SkippedSample {
  int64_t epoch = 0;
  size_t index = 0;  // into the dataset
  std::string message;
};

// The seed of the Generator the transform receives for (seed, epoch, index); exposed so that a caller
// can replay one sample's augmentation outside the loader.
uint64_t sample_seed(uint64_t seed, int64_t epoch, size_t index);
// The order of epoch `epoch`: a permutation of 0 .. size-1 (the identity when shuffle is false).
std::vector<size_t> epoch_order(size_t size, uint64_t seed, int64_t epoch, bool shuffle);
// Pads and normalizes samples into one batch (what the loader does with each group of samples).
Batch collate(std::vector<Sample> samples, std::vector<size_t> indices = {});

class DataLoader {
 public:
  // Keeps a reference to `dataset`, which must outlive the loader. An empty transform passes samples through.
  DataLoader(const Dataset& dataset, LoaderConfig config, Transform transform = {});
  ~DataLoader();  // stops the workers and joins them, also in the middle of an epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts epoch `epoch` from its beginning, abandoning whatever the current epoch had in flight.
  void start_epoch(int64_t epoch);
  // Continues a run from a state() taken earlier (by this loader or another with the same dataset and config).
  void resume(const LoaderState& state);
  // The next batch of the current epoch, or false when the epoch is over.
  bool next(Batch& batch);

  LoaderState state() const;
  const LoaderConfig& config() const;
  // Batches per epoch when no sample is skipped.
  int64_t batches_per_epoch() const;
  // Samples skipped in the batches delivered so far, in delivery order (over every epoch of this loader).
  const std::vector<SkippedSample>& skipped() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace isrn::data
