// What isrn-detect is made of: the WIDER prediction-file writer (read back by the evaluation's own reader), the JSON
// writer, the input collection (image, folder, list) with its WIDER ids, and batched detection (padding, clipping,
// batch-of-equal-images against one image at a time).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "isrn/data/image.hpp"
#include "isrn/eval/predictions.hpp"
#include "isrn/eval/wider_eval.hpp"
#include "isrn/io/file.hpp"
#include "isrn/models/inference.hpp"
#include "isrn/models/multiscale.hpp"
#include "test_util.hpp"

using namespace isrn;
namespace fs = std::filesystem;

namespace {

void touch(const fs::path& path, const std::string& content = "x") {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

std::vector<std::string> paths_of(const std::vector<eval::InputImage>& images) {
  std::vector<std::string> out;
  for (const eval::InputImage& i : images) out.push_back(i.path);
  return out;
}

}  // namespace

TEST_CASE("WIDER prediction file: read back by the evaluation's reader, sorted by score, w = x2 - x1") {
  test::TempDir dir("isrn_predictions");
  // Unsorted scores with a tie (0.5 twice: the first listed must come first), fractional corners, and a score
  // whose float32 value has more digits than 3 decimals would keep.
  const std::vector<eval::ScoredBox> boxes = {{10.123, 20.5, 30.987, 45.25, 0.5},
                                              {0.0, 1.0, 2.0, 3.0, 0.91234567},
                                              {100.0, 200.0, 150.5, 260.0, 0.5},
                                              {5.004, 6.006, 7.5, 9.75, 0.0625}};
  const std::string path = eval::write_wider_prediction(dir.path.string(), "0--Parade/0_Parade_marchingband_1_465",
                                                        boxes);
  CHECK(path == (dir.path / "0--Parade" / "0_Parade_marchingband_1_465.txt").string());
  const eval::PredictionFile file = eval::read_prediction_file(path);
  CHECK(file.name == "0_Parade_marchingband_1_465");
  REQUIRE(file.detections.size() == 4);
  const std::vector<size_t> order = {1, 0, 2, 3};  // by descending score, the tie in input order
  for (size_t k = 0; k < order.size(); ++k) {
    const eval::ScoredBox& b = boxes[order[k]];
    const eval::Detection& d = file.detections[k];
    CAPTURE(k);
    // Corners are written to 1/100 pixel: within half of that, plus the parse's double rounding.
    CHECK(std::abs(d.x - b.x1) <= 0.005 + 1e-9);
    CHECK(std::abs(d.y - b.y1) <= 0.005 + 1e-9);
    // The evaluation reads the corner as x + w: it must land on the detector's x2 (no +1).
    CHECK(std::abs(d.x + d.w - b.x2) <= 0.01 + 1e-9);
    CHECK(std::abs(d.y + d.h - b.y2) <= 0.01 + 1e-9);
    // The score survives exactly at float32 precision.
    CHECK(static_cast<float>(d.score) == static_cast<float>(b.score));
  }
  // The text itself: whole numbers without decimals, and the score as the float32 nearest 0.91234567 prints in
  // its shortest form (numpy: repr(np.float32(0.91234567)) == '0.91234565').
  const std::string text = io::read_file(path);
  CHECK(text.find("\n0 1 2 2 0.91234565\n") != std::string::npos);
  CHECK(text.find("\n100 200 50.5 60 0.5\n") != std::string::npos);
  CHECK(text.rfind("0_Parade_marchingband_1_465\n4\n", 0) == 0);

  // The folder reader keys it by <event>/<name> and finds nothing to warn about.
  const eval::PredictionFolder folder = eval::read_prediction_folder(dir.path.string());
  CHECK(folder.warnings.empty());
  REQUIRE(folder.predictions.count("0--Parade/0_Parade_marchingband_1_465") == 1);
  CHECK(folder.predictions.at("0--Parade/0_Parade_marchingband_1_465").size() == 4);
}

TEST_CASE("WIDER prediction file: no detections, bad values and ids") {
  test::TempDir dir("isrn_predictions_empty");
  const std::string path = eval::write_wider_prediction(dir.path.string(), "19--Couple/19_Couple_Couple_19_1", {});
  CHECK(io::read_file(path) == "19_Couple_Couple_19_1\n0\n");
  const eval::PredictionFile file = eval::read_prediction_file(path);
  CHECK(file.name == "19_Couple_Couple_19_1");
  CHECK(file.detections.empty());
  // A second write replaces the file.
  eval::write_wider_prediction(dir.path.string(), "19--Couple/19_Couple_Couple_19_1", {{1, 2, 3, 4, 0.25}});
  CHECK(eval::read_prediction_file(path).detections.size() == 1);

  CHECK_THROWS_WITH_AS(eval::format_wider_prediction("img", {{0, 0, NAN, 1, 0.5}}),
                       doctest::Contains("[format_wider_prediction] img: detection 0 has a non-finite value"), Error);
  CHECK_THROWS_WITH_AS(eval::format_wider_prediction("img", {{0, 0, 1, 1, INFINITY}}),
                       doctest::Contains("non-finite"), Error);
  CHECK_THROWS_WITH_AS(eval::format_wider_prediction("two\nlines", {}), doctest::Contains("one non-empty line"),
                       Error);
  CHECK_THROWS_WITH_AS(eval::write_wider_prediction(dir.path.string(), "no_event", {}),
                       doctest::Contains("[write_wider_prediction] id 'no_event' is not <event>/<name>"), Error);
  // -0 is printed as 0 (a reader that compares text would otherwise see "-0").
  CHECK(eval::format_wider_prediction("z", {{-0.001, 0, 1, 1, 0.5}}) == "z\n1\n0 0 1 1 0.5\n");
}

TEST_CASE("select_and_sort keeps scores >= threshold in descending, stable order") {
  const std::vector<eval::ScoredBox> boxes = {
      {0, 0, 1, 1, 0.2}, {1, 0, 2, 1, 0.7}, {2, 0, 3, 1, 0.2}, {3, 0, 4, 1, NAN}, {4, 0, 5, 1, 0.1999}};
  const std::vector<eval::ScoredBox> kept = eval::select_and_sort(boxes, 0.2);
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].x1 == 1);
  CHECK(kept[1].x1 == 0);  // the two 0.2 boxes in input order
  CHECK(kept[2].x1 == 2);
  CHECK(eval::select_and_sort(boxes, 0.0).size() == 4);  // NaN never passes
  CHECK(eval::select_and_sort({}, 0.0).empty());
}

