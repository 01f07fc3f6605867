// The official WIDER ground truth read from its .mat files (tools/wider_mat.cpp), the known answers of
// design/WIDER_EVAL.md that need it, and the cross-check against the independent Python reference
// (data_tools/wider_eval_reference.py) on the committed prediction set. Built only where libmatio is present; the
// cases on the real data skip, saying why, when ISRN_WIDERFACE_DIR does not hold it.
#if ISRN_HAVE_WIDER_MAT

#include <matio.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "isrn/eval/wider_eval.hpp"
#include "test_util.hpp"
#include "wider_mat.hpp"

using namespace isrn;
using namespace isrn::eval;
namespace fs = std::filesystem;

namespace {

const std::string kDataDir = ISRN_WIDERFACE_DIR;
const std::string kGroundTruthDir = kDataDir + "/ground_truth";

bool have_ground_truth() {
  for (const char* f : {"wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"})
    if (!fs::exists(kGroundTruthDir + "/" + f)) return false;
  return true;
}

#define SKIP_WITHOUT_WIDER_DATA()                                                                           \
  do {                                                                                                      \
    if (!have_ground_truth()) {                                                                             \
      MESSAGE("skipped: no WIDER FACE ground truth under " << kGroundTruthDir                               \
                                                          << " (configure with -DISRN_WIDERFACE_DIR=...)"); \
      return;                                                                                               \
    }                                                                                                       \
  } while (0)

// Read once: four compressed .mat files with 3,226 images each.
const GroundTruth& official_truth() {
  static const GroundTruth truth = read_wider_ground_truth(kGroundTruthDir);
  return truth;
}

std::string event_of(const std::string& id) { return id.substr(0, id.find('/')); }

// --- writing small .mat files with matio, laid out like the official ones -----------------------------------

using Box4 = std::array<int32_t, 4>;

struct KeepList {
  std::vector<double> values;       // 1-based, as MATLAB stores them
  matio_classes cls = MAT_C_DOUBLE;  // the official files: double class ...
  matio_types storage = MAT_T_UINT8; // ... stored as uint8 (uint16 beyond 255 faces)
  size_t rows = 0, cols = 1;         // rows 0 with values empty: a 0x1 list; cols 0 too: 0x0
};

struct FakeImage {
  std::string name;
  std::vector<Box4> boxes;
  std::array<KeepList, 3> keep;  // easy, medium, hard
};

struct FakeEvent {
  std::string name;
  std::vector<FakeImage> images;
};

matvar_t* char_row(const std::string& s, matio_types type) {
  size_t dims[2] = {1, s.size()};
  return Mat_VarCreate(nullptr, MAT_C_CHAR, type, 2, dims, const_cast<char*>(s.data()), 0);
}

matvar_t* box_matrix(const std::vector<Box4>& boxes, size_t columns = 4) {
  std::vector<int32_t> column_major(boxes.size() * columns);
  for (size_t r = 0; r < boxes.size(); ++r)
    for (size_t c = 0; c < columns; ++c) column_major[r + c * boxes.size()] = boxes[r][c];
  size_t dims[2] = {boxes.size(), boxes.empty() ? size_t{0} : columns};
  return Mat_VarCreate(nullptr, MAT_C_INT32, MAT_T_INT32, 2, dims, column_major.data(), 0);
}

matvar_t* keep_vector(const KeepList& k) {
  size_t dims[2] = {k.values.empty() ? k.rows : k.values.size(), k.values.empty() ? k.cols : 1};
  std::vector<uint8_t> u8(k.values.begin(), k.values.end());
  std::vector<uint16_t> u16(k.values.begin(), k.values.end());
  std::vector<double> f64(k.values.begin(), k.values.end());
  void* data = k.storage == MAT_T_UINT8 ? static_cast<void*>(u8.data())
               : k.storage == MAT_T_UINT16 ? static_cast<void*>(u16.data())
                                           : static_cast<void*>(f64.data());
  return Mat_VarCreate(nullptr, k.cls, k.storage, 2, dims, k.values.empty() ? nullptr : data, 0);
}

matvar_t* cell_column(const char* name, const std::vector<matvar_t*>& elements) {
  size_t dims[2] = {elements.size(), 1};
  matvar_t* cell = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, nullptr, 0);
  for (size_t i = 0; i < elements.size(); ++i) Mat_VarSetCell(cell, static_cast<int>(i), elements[i]);
  return cell;
}

