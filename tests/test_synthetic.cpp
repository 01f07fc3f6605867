// The procedural face-scene generator: determinism, label validity, the size distribution, that a
// labelled face is really drawn where its box is, the data set's thread safety, and the WIDER export.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "isrn/data/synthetic.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::data;
namespace fs = std::filesystem;

namespace {

// A small configuration so that a case runs quickly; the size distribution case uses the defaults.
SyntheticConfig small_config() {
  SyntheticConfig c;
  c.min_image_size = 96;
  c.max_image_size = 160;
  c.max_face_size = 80;
  c.max_faces = 6;
  return c;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void check_boxes_valid(const Sample& s) {
  for (const Box& b : s.boxes) {
    CAPTURE(b.x1);
    CAPTURE(b.y1);
    CAPTURE(b.x2);
    CAPTURE(b.y2);
    REQUIRE(b.x1 == std::floor(b.x1));  // integer corners, as a WIDER `x y w h` line holds them
    REQUIRE(b.y1 == std::floor(b.y1));
    REQUIRE(b.x2 == std::floor(b.x2));
    REQUIRE(b.y2 == std::floor(b.y2));
    REQUIRE(b.x1 >= 0);
    REQUIRE(b.y1 >= 0);
    REQUIRE(b.x2 <= static_cast<float>(s.image.width));
    REQUIRE(b.y2 <= static_cast<float>(s.image.height));
    REQUIRE(b.width() > 0);
    REQUIRE(b.height() > 0);
  }
}

}  // namespace

TEST_CASE("synthetic: the same seed gives the same scene; other seeds give other scenes") {
  const SyntheticConfig config;
  std::vector<FaceAttributes> a1, a2, a3;
  const Sample s1 = generate_scene(config, 12345, &a1);
  const Sample s2 = generate_scene(config, 12345, &a2);
  const Sample s3 = generate_scene(config, 12346, &a3);
  CHECK(s1.image.height == s2.image.height);
  CHECK(s1.image.width == s2.image.width);
  CHECK(s1.image.pixels == s2.image.pixels);
  CHECK(s1.boxes == s2.boxes);
  CHECK(a1 == a2);
  CHECK(s1.id == "synthetic/seed_12345");
  CHECK(s1.boxes.size() == a1.size());
  CHECK(!s1.boxes.empty());
  // A neighbouring seed is an unrelated scene: other size or other pixels, and other boxes.
  CHECK((s1.image.height != s3.image.height || s1.image.width != s3.image.width || s1.image.pixels != s3.image.pixels));
  CHECK(s1.boxes != s3.boxes);
  // Many seeds: no two scenes alike (the first box and the size are enough to tell them apart).
  std::set<std::tuple<int64_t, int64_t, float, float>> seen;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const Sample s = generate_scene(small_config(), seed);
    const Box first = s.boxes.empty() ? Box{} : s.boxes[0];
    seen.insert({s.image.height, s.image.width, first.x1, first.y2});
  }
  CHECK(seen.size() == 40);
}