TEST_CASE("to_scored_boxes reads a detector's output from any dtype") {
  models::Detections d{from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 4}),
                       from_vector<double>({0.75, 0.5}, Shape{2})};
  const std::vector<eval::ScoredBox> boxes = eval::to_scored_boxes(d);
  REQUIRE(boxes.size() == 2);
  CHECK(boxes[1].x1 == 5);
  CHECK(boxes[1].y2 == 8);
  CHECK(boxes[0].score == 0.75);
  CHECK_THROWS_WITH_AS(eval::to_scored_boxes({zeros({2, 3}), zeros({2})}), doctest::Contains("[to_scored_boxes]"),
                       Error);
}

TEST_CASE("JSON detections: one document per image with sorted, rounded boxes and the stage timings") {
  test::TempDir dir("isrn_predictions_json");
  eval::ImageRecord record{"some/where/0--Parade/a.jpg", "0--Parade/a", 640, 480,
                           {{1.234, 2, 3.456, 4, 0.25f}, {10, 20, 30, 40, 0.9f}}, {1.5, 2.25, 30.0001, 4}};
  const std::string path = eval::write_detections_json(dir.path.string(), record);
  CHECK(path == (dir.path / "0--Parade" / "a.json").string());
  const nlohmann::json doc = nlohmann::json::parse(io::read_file(path));
  CHECK(doc["image"] == "some/where/0--Parade/a.jpg");
  CHECK(doc["id"] == "0--Parade/a");
  CHECK(doc["width"] == 640);
  CHECK(doc["height"] == 480);
  REQUIRE(doc["detections"].size() == 2);
  CHECK(doc["detections"][0]["x1"] == 10.0);
  CHECK(doc["detections"][0]["score"].get<double>() == doctest::Approx(0.9).epsilon(1e-7));  // float32's 0.9
  CHECK(doc["detections"][1]["x1"].get<double>() == 1.23);
  CHECK(doc["detections"][1]["x2"].get<double>() == 3.46);
  CHECK(doc["timing_ms"]["network"].get<double>() == 30.0);
  CHECK(doc["timing_ms"]["preprocess"].get<double>() == 2.25);
  // The score's digits are the float's shortest ones, not a double expansion of it.
  CHECK(io::read_file(path).find("\"score\":0.9}") != std::string::npos);
}

