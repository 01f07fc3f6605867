#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "isrn/data/loader.hpp"
#include "isrn/data/wider.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::data;
namespace fs = std::filesystem;

namespace {

// Sample i: an image of (3 + i % 5) x (4 + 3i % 7) pixels with values that encode i and the position,
// i % 3 boxes, id "s<i>". Indices in `corrupt` throw isrn::Error (a data error), those in `fatal` throw
// std::runtime_error (a bug), each get() sleeps `delay` first.
class PatternDataset : public Dataset {
 public:
  explicit PatternDataset(size_t n, std::set<size_t> corrupt = {}, std::set<size_t> fatal = {},
                            std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : n_(n), corrupt_(std::move(corrupt)), fatal_(std::move(fatal)), delay_(delay) {}

  size_t size() const override { return n_; }

  Sample get(size_t i) const override {
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (fatal_.count(i)) throw std::runtime_error("synthetic bug at " + std::to_string(i));
    if (corrupt_.count(i)) throw Error("[synthetic] sample " + std::to_string(i) + " is corrupt");
    Sample s;
    s.image = Image(height(i), width(i));
    for (int64_t y = 0; y < s.image.height; ++y)
      for (int64_t x = 0; x < s.image.width; ++x)
        for (int c = 0; c < 3; ++c) s.image.at(y, x)[c] = pixel(i, y, x, c);
    for (size_t k = 0; k < i % 3; ++k) {
      const float f = static_cast<float>(i + k);
      s.boxes.push_back(Box{f, f + 1, f + 2.5f, f + 4});
    }
    s.id = "s" + std::to_string(i);
    return s;
  }

  static int64_t height(size_t i) { return 3 + static_cast<int64_t>(i % 5); }
  static int64_t width(size_t i) { return 4 + static_cast<int64_t>((3 * i) % 7); }
  static uint8_t pixel(size_t i, int64_t y, int64_t x, int c) {
    return static_cast<uint8_t>((i * 31 + static_cast<size_t>(y * 7 + x * 3 + c * 11)) % 256);
  }

 private:
  size_t n_;
  std::set<size_t> corrupt_, fatal_;
  std::chrono::milliseconds delay_;
};

// A transform that draws from its Generator for everything it does, so any dependence of the stream on
// the worker that ran it would show.
Sample jitter(Sample s, Generator& gen) {
  if (gen.uniform() < 0.5) {
    s.image = flip_horizontal(s.image);
    const float w = static_cast<float>(s.image.width);
    for (Box& b : s.boxes) b = Box{w - b.x2, b.y1, w - b.x1, b.y2};
  }
  const auto shift = static_cast<uint8_t>(gen.next_u64() % 64);
  for (uint8_t& p : s.image.pixels) p = static_cast<uint8_t>(p + shift);
  for (Box& b : s.boxes) b.x1 += static_cast<float>(gen.uniform());
  s.id += "#" + std::to_string(gen.next_u64() % 100000);
  return s;
}

std::vector<Batch> whole_epoch(DataLoader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(std::move(b));
  return out;
}

std::vector<Batch> rest_of_epoch(DataLoader& loader) {
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(std::move(b));
  return out;
}

void check_same(const std::vector<Batch>& a, const std::vector<Batch>& b, const std::string& what) {
  CAPTURE(what);
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    CAPTURE(k);
    CHECK(a[k].ids == b[k].ids);
    CHECK(a[k].indices == b[k].indices);
    CHECK(a[k].sizes == b[k].sizes);
    REQUIRE(a[k].images.shape() == b[k].images.shape());
    CHECK(a[k].images.to_vector<float>() == b[k].images.to_vector<float>());  // bit-identical, not close
    REQUIRE(a[k].boxes.size() == b[k].boxes.size());
    for (size_t i = 0; i < a[k].boxes.size(); ++i) {
      CHECK(a[k].boxes[i].shape() == b[k].boxes[i].shape());
      CHECK(a[k].boxes[i].to_vector<float>() == b[k].boxes[i].to_vector<float>());
    }
  }
}

std::vector<size_t> delivered_indices(const std::vector<Batch>& batches) {
  std::vector<size_t> out;
  for (const Batch& b : batches) out.insert(out.end(), b.indices.begin(), b.indices.end());
  return out;
}

// Runs `action` on a thread of its own; false when it has not finished after `seconds`. The thread is then
// abandoned with everything `action` owns, so that a hang fails this case rather than stalling the run.
bool finishes_within(double seconds, std::function<void()> action) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread runner([action = std::move(action), done] {
    action();
    done->set_value();
  });
  if (finished.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready) {
    runner.join();
    return true;
  }
  runner.detach();
  return false;
}

}  // namespace