void write_variable(mat_t* mat, matvar_t* var) {
  REQUIRE(var != nullptr);
  REQUIRE(Mat_VarWrite(mat, var, MAT_COMPRESSION_ZLIB) == 0);
  Mat_VarFree(var);
}

// setting: -1 writes wider_face_val.mat (no gt_list), 0..2 the easy/medium/hard file with its keep lists.
// box_columns != 4 or skip_variable make malformed files.
void write_fake_mat(const std::string& path, const std::vector<FakeEvent>& events, int setting,
                    size_t box_columns = 4, const std::string& skip_variable = "") {
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  std::vector<matvar_t*> event_names, file_cells, box_cells, keep_cells;
  for (const FakeEvent& e : events) {
    // Event names as UTF-8 (as the official files), image names as 8-bit characters, which matio writes as
    // 16-bit: the reader meets both widths.
    event_names.push_back(char_row(e.name, MAT_T_UTF8));
    std::vector<matvar_t*> names, boxes, keeps;
    for (const FakeImage& im : e.images) {
      names.push_back(char_row(im.name, MAT_T_UINT8));
      boxes.push_back(box_matrix(im.boxes, box_columns));
      if (setting >= 0) keeps.push_back(keep_vector(im.keep[setting]));
    }
    file_cells.push_back(cell_column(nullptr, names));
    box_cells.push_back(cell_column(nullptr, boxes));
    if (setting >= 0) keep_cells.push_back(cell_column(nullptr, keeps));
  }
  const auto put = [&](const char* name, const std::vector<matvar_t*>& cells) {
    matvar_t* var = cell_column(name, cells);
    if (skip_variable == name) {
      Mat_VarFree(var);
      return;
    }
    write_variable(mat, var);
  };
  put("event_list", event_names);
  put("file_list", file_cells);
  put("face_bbx_list", box_cells);
  if (setting >= 0) put("gt_list", keep_cells);
  Mat_Close(mat);
}

void write_fake_ground_truth(const std::string& dir, const std::vector<FakeEvent>& events) {
  write_fake_mat(dir + "/wider_face_val.mat", events, -1);
  const char* names[] = {"easy", "medium", "hard"};
  for (int s = 0; s < 3; ++s) write_fake_mat(dir + "/wider_" + names[s] + "_val.mat", events, s);
}

KeepList keep_of(std::vector<double> values, matio_classes cls, matio_types storage) {
  KeepList k;
  k.values = std::move(values);
  k.cls = cls;
  k.storage = storage;
  return k;
}

// Two events; every keep-list form the official files use, plus a real uint16 class and plain doubles:
//   A/a_1: 3 faces   easy {1,3} double/uint8   medium {1,2,3} uint16 class   hard {1,2,3} double/double
//   A/a_2: no faces  (0x0 boxes) keep lists 0x0 in every setting
//   B/b_1: 300 faces easy {300} double/uint16 (> 255 needs 16 bits) medium {1,...,300} double/uint16 hard the same
//   B/b_2: 2 faces   easy 0x1 empty   medium {2} double/uint8   hard {1,2} double/uint8
std::vector<FakeEvent> fake_events() {
  FakeEvent a{"0--A", {}}, b{"1--B", {}};
  FakeImage a1{"a_1", {{{10, 10, 20, 20}}, {{100, 10, 20, 20}}, {{200, 10, 40, 40}}}, {}};
  a1.keep = {keep_of({1, 3}, MAT_C_DOUBLE, MAT_T_UINT8), keep_of({1, 2, 3}, MAT_C_UINT16, MAT_T_UINT16),
             keep_of({1, 2, 3}, MAT_C_DOUBLE, MAT_T_DOUBLE)};
  FakeImage a2{"a_2", {}, {}};
  for (KeepList& k : a2.keep) k.cols = 0;  // 0x0
  FakeImage b1{"b_1", {}, {}};
  std::vector<double> all300;
  for (int i = 0; i < 300; ++i) {
    b1.boxes.push_back({(i % 20) * 40, (i / 20) * 40, 24, 24});
    all300.push_back(i + 1);
  }
  b1.keep = {keep_of({300}, MAT_C_DOUBLE, MAT_T_UINT16), keep_of(all300, MAT_C_DOUBLE, MAT_T_UINT16),
             keep_of(all300, MAT_C_DOUBLE, MAT_T_UINT16)};
  FakeImage b2{"b_2", {{{5, 5, 30, 30}}, {{60, 5, 30, 30}}}, {}};
  b2.keep = {KeepList{}, keep_of({2}, MAT_C_DOUBLE, MAT_T_UINT8), keep_of({1, 2}, MAT_C_DOUBLE, MAT_T_UINT8)};
  a.images = {a1, a2};
  b.images = {b1, b2};
  return {a, b};
}

}  // namespace