TEST_CASE("image_id: the last folder and the file name without extension") {
  CHECK(eval::image_id("/data/WIDER_val/images/0--Parade/0_Parade_marchingband_1_465.jpg") ==
        "0--Parade/0_Parade_marchingband_1_465");
  CHECK(eval::image_id("/data/x/./y/../19--Couple/b.PNG") == "19--Couple/b");
  CHECK(eval::image_id("/c.jpg") == "_/c");
  // A bare file name takes the working folder's name.
  CHECK(eval::image_id("d.jpg") == fs::current_path().filename().string() + "/d");
  CHECK(eval::has_image_extension("a.JPEG"));
  CHECK(eval::has_image_extension("a.bmp"));
  CHECK_FALSE(eval::has_image_extension("a.txt"));
  CHECK_FALSE(eval::has_image_extension("jpg"));
}

TEST_CASE("collect_inputs: a folder recursively, an image, a list") {
  test::TempDir dir("isrn_inputs");
  const fs::path root = dir.path / "images";
  touch(root / "1--B" / "z.jpg");
  touch(root / "0--A" / "b.png");
  touch(root / "0--A" / "a.JPG");
  touch(root / "0--A" / "deeper" / "c.bmp");
  touch(root / "0--A" / "notes.txt");
  touch(root / "top.jpeg");

  // Folder: every image at any depth, sorted by path, other files ignored.
  const std::vector<eval::InputImage> found = eval::collect_inputs(root.string());
  CHECK(paths_of(found) == std::vector<std::string>{(root / "0--A" / "a.JPG").string(),
                                                    (root / "0--A" / "b.png").string(),
                                                    (root / "0--A" / "deeper" / "c.bmp").string(),
                                                    (root / "1--B" / "z.jpg").string(), (root / "top.jpeg").string()});
  CHECK(found[0].id == "0--A/a");
  CHECK(found[2].id == "deeper/c");
  CHECK(found[4].id == "images/top");

  // One image.
  const auto one = eval::collect_inputs((root / "1--B" / "z.jpg").string());
  REQUIRE(one.size() == 1);
  CHECK(one[0].id == "1--B/z");

  // A list: trimmed lines, comments and blank lines skipped, CRLF accepted, relative paths against the list's folder,
  // absolute paths as they are, and missing images kept for the run to report.
  const fs::path list = dir.path / "lists" / "val.txt";
  touch(list, "# validation images\n\n  ../images/0--A/a.JPG  \r\n" + (root / "1--B" / "z.jpg").string() +
                  "\n\t../images/0--A/missing.jpg\n#../images/top.jpeg\n");
  const std::vector<eval::InputImage> listed = eval::collect_inputs(list.string());
  CHECK(paths_of(listed) == std::vector<std::string>{(dir.path / "lists" / "../images/0--A/a.JPG").string(),
                                                     (root / "1--B" / "z.jpg").string(),
                                                     (dir.path / "lists" / "../images/0--A/missing.jpg").string()});
  CHECK(listed[2].id == "0--A/missing");
  touch(dir.path / "empty.lst", "# nothing\n\n");
  CHECK(eval::collect_inputs((dir.path / "empty.lst").string()).empty());

  // Errors: a path that is not there, and two images that would share a prediction file.
  const std::string missing_message = "[collect_inputs] " + (dir.path / "nope").string() + ": no such file";
  CHECK_THROWS_WITH_AS(eval::collect_inputs((dir.path / "nope").string()), doctest::Contains(missing_message.c_str()),
                       Error);
  touch(dir.path / "dup" / "one" / "0--A" / "a.jpg");
  touch(dir.path / "dup" / "two" / "0--A" / "a.png");
  CHECK_THROWS_WITH_AS(eval::collect_inputs((dir.path / "dup").string()),
                       doctest::Contains("would both be written as 0--A/a"), Error);
}