namespace {

// Checks a batch of untransformed synthetic samples against values computed here from the indices it names.
void check_batch(const PatternDataset& ds, const Batch& b) {
  const int64_t count = b.size();
  REQUIRE(b.indices.size() == static_cast<size_t>(count));
  REQUIRE(b.sizes.size() == static_cast<size_t>(count));
  REQUIRE(b.boxes.size() == static_cast<size_t>(count));
  int64_t hmax = 0, wmax = 0;
  for (size_t i : b.indices) {
    hmax = std::max(hmax, PatternDataset::height(i));
    wmax = std::max(wmax, PatternDataset::width(i));
  }
  REQUIRE(b.images.shape() == Shape{count, 3, hmax, wmax});
  CHECK(b.images.dtype() == DType::Float32);
  const std::vector<float> v = b.images.to_vector<float>();
  for (int64_t k = 0; k < count; ++k) {
    const size_t i = b.indices[static_cast<size_t>(k)];
    CAPTURE(i);
    CHECK(b.ids[static_cast<size_t>(k)] == "s" + std::to_string(i));
    const int64_t h = PatternDataset::height(i), w = PatternDataset::width(i);
    CHECK(b.sizes[static_cast<size_t>(k)] == std::make_pair(h, w));
    // (p / 255 − mean) / std in double; the library computes p · (1 / (255 std)) − mean / std in float,
    // a few float roundings on values below 3 in magnitude: 1e-5 is ample and far below one grey level (0.017).
    double worst = 0;
    int64_t nonzero_padding = 0;
    for (int c = 0; c < 3; ++c)
      for (int64_t y = 0; y < hmax; ++y)
        for (int64_t x = 0; x < wmax; ++x) {
          const float got = v[static_cast<size_t>(((k * 3 + c) * hmax + y) * wmax + x)];
          if (y < h && x < w) {
            const double want = (PatternDataset::pixel(i, y, x, c) / 255.0 - kImageNetMean[c]) / kImageNetStd[c];
            worst = std::max(worst, std::abs(got - want));
          } else {
            nonzero_padding += got != 0.0f;
          }
        }
    CHECK(worst < 1e-5);
    CHECK(nonzero_padding == 0);
    const Tensor& boxes = b.boxes[static_cast<size_t>(k)];
    REQUIRE(boxes.shape() == Shape{static_cast<int64_t>(i % 3), 4});
    std::vector<float> want_boxes;
    for (const Box& box : ds.get(i).boxes) want_boxes.insert(want_boxes.end(), {box.x1, box.y1, box.x2, box.y2});
    CHECK(boxes.to_vector<float>() == want_boxes);
  }
}

}  // namespace

TEST_CASE("loader: batches are zero-padded, normalized, and carry boxes, ids, sizes and indices") {
  PatternDataset ds(10);
  for (int64_t workers : {0, 2}) {
    CAPTURE(workers);
    DataLoader loader(ds, LoaderConfig{4, workers, 2, false, false, 0});
    CHECK(loader.batches_per_epoch() == 3);
    const std::vector<Batch> batches = whole_epoch(loader, 0);
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].indices == std::vector<size_t>{0, 1, 2, 3});
    CHECK(batches[1].indices == std::vector<size_t>{4, 5, 6, 7});
    CHECK(batches[2].indices == std::vector<size_t>{8, 9});
    for (const Batch& b : batches) check_batch(ds, b);
  }
  DataLoader drop(ds, LoaderConfig{4, 1, 2, false, true, 0});
  CHECK(drop.batches_per_epoch() == 2);
  const std::vector<Batch> kept = whole_epoch(drop, 0);
  REQUIRE(kept.size() == 2);
  CHECK(kept[1].size() == 4);
  CHECK_THROWS_WITH_AS(collate({}), doctest::Contains("[collate] no samples"), Error);
  // collate() on its own: the same layout, with the indices it is given.
  std::vector<Sample> samples{ds.get(9), ds.get(0)};
  check_batch(ds, collate(std::move(samples), {9, 0}));
}