TEST_CASE("synthetic: boxes are integer, inside the image, of positive size; sizes and counts respect the config") {
  SyntheticConfig config = small_config();
  config.min_faces = 2;
  config.border_cut_prob = 0.5;  // many faces cut by the border: their boxes must be clipped
  int64_t faces = 0, touching_border = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    CAPTURE(seed);
    std::vector<FaceAttributes> attrs;
    const Sample s = generate_scene(config, seed, &attrs);
    REQUIRE(s.image.height >= config.min_image_size);
    REQUIRE(s.image.height <= config.max_image_size);
    REQUIRE(s.image.width >= config.min_image_size);
    REQUIRE(s.image.width <= config.max_image_size);
    REQUIRE(s.image.pixels.size() == static_cast<size_t>(s.image.height * s.image.width * 3));
    REQUIRE(s.boxes.size() <= static_cast<size_t>(config.max_faces));
    REQUIRE(attrs.size() == s.boxes.size());
    check_boxes_valid(s);
    for (const FaceAttributes& a : attrs) {
      REQUIRE(a.blur <= 2);
      REQUIRE(a.expression <= 1);
      REQUIRE(a.illumination <= 1);
      REQUIRE(a.occlusion <= 2);
      REQUIRE(a.pose <= 1);
    }
    // No face hides more than max_overlap of another face's box.
    for (size_t i = 0; i < s.boxes.size(); ++i)
      for (size_t j = 0; j < s.boxes.size(); ++j) {
        if (i == j) continue;
        const Box &a = s.boxes[i], &b = s.boxes[j];
        const float inter = std::max(0.f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1)) *
                            std::max(0.f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
        REQUIRE(inter <= config.max_overlap * b.width() * b.height() + 1e-3f);
      }
    faces += static_cast<int64_t>(s.boxes.size());
    for (const Box& b : s.boxes)
      touching_border += (b.x1 == 0 || b.y1 == 0 || b.x2 == s.image.width || b.y2 == s.image.height) ? 1 : 0;
  }
  CHECK(faces >= 2 * 40);
  CHECK(touching_border > 0);
  // Zero faces is allowed.
  config.min_faces = config.max_faces = 0;
  CHECK(generate_scene(config, 3).boxes.empty());
}

TEST_CASE("synthetic: face sizes are log-uniform over 8..400 px") {
  SyntheticConfig config;
  config.min_image_size = 900;  // room for 400-px faces
  config.max_image_size = 1000;
  config.max_distractors = 0;
  config.max_background_shapes = 4;
  std::vector<double> sizes;
  int64_t attribute_counts[5] = {0, 0, 0, 0, 0};
  for (uint64_t seed = 0; seed < 150; ++seed) {
    std::vector<FaceAttributes> attrs;
    const Sample s = generate_scene(config, 777 + seed, &attrs);
    for (size_t k = 0; k < s.boxes.size(); ++k) {
      const Box& b = s.boxes[k];
      attribute_counts[0] += attrs[k].blur > 0;
      attribute_counts[1] += attrs[k].occlusion > 0;
      attribute_counts[2] += attrs[k].pose > 0;
      attribute_counts[3] += attrs[k].expression > 0;
      attribute_counts[4] += attrs[k].illumination > 0;
      // Faces cut by the border have clipped boxes: they say nothing about the drawn size.
      if (b.x1 <= 0 || b.y1 <= 0 || b.x2 >= s.image.width || b.y2 >= s.image.height) continue;
      sizes.push_back(std::sqrt(b.width() * b.height()));
    }
  }
  REQUIRE(sizes.size() > 800);
  const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
  // The range is covered: the extremes of ~1000 log-uniform draws lie within a few percent of the ends
  // (rounding to whole pixels and the roll, which widens the box, move a face by a pixel or a few percent).
  CHECK(*lo < 10);
  CHECK(*lo >= 6.5);
  CHECK(*hi > 350);
  CHECK(*hi < 460);
  // Log-uniform: each octave between 8 and 256 holds ln 2 / ln 50 = 17.7 % of the faces. With ~1000
  // faces one octave's share has a standard deviation of 1.2 %; the bounds (10 %, 26 %) also absorb the
  // faces lost to placement (large ones find no room more often).
  for (double octave = 8; octave < 256; octave *= 2) {
    CAPTURE(octave);
    const double share = static_cast<double>(std::count_if(sizes.begin(), sizes.end(), [&](double s) {
                           return s >= octave && s < 2 * octave;
                         })) /
                         static_cast<double>(sizes.size());
    CHECK(share > 0.10);
    CHECK(share < 0.26);
  }
  // Every attribute occurs, none dominates (blur 20 %, occlusion 25 %, profile 15 % by default).
  for (int k = 0; k < 5; ++k) {
    CAPTURE(k);
    CHECK(attribute_counts[k] > static_cast<int64_t>(sizes.size() / 20));
    CHECK(attribute_counts[k] < static_cast<int64_t>(sizes.size() / 2));
  }
}