TEST_CASE("pad_batch: each image normalized at the top left, zeros (the mean pixel) elsewhere") {
  const data::Image a = test::textured_image(5, 7, 1), b = test::textured_image(6, 3, 2);
  const Tensor batch = models::pad_batch({&a, &b});
  REQUIRE(batch.shape() == Shape{2, 3, 6, 7});
  const Tensor ta = data::to_tensor(a), tb = data::to_tensor(b);
  const std::vector<float> pb = batch.contiguous().to_vector<float>();
  const std::vector<float> va = ta.to_vector<float>(), vb = tb.to_vector<float>();
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 7; ++x) {
        const float got_a = pb[((0 * 3 + c) * 6 + y) * 7 + x], got_b = pb[((1 * 3 + c) * 6 + y) * 7 + x];
        CHECK(got_a == (y < 5 ? va[(c * 5 + y) * 7 + x] : 0.0f));
        CHECK(got_b == (x < 3 ? vb[(c * 6 + y) * 3 + x] : 0.0f));
      }
  CHECK_THROWS_WITH_AS(models::pad_batch({}), doctest::Contains("[pad_batch] no images"), Error);
}

TEST_CASE("clip_detections clips to [0, W-1] x [0, H-1] and drops boxes left without area") {
  const models::Detections d{from_vector<float>({-5, 2, 10, 8,     //
                                                 50, 50, 70, 70,   // wholly right of a 40-wide image
                                                 30, -3, 45, 25,   //
                                                 39, 10, 60, 20},  // only its left edge at x = 39 stays: no width
                                                Shape{4, 4}),
                             from_vector<float>({0.9f, 0.8f, 0.7f, 0.6f}, Shape{4})};
  const models::Detections c = models::clip_detections(d, 30, 40);
  REQUIRE(c.scores.size(0) == 2);
  CHECK(test::values(c.boxes) == std::vector<double>{0, 2, 10, 8, 30, 0, 39, 25});
  CHECK(test::values(c.scores) == std::vector<double>{0.9f, 0.7f});
  CHECK(models::clip_detections({zeros({0, 4}), zeros({0})}, 3, 3).scores.size(0) == 0);
  CHECK(models::shrink_scale(100, 100, 0) == 1.0);
  CHECK(models::shrink_scale(100, 100, 200) == 1.0);  // never enlarged
  CHECK(models::shrink_scale(400, 100, 100) == doctest::Approx(0.5));
}

TEST_CASE("detect_batch: a batch of equal-size images gives each image's own detections") {
  Generator gen(5);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 6);
  const data::Image a = test::textured_image(48, 64, 11), b = test::textured_image(48, 64, 12), c = test::textured_image(48, 64, 13);
  for (Device d : test::devices()) {
    CAPTURE(d);
    det.to(d);
    models::BatchOptions options;
    options.device = d;
    // Batch 1 against the detector's own single-image path, clipped: the same computation, so exactly equal.
    const models::Detections alone_a = models::detect_batch(det, {&a}, options).front();
    const models::Detections direct = models::clip_detections(det.detect(data::to_tensor(a).unsqueeze(0).to(d)).front(),
                                                              a.height, a.width);
    REQUIRE(alone_a.scores.size(0) > 0);
    test::check_close(alone_a.boxes, direct.boxes, 0, 0, "batch 1 boxes");
    test::check_close(alone_a.scores, direct.scores, 0, 0, "batch 1 scores");

    models::StageTimes times;
    const std::vector<models::Detections> together = models::detect_batch(det, {&a, &b, &c}, options, &times);
    REQUIRE(together.size() == 3);
    CHECK(times.network > 0);
    CHECK(times.postprocess > 0);
    const data::Image* images[] = {&a, &b, &c};
    for (size_t i = 0; i < 3; ++i) {
      CAPTURE(i);
      const models::Detections alone = models::detect_batch(det, {images[i]}, options).front();
      // Same pixels and no padding: only the summation order of the batched convolutions may differ
      // (float32, a few hundred terms per output), so 1e-4 in scores and 1e-3 px in boxes.
      test::check_close(together[i].scores, alone.scores, 0, 1e-4, "scores");
      test::check_close(together[i].boxes, alone.boxes, 0, 1e-3, "boxes");
    }
    det.to(Device::cpu());
  }
}