TEST_CASE("loader: batch memory is recycled only once the consumer has let go of it") {
  PatternDataset ds(41);
  for (int64_t workers : {0, 2}) {
    CAPTURE(workers);
    DataLoader loader(ds, LoaderConfig{3, workers, 1, true, false, 8});
    // A batch kept by the consumer must never be written again; the others are dropped at once, so their
    // buffers come back with the previous batch's values, which the padding must not show.
    std::vector<std::pair<Tensor, std::vector<float>>> kept;
    for (int64_t epoch : {0, 1, 2}) {
      loader.start_epoch(epoch);
      Batch b;
      for (int64_t k = 0; loader.next(b); ++k) {
        check_batch(ds, b);
        if (k % 5 == 2) kept.emplace_back(b.images, b.images.to_vector<float>());
      }
    }
    REQUIRE(kept.size() == 9);
    for (const auto& [images, values] : kept) CHECK(images.to_vector<float>() == values);
  }
}

TEST_CASE("loader: pinned batches are the same batches, and a buffer a GPU copy still reads is not rewritten") {
  PatternDataset ds(41);
  for (int64_t workers : {0, 2}) {
    CAPTURE(workers);
    LoaderConfig config{3, workers, 1, true, false, 8};
    DataLoader plain(ds, config);
    config.pin_memory = true;
    DataLoader pinned(ds, config);
    // Each batch goes up to the GPU without waiting and is dropped at once, so the loader recycles its
    // buffer while the copy may still be reading it (prefetch 1 keeps only a few buffers in the cycle).
    std::vector<Tensor> on_device;
    std::vector<Batch> reference;
    for (int64_t epoch : {0, 1}) {
      std::vector<Batch> want = whole_epoch(plain, epoch);
      std::vector<Batch> got;
      pinned.start_epoch(epoch);
      Batch b;
      while (pinned.next(b)) {
        CHECK(b.images.is_pinned() == cuda_available());
        if (cuda_available()) on_device.push_back(b.images.to(Device::cuda(0), /*non_blocking=*/true));
        got.push_back(b);
        got.back().images = b.images.clone();  // a pageable copy, so the pinned buffer can be recycled
      }
      check_same(got, want, "pinned against pageable, epoch " + std::to_string(epoch));
      reference.insert(reference.end(), std::make_move_iterator(want.begin()), std::make_move_iterator(want.end()));
    }
    REQUIRE(on_device.size() == (cuda_available() ? reference.size() : 0));
    for (size_t k = 0; k < on_device.size(); ++k) {
      CAPTURE(k);
      CHECK(on_device[k].to_vector<float>() == reference[k].images.to_vector<float>());
    }
  }
}

TEST_CASE("loader: every index once per epoch; the order follows (seed, epoch) alone") {
  for (size_t n : {0, 1, 2, 37}) {
    std::vector<size_t> order = epoch_order(n, 5, 3, true);
    std::sort(order.begin(), order.end());
    std::vector<size_t> identity(n);
    std::iota(identity.begin(), identity.end(), size_t{0});
    CHECK(order == identity);
    CHECK(epoch_order(n, 5, 3, false) == identity);
  }
  PatternDataset ds(37);
  const LoaderConfig config{5, 2, 2, true, false, 11};
  DataLoader loader(ds, config);
  const std::vector<Batch> e0 = whole_epoch(loader, 0);
  const std::vector<Batch> e1 = whole_epoch(loader, 1);
  std::vector<size_t> seen0 = delivered_indices(e0), seen1 = delivered_indices(e1);
  CHECK(seen0 == epoch_order(37, 11, 0, true));
  CHECK(seen1 == epoch_order(37, 11, 1, true));
  CHECK(seen0 != seen1);
  std::vector<size_t> sorted = seen0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<size_t> identity(37);
  std::iota(identity.begin(), identity.end(), size_t{0});
  CHECK(sorted == identity);
  std::sort(seen1.begin(), seen1.end());
  CHECK(seen1 == identity);
  CHECK(e0.size() == 8);  // 7 full batches and one of 2
  CHECK(e0.back().size() == 2);

  DataLoader again(ds, config);
  check_same(whole_epoch(again, 1), e1, "same seed, same epoch");
  LoaderConfig other = config;
  other.seed = 12;
  DataLoader reseeded(ds, other);
  CHECK(delivered_indices(whole_epoch(reseeded, 0)) != delivered_indices(e0));
  PatternDataset none(0);
  DataLoader nothing(none, config);
  CHECK(whole_epoch(nothing, 0).empty());
}