TEST_CASE("synthetic: each labelled face is drawn in its box, and nothing changes far from the faces") {
  // The same seed with and without faces gives the same background (one random stream per part of the
  // scene), so the difference between the two images is exactly what the faces drew.
  SyntheticConfig with = small_config();
  with.min_image_size = 300;
  with.max_image_size = 400;
  with.min_faces = 1;
  with.max_faces = 3;
  with.min_face_size = 10;
  with.max_face_size = 50;
  with.body_prob = 0;  // bodies reach far below a face; without them a face's reach is its occluder
  SyntheticConfig without = with;
  without.min_faces = without.max_faces = 0;
  int64_t checked_faces = 0, far_pixels = 0;
  for (uint64_t seed = 100; seed < 115; ++seed) {
    CAPTURE(seed);
    const Sample a = generate_scene(with, seed), b = generate_scene(without, seed);
    REQUIRE(a.image.height == b.image.height);
    REQUIRE(a.image.width == b.image.width);
    REQUIRE(!a.boxes.empty());
    const int64_t W = a.image.width, H = a.image.height;
    auto differs = [&](int64_t y, int64_t x, int threshold) {
      for (int c = 0; c < 3; ++c)
        if (std::abs(int(a.image.at(y, x)[c]) - int(b.image.at(y, x)[c])) > threshold) return true;
      return false;
    };
    // Inside every box most pixels changed (skin, eyes, hair against an unrelated background; an
    // occluder changes them too). Sensor noise is the same in both, so 3 levels is already a change.
    for (const Box& box : a.boxes) {
      int64_t changed = 0, total = 0;
      for (int64_t y = static_cast<int64_t>(box.y1); y < static_cast<int64_t>(box.y2); ++y)
        for (int64_t x = static_cast<int64_t>(box.x1); x < static_cast<int64_t>(box.x2); ++x) {
          ++total;
          changed += differs(y, x, 3) ? 1 : 0;
        }
      CAPTURE(box.x1);
      CAPTURE(box.y1);
      CHECK(changed * 2 > total);
      ++checked_faces;
    }
    // Beyond three box sizes from every face (hair, blur and occluders stay closer) nothing changed.
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        bool near = false;
        for (const Box& box : a.boxes) {
          const float w = box.width(), h = box.height();
          near = near || (x >= box.x1 - 3 * w && x < box.x2 + 3 * w && y >= box.y1 - 3 * h && y < box.y2 + 3 * h);
        }
        if (near) continue;
        ++far_pixels;
        if (differs(y, x, 0)) {
          FAIL_CHECK("pixel (", y, ", ", x, ") changed far from every face");
          return;
        }
      }
  }
  CHECK(checked_faces >= 15);
  CHECK(far_pixels > 100000);
}

TEST_CASE("synthetic: SyntheticDataset::get is deterministic and thread-safe") {
  const SyntheticConfig config = small_config();
  const SyntheticDataset data(config, 99, 24);
  CHECK(data.size() == 24);
  std::vector<Sample> sequential;
  for (size_t i = 0; i < data.size(); ++i) sequential.push_back(data.get(i));
  CHECK(sequential[5].id == "synthetic/5");
  // get(i) is the scene of scene_seed(seed, i).
  const Sample direct = generate_scene(config, scene_seed(99, 7));
  CHECK(direct.image.pixels == sequential[7].image.pixels);
  CHECK(direct.boxes == sequential[7].boxes);
  // Another data-set seed gives other scenes.
  CHECK(SyntheticDataset(config, 100, 24).get(7).boxes != sequential[7].boxes);

  // Four threads, each walking all indices in its own order (steps coprime with 24), must reproduce
  // the sequential samples.
  const size_t steps[4] = {5, 7, 11, 13};
  std::vector<std::vector<Sample>> got(4, std::vector<Sample>(data.size()));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t k = 0; k < data.size(); ++k) {
        const size_t i = (k * steps[t] + t) % data.size();
        got[t][i] = data.get(i);
      }
    });
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < 4; ++t)
    for (size_t i = 0; i < data.size(); ++i) {
      CAPTURE(t);
      CAPTURE(i);
      REQUIRE(got[t][i].image.pixels == sequential[i].image.pixels);
      REQUIRE(got[t][i].boxes == sequential[i].boxes);
    }
  CHECK_THROWS_WITH_AS(data.get(24), doctest::Contains("[SyntheticDataset] index 24 is out of range for 24"), Error);
  // scene_seed scatters neighbouring indices.
  std::set<uint64_t> seeds;
  for (uint64_t i = 0; i < 1000; ++i) seeds.insert(scene_seed(7, i));
  CHECK(seeds.size() == 1000);
}