TEST_CASE("wider_mat: hand-made .mat files: uint8, uint16 and double keep lists, empty lists, a face-less image") {
  test::TempDir dir("isrn_wider_mat");
  const std::vector<FakeEvent> events = fake_events();
  write_fake_ground_truth(dir.path.string(), events);

  const WiderMat face = read_wider_mat(dir.file("wider_face_val.mat"));
  CHECK_FALSE(face.has_keep_lists);
  CHECK(face.events == std::vector<std::string>{"0--A", "1--B"});
  CHECK(face.files[1] == std::vector<std::string>{"b_1", "b_2"});
  REQUIRE(face.faces[1][0].size() == 300);
  CHECK(face.faces[1][0][299].x == 19 * 40);
  CHECK(face.faces[1][0][299].y == 14 * 40);
  CHECK(face.faces[0][0][2].w == 40);
  CHECK(face.faces[0][1].empty());

  const GroundTruth truth = read_wider_ground_truth(dir.path.string());
  CHECK(truth.settings == std::vector<std::string>{"easy", "medium", "hard"});
  REQUIRE(truth.images.size() == 4);
  CHECK(truth.images[0].id == "0--A/a_1");
  CHECK(truth.images[3].id == "1--B/b_2");
  using Keep = std::vector<int64_t>;
  CHECK(truth.images[0].keep[0] == Keep{0, 2});  // 1-based {1, 3}
  CHECK(truth.images[0].keep[1] == Keep{0, 1, 2});
  CHECK(truth.images[0].keep[2] == Keep{0, 1, 2});
  for (int s = 0; s < 3; ++s) CHECK(truth.images[1].keep[s].empty());
  CHECK(truth.images[2].keep[0] == Keep{299});  // index 300, which needs uint16 storage
  CHECK(truth.images[2].keep[1].size() == 300);
  CHECK(truth.images[2].keep[2].back() == 299);
  CHECK(truth.images[3].keep[0].empty());  // 0x1
  CHECK(truth.images[3].keep[1] == Keep{1});

  // Detections: every face of every image found, plus two on the face-less image a_2. Easy: a_1 F0 and F2 count,
  // F1 is ignored; b_1's face 300 counts, the other 299 detections on b_1 are dropped; b_2's two are dropped;
  // a_2 is skipped with its detections (no faces). So easy counts 3 detections, all recalling: AP 1.
  Predictions p;
  double score = 1.0;
  for (const GroundTruthImage& im : truth.images)
    for (const FaceBox& f : im.faces) p[im.id].push_back({f.x, f.y, f.w, f.h, score -= 0.001});
  p["0--A/a_2"] = {{0, 0, 50, 50, 0.99}, {300, 300, 50, 50, 0.2}};
  const EvalResult r = evaluate(truth, p);
  CHECK(r.images == 4);
  CHECK(r.setting("easy").faces == 3);
  CHECK(r.setting("easy").curve.back().detections == 3);
  CHECK(r.setting("easy").curve.back().recalled == 3);
  CHECK(r.setting("easy").ap == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(r.setting("medium").faces == 3 + 300 + 1);
  CHECK(r.setting("medium").curve.back().detections == 304);
  CHECK(r.setting("hard").faces == 3 + 300 + 2);
  CHECK(r.setting("hard").curve.back().recalled == 305);
}

TEST_CASE("wider_mat: malformed .mat files are errors naming the file and the variable") {
  test::TempDir dir("isrn_wider_mat_bad");
  const std::vector<FakeEvent> events = fake_events();
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("absent.mat")), doctest::Contains("absent.mat: no such file"), Error);
  {
    std::ofstream(dir.file("text.mat")) << "not a MATLAB file at all, but long enough to have a header.....";
    CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("text.mat")),
                         doctest::Contains("text.mat: cannot open as a MATLAB file"), Error);
  }
  write_fake_mat(dir.file("no_boxes.mat"), events, 0, 4, "face_bbx_list");
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("no_boxes.mat")),
                       doctest::Contains("no_boxes.mat: no variable 'face_bbx_list'"), Error);
  write_fake_mat(dir.file("three_columns.mat"), events, 0, 3);
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("three_columns.mat")),
                       doctest::Contains("face_bbx_list{1}{1} is 3x3, expected N x 4"), Error);

  std::vector<FakeEvent> bad = events;
  bad[0].images[0].keep[0] = keep_of({0, 1}, MAT_C_DOUBLE, MAT_T_UINT8);
  write_fake_mat(dir.file("zero_index.mat"), bad, 0);
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("zero_index.mat")),
                       doctest::Contains("gt_list{1}{1} entry 1 is 0, not a face index in 1..3"), Error);
  bad = events;
  bad[1].images[1].keep[2] = keep_of({1, 2.5}, MAT_C_DOUBLE, MAT_T_DOUBLE);
  write_fake_mat(dir.file("fraction.mat"), bad, 2);
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("fraction.mat")),
                       doctest::Contains("gt_list{2}{2} entry 2 is 2.5"), Error);
  bad = events;
  bad[1].images[1].keep[2] = keep_of({3}, MAT_C_DOUBLE, MAT_T_UINT8);
  write_fake_mat(dir.file("beyond.mat"), bad, 2);
  CHECK_THROWS_WITH_AS(read_wider_mat(dir.file("beyond.mat")), doctest::Contains("not a face index in 1..2"), Error);

  // A setting file whose images differ from wider_face_val.mat, and one without keep lists.
  fs::create_directories(dir.file("mismatch"));
  write_fake_ground_truth(dir.file("mismatch"), events);
  bad = events;
  bad[1].images[1].name = "b_3";
  write_fake_mat(dir.file("mismatch/wider_medium_val.mat"), bad, 1);
  CHECK_THROWS_WITH_AS(read_wider_ground_truth(dir.file("mismatch")),
                       doctest::Contains("wider_medium_val.mat: its events or images differ"), Error);
  write_fake_mat(dir.file("mismatch/wider_medium_val.mat"), events, -1);
  CHECK_THROWS_WITH_AS(read_wider_ground_truth(dir.file("mismatch")),
                       doctest::Contains("wider_medium_val.mat: no gt_list"), Error);
  bad = events;
  bad[0].images[0].boxes[1][2] = 21;
  write_fake_mat(dir.file("mismatch/wider_medium_val.mat"), bad, 1);
  CHECK_THROWS_WITH_AS(read_wider_ground_truth(dir.file("mismatch")),
                       doctest::Contains("the boxes of 0--A/a_1 differ"), Error);
  CHECK_THROWS_WITH_AS(read_wider_ground_truth(dir.file("nowhere")), doctest::Contains("nowhere: not a folder"),
                       Error);
}