TEST_CASE("loader: batches do not depend on the number of workers or the prefetch depth") {
  PatternDataset ds(29, {4, 17});
  const std::vector<std::pair<int64_t, int64_t>> setups{{0, 1}, {1, 1}, {3, 2}, {8, 4}, {2, 1}};
  std::map<int64_t, std::vector<Batch>> reference;  // per epoch, from the first setup (synchronous)
  for (const auto& [workers, prefetch] : setups) {
    CAPTURE(workers);
    CAPTURE(prefetch);
    DataLoader loader(ds, LoaderConfig{3, workers, prefetch, true, false, 99}, jitter);
    for (int64_t epoch : {0, 2}) {
      std::vector<Batch> batches = whole_epoch(loader, epoch);
      if (reference.count(epoch) == 0) {
        CHECK(batches.size() == 9);  // 27 readable samples in batches of 3
        reference[epoch] = std::move(batches);
      } else {
        check_same(batches, reference[epoch], "epoch " + std::to_string(epoch) + " against the synchronous loader");
      }
    }
  }
  // The transform of each delivered sample is the one seeded from (seed, epoch, index): replay it by hand.
  REQUIRE(!reference[0].empty());
  const Batch& first = reference[0].front();
  for (size_t k = 0; k < first.indices.size(); ++k) {
    Generator gen(sample_seed(99, 0, first.indices[k]));
    const Sample replay = jitter(ds.get(first.indices[k]), gen);
    CHECK(replay.id == first.ids[k]);
    CHECK(first.sizes[k] == std::make_pair(replay.image.height, replay.image.width));
  }
  // The same index is transformed differently in another epoch (its id carries five random digits).
  DataLoader loader(ds, LoaderConfig{3, 2, 2, false, false, 99}, jitter);
  const std::vector<Batch> a = whole_epoch(loader, 0), b = whole_epoch(loader, 1);
  int differing = 0;
  for (size_t k = 0; k < a.size(); ++k) differing += a[k].ids != b[k].ids;
  CHECK(differing > 0);
}

TEST_CASE("loader: a sample whose get() throws a data error is skipped, counted and replaced") {
  PatternDataset ds(12, {2, 5, 6});
  for (int64_t workers : {0, 3}) {
    CAPTURE(workers);
    DataLoader loader(ds, LoaderConfig{4, workers, 2, false, false, 0});
    const std::vector<Batch> batches = whole_epoch(loader, 0);
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].indices == std::vector<size_t>{0, 1, 3, 4});
    CHECK(batches[1].indices == std::vector<size_t>{7, 8, 9, 10});
    CHECK(batches[2].indices == std::vector<size_t>{11});
    REQUIRE(loader.skipped().size() == 3);
    CHECK(loader.skipped()[0].index == 2);
    CHECK(loader.skipped()[1].index == 5);
    CHECK(loader.skipped()[2].index == 6);
    CHECK(loader.skipped()[1].epoch == 0);
    CHECK(loader.skipped()[1].message == "[synthetic] sample 5 is corrupt");
    // Skips are recorded as the batches that pass over them are delivered.
    whole_epoch(loader, 1);
    CHECK(loader.skipped().size() == 6);
    CHECK(loader.skipped()[3].epoch == 1);
  }
  // All samples corrupt: the epoch is empty, not an error.
  PatternDataset broken(3, {0, 1, 2});
  DataLoader loader(broken, LoaderConfig{2, 2, 2, true, false, 0});
  CHECK(whole_epoch(loader, 0).empty());
  CHECK(loader.skipped().size() == 3);
}