TEST_CASE("synthetic: a bad configuration throws an Error naming the field") {
  auto expect = [](auto change, const std::string& message) {
    SyntheticConfig c;
    change(c);
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(generate_scene(c, 1), doctest::Contains(message.c_str()), Error);
    CHECK_THROWS_WITH_AS(SyntheticDataset(c, 1, 3), doctest::Contains(message.c_str()), Error);
  };
  expect([](SyntheticConfig& c) { c.min_image_size = 8; }, "[synthetic] min_image_size 8 is outside 16..16384");
  expect([](SyntheticConfig& c) { c.max_image_size = 100; }, "max_image_size 100 is outside min_image_size (320)");
  expect([](SyntheticConfig& c) { c.min_faces = -1; }, "min_faces -1");
  expect([](SyntheticConfig& c) { c.max_faces = 0; }, "max_faces 0 is outside min_faces (1)");
  expect([](SyntheticConfig& c) { c.min_face_size = 2; }, "min_face_size 2");
  expect([](SyntheticConfig& c) { c.max_face_size = 5; }, "max_face_size 5");
  expect([](SyntheticConfig& c) { c.max_face_aspect = 1; }, "max_face_aspect 1");
  expect([](SyntheticConfig& c) { c.max_overlap = 1.5f; }, "max_overlap 1.5");
  expect([](SyntheticConfig& c) { c.blur_prob = -0.1; }, "blur_prob -0.1 is not a probability");
  expect([](SyntheticConfig& c) { c.body_prob = 2; }, "body_prob 2 is not a probability");
  expect([](SyntheticConfig& c) { c.max_distractors = -1; }, "max_distractors -1");
  expect([](SyntheticConfig& c) { c.max_background_shapes = -2; }, "max_background_shapes -2");
  expect([](SyntheticConfig& c) { c.max_noise = 200; }, "max_noise 200");
}