TEST_CASE("wider_mat: the official ground truth holds what WIDER_EVAL.md measured") {
  SKIP_WITHOUT_WIDER_DATA();
  const GroundTruth& truth = official_truth();
  // A.1/A.3: 61 events, 3,226 images, 39,708 boxes, at most 709 in one image, 11 with w <= 0 or h <= 0.
  std::set<std::string> events;
  int64_t boxes = 0, degenerate = 0;
  size_t most = 0;
  std::array<int64_t, 3> kept{}, no_face{}, uint16_lists{};
  for (const GroundTruthImage& im : truth.images) {
    events.insert(event_of(im.id));
    boxes += static_cast<int64_t>(im.faces.size());
    most = std::max(most, im.faces.size());
    for (const FaceBox& f : im.faces) degenerate += (f.w <= 0 || f.h <= 0);
    for (int s = 0; s < 3; ++s) {
      kept[s] += static_cast<int64_t>(im.keep[s].size());
      no_face[s] += im.keep[s].empty();
      // A list holding an index above 255 (1-based) is stored as uint16 in the .mat.
      uint16_lists[s] += !im.keep[s].empty() && *std::max_element(im.keep[s].begin(), im.keep[s].end()) >= 255;
    }
    // Nested settings: easy within medium within hard.
    const std::set<int64_t> easy(im.keep[0].begin(), im.keep[0].end()), medium(im.keep[1].begin(), im.keep[1].end()),
        hard(im.keep[2].begin(), im.keep[2].end());
    CHECK(std::includes(medium.begin(), medium.end(), easy.begin(), easy.end()));
    CHECK(std::includes(hard.begin(), hard.end(), medium.begin(), medium.end()));
  }
  CHECK(events.size() == 61);
  CHECK(truth.images.size() == 3226);
  CHECK(boxes == 39708);
  CHECK(most == 709);
  CHECK(degenerate == 11);
  // A.3: kept faces 7,211 / 13,319 / 31,958; images without a kept face 622 / 207 / 7; uint16 lists 21 in hard and
  // 3 in medium (an index above 255, not more than 255 entries, decides the storage width).
  CHECK(kept == std::array<int64_t, 3>{7211, 13319, 31958});
  CHECK(no_face == std::array<int64_t, 3>{622, 207, 7});
  CHECK(uint16_lists == std::array<int64_t, 3>{0, 3, 21});
  CHECK(truth.images.front().id == "0--Parade/0_Parade_marchingband_1_465");
}