TEST_CASE("loader: a corrupt JPEG in a WIDER folder is skipped with its file named") {
  test::TempDir dir("isrn_loader_wider");
  const std::string root = dir.path.string();
  std::string text;
  for (int i = 0; i < 5; ++i) {
    const std::string name = "1--A/1_" + std::to_string(i) + ".jpg";
    text += name + "\n1\n1 1 4 4 0 0 0 0 0 0\n";
    fs::create_directories(root + "/WIDER_val/images/1--A");
    write_image(root + "/WIDER_val/images/" + name, Image(12, 10 + i, static_cast<uint8_t>(40 * i)));
  }
  fs::create_directories(root + "/wider_face_split");
  std::ofstream(root + "/wider_face_split/wider_face_val_bbx_gt.txt") << text;
  // Cut the third image short: stb_image would fill the rest with grey, read_image rejects it.
  const std::string victim = root + "/WIDER_val/images/1--A/1_2.jpg";
  fs::resize_file(victim, fs::file_size(victim) / 2);

  WiderDataset ds(root, "val");
  REQUIRE(ds.size() == 5);
  DataLoader loader(ds, LoaderConfig{2, 2, 1, false, false, 0});
  const std::vector<Batch> batches = whole_epoch(loader, 0);
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].ids == std::vector<std::string>{"1--A/1_0", "1--A/1_1"});
  CHECK(batches[1].ids == std::vector<std::string>{"1--A/1_3", "1--A/1_4"});
  CHECK(batches[1].sizes[1] == std::make_pair(int64_t{12}, int64_t{14}));
  REQUIRE(loader.skipped().size() == 1);
  CHECK(loader.skipped()[0].index == 2);
  CHECK(loader.skipped()[0].message.find("1_2.jpg") != std::string::npos);
}

TEST_CASE("loader: resuming from state() gives exactly the remaining batches") {
  PatternDataset ds(23, {3, 9, 10});
  const LoaderConfig config{4, 3, 2, true, false, 7};
  DataLoader full(ds, config, jitter);
  const std::vector<Batch> reference = whole_epoch(full, 4);
  REQUIRE(reference.size() == 5);  // 20 readable samples
  CHECK(full.state().batch == 5);
  CHECK(full.state().position == 23);
  for (size_t taken : {0, 1, 3, 5}) {
    CAPTURE(taken);
    LoaderState saved;
    {
      LoaderConfig first = config;
      first.num_workers = static_cast<int64_t>(taken % 3);  // the interrupted run may use other workers
      DataLoader interrupted(ds, first, jitter);
      interrupted.start_epoch(4);
      Batch b;
      for (size_t k = 0; k < taken; ++k) REQUIRE(interrupted.next(b));
      saved = interrupted.state();
    }
    CHECK(saved.epoch == 4);
    CHECK(saved.batch == static_cast<int64_t>(taken));
    CHECK(saved.dataset_size == 23);
    DataLoader resumed(ds, config, jitter);
    resumed.resume(saved);
    const std::vector<Batch> rest = rest_of_epoch(resumed);
    const std::vector<Batch> expected(reference.begin() + static_cast<std::ptrdiff_t>(taken), reference.end());
    check_same(rest, expected, "resumed");
    CHECK(resumed.state() == full.state());
  }
  PatternDataset smaller(22);
  DataLoader other(smaller, config);
  LoaderState s = full.state();
  CHECK_THROWS_WITH_AS(other.resume(s), doctest::Contains("the state was taken over a data set of 23 samples; this one has 22"),
                       Error);
  s.position = 24;
  CHECK_THROWS_WITH_AS(full.resume(s), doctest::Contains("position 24 is outside 0..23"), Error);
}