TEST_CASE("detect_batch: padded images keep their boxes inside themselves; the unpadded one is unchanged") {
  Generator gen(7);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 8);
  const data::Image big = test::textured_image(56, 72, 21), small = test::textured_image(30, 41, 22);
  const std::vector<models::Detections> both = models::detect_batch(det, {&small, &big});
  REQUIRE(both.size() == 2);
  REQUIRE(both[0].scores.size(0) > 0);
  const std::vector<double> b = test::values(both[0].boxes);
  for (size_t i = 0; i < b.size(); i += 4) {
    CHECK(b[i] >= 0);
    CHECK(b[i + 1] >= 0);
    CHECK(b[i + 2] <= small.width - 1);
    CHECK(b[i + 3] <= small.height - 1);
  }
  // The largest image is not padded: its GroupNorm statistics and anchors are its own (tolerance as above).
  const models::Detections alone = models::detect_batch(det, {&big}).front();
  test::check_close(both[1].scores, alone.scores, 0, 1e-4, "unpadded scores");
  test::check_close(both[1].boxes, alone.boxes, 0, 1e-3, "unpadded boxes");
}

TEST_CASE("detect_batch: --max-size shrinks large images and maps their boxes back to the original size") {
  Generator gen(9);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 10);
  const data::Image image = test::textured_image(80, 120, 31);
  models::BatchOptions options;
  options.max_size = 49;  // 49² / (80·120) = 0.25: the network sees 40 × 60
  const models::Detections shrunk = models::detect_batch(det, {&image}, options).front();
  // The same as one run at shrink_scale's factor (detect_at_scale, which does not clip), clipped.
  const double s = models::shrink_scale(80, 120, 49);
  CHECK(s == doctest::Approx(49.0 / std::sqrt(9600.0)));
  const models::Detections reference =
      models::clip_detections(models::detect_at_scale(det, image, s, false, Device::cpu()), 80, 120);
  REQUIRE(shrunk.scores.size(0) > 0);
  test::check_close(shrunk.boxes, reference.boxes, 0, 0, "boxes");
  test::check_close(shrunk.scores, reference.scores, 0, 0, "scores");
  const std::vector<double> b = test::values(shrunk.boxes);
  CHECK(*std::max_element(b.begin(), b.end()) > 60);  // original coordinates, not the 60-wide input's
}

TEST_CASE("detect_multiscale with stage times gives the same detections and times every stage") {
  Generator gen(3);
  models::Detector det(test::tiny_detector_config(), gen);
  test::randomize_parameters(det, 4);
  const data::Image image = test::textured_image(40, 52, 41);
  models::MultiScaleConfig config;
  config.max_size = 64;
  const models::Detections plain = models::detect_multiscale(det, image, config);
  models::StageTimes times;
  const models::Detections timed = models::detect_multiscale(det, image, config, Device::cpu(), &times);
  test::check_close(timed.boxes, plain.boxes, 0, 0, "boxes");
  test::check_close(timed.scores, plain.scores, 0, 0, "scores");
  CHECK(times.preprocess > 0);
  CHECK(times.network > 0);
  CHECK(times.postprocess > 0);
  models::StageTimes more = times;
  more += times;
  CHECK(more.network == doctest::Approx(2 * times.network));
}