TEST_CASE("wider_mat: the .mat boxes of the sample agree with its text annotations") {
  SKIP_WITHOUT_WIDER_DATA();
  const std::string txt = kDataDir + "/wider_face_split/wider_face_val_bbx_gt.txt";
  if (!fs::exists(txt)) {
    MESSAGE("skipped: no " << txt);
    return;
  }
  std::map<std::string, const GroundTruthImage*> by_id;
  for (const GroundTruthImage& im : official_truth().images) by_id[im.id] = &im;
  // An independent reader of the text format (A.2): name, count, count lines of 10 integers; a zero count is
  // followed by one dummy line.
  std::ifstream in(txt);
  std::string path;
  int64_t images = 0, faces = 0;
  while (std::getline(in, path)) {
    if (path.empty()) continue;
    int64_t count = 0;
    std::string line;
    REQUIRE(std::getline(in, line));
    count = std::stoll(line);
    const std::string id = path.substr(0, path.size() - 4);  // drop ".jpg"
    CAPTURE(id);
    REQUIRE(by_id.count(id));
    const GroundTruthImage& im = *by_id.at(id);
    REQUIRE(im.faces.size() == static_cast<size_t>(count));
    for (int64_t k = 0; k < std::max<int64_t>(count, 1); ++k) {
      REQUIRE(std::getline(in, line));
      if (count == 0) break;
      std::istringstream fields(line);
      double x, y, w, h;
      fields >> x >> y >> w >> h;
      CHECK(im.faces[k].x == x);
      CHECK(im.faces[k].y == y);
      CHECK(im.faces[k].w == w);
      CHECK(im.faces[k].h == h);
    }
    ++images;
    faces += count;
  }
  // The sample's README: 209 validation images, 4,609 faces.
  CHECK(images == 209);
  CHECK(faces == 4609);
}