TEST_CASE("loader: stopping early does not hang, and start_epoch abandons the epoch in flight") {
  // Each loader is handed to finishes_within() as its only owner, so that a destructor that hangs fails a
  // check instead of stalling the test run.
  auto slow = std::make_shared<PatternDataset>(400, std::set<size_t>{}, std::set<size_t>{}, std::chrono::milliseconds(5));
  {
    auto loader = std::make_shared<DataLoader>(*slow, LoaderConfig{2, 4, 2, true, false, 1});
    loader->start_epoch(0);
    Batch b;
    REQUIRE(loader->next(b));
    CHECK(finishes_within(20, [slow, loader = std::move(loader)]() mutable { loader.reset(); }));
  }
  {
    // Destroyed before any batch was asked for, with the workers and the ready queue filling up.
    auto loader = std::make_shared<DataLoader>(*slow, LoaderConfig{8, 3, 1, false, false, 1});
    loader->start_epoch(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(finishes_within(20, [slow, loader = std::move(loader)]() mutable { loader.reset(); }));
  }
  {
    auto loader = std::make_shared<DataLoader>(*slow, LoaderConfig{2, 2, 2, true, false, 1});
    CHECK(finishes_within(20, [slow, loader = std::move(loader)]() mutable { loader.reset(); }));  // never started
  }
  // Abandoning epoch 0 after two batches: epoch 1 then starts from its own beginning.
  auto ds = std::make_shared<PatternDataset>(30);
  const LoaderConfig config{4, 3, 2, true, false, 5};
  auto restarted = std::make_shared<std::vector<Batch>>();
  REQUIRE(finishes_within(20, [ds, config, restarted] {
    DataLoader loader(*ds, config, jitter);
    loader.start_epoch(0);
    Batch b;
    loader.next(b);
    loader.next(b);
    *restarted = whole_epoch(loader, 1);
  }));
  DataLoader fresh(*ds, config, jitter);
  check_same(*restarted, whole_epoch(fresh, 1), "epoch 1 after abandoning epoch 0");
}

TEST_CASE("loader: errors other than data errors reach the consumer after the batches before them") {
  PatternDataset ds(16, {}, {6});
  for (int64_t workers : {0, 3}) {
    CAPTURE(workers);
    DataLoader loader(ds, LoaderConfig{4, workers, 2, false, false, 0});
    loader.start_epoch(0);
    Batch b;
    REQUIRE(loader.next(b));
    CHECK(b.indices == std::vector<size_t>{0, 1, 2, 3});
    CHECK_THROWS_WITH_AS(loader.next(b), "synthetic bug at 6", std::runtime_error);
    CHECK_THROWS_WITH_AS(loader.next(b), "synthetic bug at 6", std::runtime_error);  // the epoch stays failed
    CHECK(loader.skipped().empty());
    // A new epoch starts afresh and fails at the same place.
    loader.start_epoch(1);
    REQUIRE(loader.next(b));
    CHECK_THROWS_AS(loader.next(b), std::runtime_error);
  }
  // An isrn::Error thrown by the transform is not a data error: it propagates instead of being skipped.
  PatternDataset fine(8);
  const Transform picky = [](Sample s, Generator&) {
    ISRN_CHECK(s.id != "s5", "[picky] refuses ", s.id);
    return s;
  };
  for (int64_t workers : {0, 2}) {
    DataLoader loader(fine, LoaderConfig{2, workers, 1, false, false, 0}, picky);
    loader.start_epoch(0);
    Batch b;
    REQUIRE(loader.next(b));
    REQUIRE(loader.next(b));
    CHECK_THROWS_WITH_AS(loader.next(b), "[picky] refuses s5", Error);
    CHECK(loader.skipped().empty());
  }
  // A transform that returns a broken image is caught by the collation, with the sample named.
  const Transform breaks = [](Sample s, Generator&) {
    s.image.pixels.pop_back();
    return s;
  };
  DataLoader broken(fine, LoaderConfig{2, 1, 1, false, false, 0}, breaks);
  broken.start_epoch(0);
  Batch b;
  CHECK_THROWS_WITH_AS(broken.next(b), doctest::Contains("[collate] sample 's0': the pixel buffer holds"), Error);
}

TEST_CASE("loader: configuration and call-order errors") {
  PatternDataset ds(4);
  CHECK_THROWS_WITH_AS(DataLoader(ds, LoaderConfig{0, 0, 1, false, false, 0}),
                       "[DataLoader] batch_size must be positive, got 0", Error);
  CHECK_THROWS_WITH_AS(DataLoader(ds, LoaderConfig{1, -1, 1, false, false, 0}),
                       "[DataLoader] num_workers must be >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(DataLoader(ds, LoaderConfig{1, 1, 0, false, false, 0}),
                       "[DataLoader] prefetch must be positive, got 0", Error);
  DataLoader loader(ds, LoaderConfig{2, 1, 1, false, false, 0});
  Batch b;
  CHECK_THROWS_WITH_AS(loader.next(b), "[DataLoader] next() before start_epoch() or resume()", Error);
  CHECK_THROWS_WITH_AS(loader.start_epoch(-1), "[DataLoader] epoch must be >= 0, got -1", Error);
  loader.start_epoch(0);
  REQUIRE(loader.next(b));
  REQUIRE(loader.next(b));
  CHECK_FALSE(loader.next(b));
  CHECK_FALSE(loader.next(b));  // stays over
  CHECK(loader.state().position == 4);
}