namespace {

// An independent reader of the official annotation layout: path line, count line, count face lines
// (or one dummy line when the count is 0). Returns, per path, the face lines as written.
struct GtRecord {
  std::string path;
  std::vector<std::string> lines;
  size_t count = 0;
};
std::vector<GtRecord> read_gt(const std::string& text) {
  std::vector<GtRecord> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    GtRecord r;
    r.path = line;
    REQUIRE(std::getline(in, line));
    r.count = std::stoul(line);
    const size_t n = r.count == 0 ? 1 : r.count;
    for (size_t k = 0; k < n; ++k) {
      REQUIRE(std::getline(in, line));
      r.lines.push_back(line);
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace

TEST_CASE("synthetic: write_synthetic_wider writes the official WIDER FACE layout") {
  test::TempDir dir("isrn_synth_wider");
  WiderExport options;
  options.out_dir = dir.path.string();
  options.train = 12;
  options.val = 5;
  options.seed = 2024;
  options.config = small_config();
  options.config.min_faces = 0;  // zero-face images get the dummy line
  options.config.max_faces = 12;
  options.threads = 3;
  const WiderExportCounts counts = write_synthetic_wider(options);
  CHECK(counts.train_images == 12);
  CHECK(counts.val_images == 5);

  for (const std::string split : {"train", "val"}) {
    CAPTURE(split);
    const uint64_t seed = split == "train" ? options.seed : validation_seed(options.seed);
    const size_t n = split == "train" ? options.train : options.val;
    const SyntheticDataset data(options.config, seed, n);
    const fs::path gt = dir.path / "wider_face_split" / ("wider_face_" + split + "_bbx_gt.txt");
    REQUIRE(fs::exists(gt));
    const std::vector<GtRecord> records = read_gt(read_text(gt));
    REQUIRE(records.size() == n);
    std::set<size_t> indices;
    std::string previous_event;
    size_t faces = 0, zero_face = 0;
    for (const GtRecord& r : records) {
      CAPTURE(r.path);
      // "<event>/<k>_Synthetic_<Kind>_<index>.jpg", events grouped and in order.
      const size_t slash = r.path.find('/');
      REQUIRE(slash != std::string::npos);
      const std::string event = r.path.substr(0, slash);
      CHECK(event >= previous_event);
      previous_event = event;
      REQUIRE(r.path.size() > 4);
      CHECK(r.path.substr(r.path.size() - 4) == ".jpg");
      const size_t underscore = r.path.rfind('_');
      const size_t index = std::stoul(r.path.substr(underscore + 1));
      REQUIRE(index < n);
      indices.insert(index);
      std::vector<FaceAttributes> attrs;
      const Sample s = data.get(index, &attrs);
      REQUIRE(r.count == s.boxes.size());
      const size_t count = s.boxes.size();
      CHECK(event == (count <= 3 ? "0--Synthetic_Few" : count <= 10 ? "1--Synthetic_Group" : "2--Synthetic_Crowd"));
      if (count == 0) {
        ++zero_face;
        CHECK(r.lines[0] == "0 0 0 0 0 0 0 0 0 0 ");  // exactly as the official files write it
      }
      for (size_t k = 0; k < count; ++k) {
        const Box& b = s.boxes[k];
        const FaceAttributes& a = attrs[k];
        std::ostringstream want;
        want << b.x1 << ' ' << b.y1 << ' ' << b.width() << ' ' << b.height() << ' ' << int(a.blur) << ' '
             << int(a.expression) << ' ' << int(a.illumination) << " 0 " << int(a.occlusion) << ' ' << int(a.pose)
             << ' ';
        CHECK(r.lines[k] == want.str());
      }
      faces += count;
      // The image is there, at the generated size, and decodes to the generated pixels up to JPEG loss
      // (quality 95, 4:4:4: measured 1.6 levels mean error on default scenes; bound 3; a wrong image would be ~50).
      const fs::path image_path = dir.path / ("WIDER_" + split) / "images" / r.path;
      REQUIRE(fs::exists(image_path));
      const Image back = read_image(image_path.string());
      REQUIRE(back.height == s.image.height);
      REQUIRE(back.width == s.image.width);
      double error = 0;
      for (size_t i = 0; i < back.pixels.size(); ++i) error += std::abs(int(back.pixels[i]) - int(s.image.pixels[i]));
      CHECK(error / static_cast<double>(back.pixels.size()) < 3.0);
    }
    CHECK(indices.size() == n);
    CHECK(faces == (split == "train" ? counts.train_faces : counts.val_faces));
    if (split == "train") CHECK(zero_face > 0);
  }
  // The train and val scenes differ.
  CHECK(SyntheticDataset(options.config, options.seed, 1).get(0).image.pixels !=
        SyntheticDataset(options.config, validation_seed(options.seed), 1).get(0).image.pixels);

  // The thread count does not change a byte.
  test::TempDir other("isrn_synth_wider_1");
  options.out_dir = other.path.string();
  options.threads = 1;
  write_synthetic_wider(options);
  for (const auto& entry : fs::recursive_directory_iterator(dir.path)) {
    if (!entry.is_regular_file()) continue;
    const fs::path twin = other.path / fs::relative(entry.path(), dir.path);
    CAPTURE(twin.string());
    REQUIRE(fs::exists(twin));
    CHECK(read_text(entry.path()) == read_text(twin));
  }

  options.jpeg_quality = 0;
  CHECK_THROWS_WITH_AS(write_synthetic_wider(options), doctest::Contains("[write_synthetic_wider] JPEG quality 0"), Error);
  options.jpeg_quality = 95;
  options.threads = 0;
  CHECK_THROWS_WITH_AS(write_synthetic_wider(options), doctest::Contains("threads 0"), Error);
}