TEST_CASE("wider_mat: the committed prediction set scores as the independent Python reference computed") {
  SKIP_WITHOUT_WIDER_DATA();
  const std::string case_dir = std::string(ISRN_GOLDEN_DIR) + "/wider_eval_case";
  std::ifstream json_in(std::string(ISRN_GOLDEN_DIR) + "/wider_eval_case.json");
  REQUIRE(json_in.good());
  const nlohmann::json expected = nlohmann::json::parse(json_in);
  const PredictionFolder folder = read_prediction_folder(case_dir);
  CHECK(folder.warnings.empty());
  CHECK(folder.predictions.count(expected["image_with_empty_file"].get<std::string>()));
  for (const auto& missing : expected["images_without_file"]) CHECK_FALSE(folder.predictions.count(missing));

  struct Run {
    std::string key;
    Arithmetic arithmetic;
    bool all_images;
    bool events_subset;
  };
  const Run runs[] = {{"matlab", Arithmetic::matlab, false, false},
                      {"float64", Arithmetic::float64, false, false},
                      {"matlab_all_images", Arithmetic::matlab, true, false},
                      {"matlab_events_subset", Arithmetic::matlab, false, true}};
  std::map<std::string, EvalResult> results;
  for (const Run& run : runs) {
    CAPTURE(run.key);
    GroundTruth truth = official_truth();
    if (run.events_subset) truth = restrict_to_events(truth, expected["events_subset"].get<std::vector<std::string>>());
    EvalOptions options;
    options.arithmetic = run.arithmetic;
    options.all_images = run.all_images;
    const EvalResult r = evaluate(truth, folder.predictions, options);
    for (const SettingResult& s : r.settings) {
      CAPTURE(s.name);
      const nlohmann::json& want = expected[run.key][s.name];
      // The issue asks for 1e-4; both sides compute the same counts and divisions in double precision and differ
      // only in the summation order of the ~1,000 VOC steps, so 1e-9 holds with a wide margin.
      CHECK(std::abs(s.ap - want["ap"].get<double>()) < 1e-9);
      CHECK(s.images == want["images"].get<int64_t>());
      CHECK(s.faces == want["faces"].get<int64_t>());
      // Exact counts at the last threshold: a single differently matched detection would show here.
      CHECK(s.curve.back().detections == want["proposals_at_zero"].get<int64_t>());
      CHECK(s.curve.back().recalled == want["recalled_at_zero"].get<int64_t>());
    }
    MESSAGE(run.key << ": " << summary_line(r));
    results.emplace(run.key, r);
  }
  // The set is built so that MATLAB's rounded IoU matters: the default arithmetic is really the MATLAB one.
  CHECK(std::abs(results.at("matlab").setting("easy").ap - results.at("float64").setting("easy").ap) > 1e-4);
}

TEST_CASE("wider_mat: ground truth as predictions with random scores gives about 0.9999 on WIDER val") {
  SKIP_WITHOUT_WIDER_DATA();
  // WIDER_EVAL.md A.6: every face of the 3,226 validation images as a detection, random scores. Not 1: val holds
  // an exactly duplicated face, whose two detections both match its first copy (argmax takes the first maximum),
  // so one is a false positive and the other copy is never recalled. In MATLAB's arithmetic the rounded IoU also
  // sends a detection to the first face it overlaps at >= 0.5, which costs more where faces overlap.
  const GroundTruth& truth = official_truth();
  Predictions p;
  std::mt19937_64 rng(2016);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t duplicates = 0;
  for (const GroundTruthImage& im : truth.images) {
    for (size_t i = 0; i < im.faces.size(); ++i) {
      const FaceBox& f = im.faces[i];
      p[im.id].push_back({f.x, f.y, f.w, f.h, u(rng)});
      for (size_t j = 0; j < i; ++j) {
        const FaceBox& g = im.faces[j];
        duplicates += f.x == g.x && f.y == g.y && f.w == g.w && f.h == g.h;
      }
    }
  }
  CHECK(duplicates == 1);
  EvalOptions options;
  options.arithmetic = Arithmetic::float64;
  const EvalResult f = evaluate(truth, p, options);
  options.arithmetic = Arithmetic::matlab;
  const EvalResult m = evaluate(truth, p, options);
  MESSAGE("float64: " << summary_line(f) << "  matlab: " << summary_line(m));
  for (const EvalResult* r : {&f, &m})
    for (const SettingResult& s : r->settings) {
      CAPTURE(s.name);
      CHECK(s.ap < 1.0);
      CHECK(s.ap > 0.999);
    }
}

#endif  // ISRN_HAVE_WIDER_MAT
