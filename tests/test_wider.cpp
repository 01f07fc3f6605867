#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "isrn/data/wider.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::data;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// Three records: two faces (one flagged invalid), a zero-face record with its dummy line, and four faces
// of which one has zero width, one negative height, one is invalid AND empty (counted as invalid only).
const char* const kGood =
    "0--Parade/0_Parade_marchingband_1_5.jpg\n"
    "2\n"
    "78 221 7 8 2 0 0 0 0 0 \n"
    "10 20 30 40 1 1 1 1 2 1 \n"
    "0--Parade/0_Parade_Parade_0_452.jpg\n"
    "0\n"
    "0 0 0 0 0 0 0 0 0 0 \n"
    "12--Group/12_Group_Group_12_1.jpg\n"
    "4\n"
    "-3 5 12 9 0 0 0 0 1 0\n"
    "4 4 0 9 0 0 0 0 0 0\n"
    "4 4 9 -2 0 0 0 0 0 0\n"
    "1 1 0 0 0 0 0 1 0 0\n";

std::string with_crlf(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

}  // namespace

TEST_CASE("wider: records, attributes, the zero-face dummy line, invalid and zero-size faces") {
  const WiderAnnotations a = parse_wider_annotations(kGood, "good.txt");
  REQUIRE(a.records.size() == 3);

  const WiderRecord& r0 = a.records[0];
  CHECK(r0.path == "0--Parade/0_Parade_marchingband_1_5.jpg");
  CHECK(r0.event() == "0--Parade");
  CHECK(r0.id() == "0--Parade/0_Parade_marchingband_1_5");
  CHECK(r0.line == 1);
  REQUIRE(r0.faces.size() == 2);
  CHECK(r0.faces[0] == WiderFace{78, 221, 7, 8, 2, 0, 0, 0, 0, 0});
  // Every attribute column lands in its own field: the second face sets each one to a distinct code.
  const WiderFace& f = r0.faces[1];
  CHECK(f.x == 10);
  CHECK(f.y == 20);
  CHECK(f.w == 30);
  CHECK(f.h == 40);
  CHECK(f.blur == 1);
  CHECK(f.expression == 1);
  CHECK(f.illumination == 1);
  CHECK(f.invalid == 1);
  CHECK(f.occlusion == 2);
  CHECK(f.pose == 1);
  REQUIRE(r0.boxes.size() == 1);  // the invalid face is no training box
  CHECK(r0.boxes[0] == Box{78, 221, 85, 229});

  const WiderRecord& r1 = a.records[1];
  CHECK(r1.path == "0--Parade/0_Parade_Parade_0_452.jpg");
  CHECK(r1.line == 5);
  CHECK(r1.faces.empty());  // the dummy line is not a face
  CHECK(r1.boxes.empty());

  const WiderRecord& r2 = a.records[2];
  CHECK(r2.line == 8);
  CHECK(r2.event() == "12--Group");
  REQUIRE(r2.faces.size() == 4);
  REQUIRE(r2.boxes.size() == 1);
  CHECK(r2.boxes[0] == Box{-3, 5, 9, 14});  // negative coordinates occur in the official files and are kept
  CHECK(r2.faces[3].invalid == 1);

  CHECK(a.stats.images == 3);
  CHECK(a.stats.faces == 6);
  CHECK(a.stats.invalid_dropped == 2);
  CHECK(a.stats.zero_size_dropped == 2);
  CHECK(a.stats.zero_face_images == 1);
  CHECK(a.stats.boxes() == 2);
  CHECK(wider_stats(a.records) == a.stats);
}

TEST_CASE("wider: CRLF line ends, tabs, trailing blanks and blank lines at the end are accepted") {
  const WiderAnnotations plain = parse_wider_annotations(kGood);
  std::string variant = with_crlf(kGood) + "\r\n\n  \n";
  // A tab between columns and a plus sign are still integers in ten columns.
  const std::string from = "78 221 7 8 2 0 0 0 0 0 ", to = "78\t221 +7 8 2 0 0 0 0 0\t";
  variant.replace(variant.find(from), from.size(), to);
  const WiderAnnotations other = parse_wider_annotations(variant);
  REQUIRE(other.records.size() == plain.records.size());
  for (size_t i = 0; i < plain.records.size(); ++i) {
    CHECK(other.records[i].path == plain.records[i].path);
    CHECK(other.records[i].faces == plain.records[i].faces);
    CHECK(other.records[i].boxes == plain.records[i].boxes);
  }
  CHECK(other.stats == plain.stats);
  CHECK(parse_wider_annotations("").records.empty());
}

TEST_CASE("wider: every malformed file is an Error naming the file and the 1-based line") {
  test::TempDir dir("isrn_wider_bad");
  const std::string a = "a--A/a_1.jpg\n";
  const std::string b = "b--B/b_1.jpg\n";
  const std::string face = "1 2 3 4 0 0 0 0 0 0\n";
  struct Case {
    std::string name, text;
    int line;
    std::string problem;
  };
  const std::vector<Case> cases{
      {"non-numeric column", a + "1\n1 2 x 4 0 0 0 0 0 0\n", 3, "column 3 (w) of face 1 of 1 (count on line 2) is not an integer"},
      {"fractional column", a + "1\n1 2 3.5 4 0 0 0 0 0 0\n", 3, "column 3 (w) of face 1 of 1"},
      {"nine columns", a + "1\n1 2 3 4 0 0 0 0 0\n", 3, "with ten columns"},
      {"eleven columns", a + "2\n" + face + "1 2 3 4 0 0 0 0 0 0 0\n", 4, "found 11"},
      {"attribute out of range", a + "1\n1 2 3 4 3 0 0 0 0 0\n", 3, "column 5 (blur) of face 1 of 1 (count on line 2) is 3, outside 0..2"},
      {"invalid flag out of range", a + "1\n1 2 3 4 0 0 0 2 0 0\n", 3, "column 8 (invalid)"},
      {"negative attribute", a + "1\n1 2 3 4 0 0 0 0 -1 0\n", 3, "column 9 (occlusion) of face 1 of 1 (count on line 2) is -1"},
      {"coordinate beyond 32 bits", a + "1\n1 2 3 4294967296 0 0 0 0 0 0\n", 3, "beyond the 32-bit range"},
      {"negative count", a + "-1\n", 2, "negative face count -1 for 'a--A/a_1.jpg'"},
      {"non-numeric count", a + "two\n", 2, "expected the face count of 'a--A/a_1.jpg', found 'two'"},
      {"count with two numbers", a + "1 2\n" + face, 2, "expected the face count"},
      {"count too large", a + "3\n" + face + face + b + "0\n0 0 0 0 0 0 0 0 0 0\n", 5,
       "expected face 3 of 3 (count on line 2) (ten integers), found 'b--B/b_1.jpg'; does the face count match"},
      {"count too small", a + "1\n" + face + face + b + "1\n" + face, 4,
       "expected an image path, found '1 2 3 4 0 0 0 0 0 0'; the previous record has more face lines than its count says"},
      {"file ends mid-record", b + "1\n" + face + a + "4\n" + face + face, 5,
       "the file ends inside the record of 'a--A/a_1.jpg': the count says 4 faces, 2 face lines follow"},
      {"file ends after the path", b + "1\n" + face + a, 4, "the face count is missing"},
      {"zero count without dummy line at the end", b + "1\n" + face + a + "0\n", 5, "the dummy line of ten zeros is missing"},
      {"zero count followed by the next path", a + "0\n" + b + "1\n" + face, 3,
       "expected the dummy line that follows the zero face count on line 2 (ten integers), found 'b--B/b_1.jpg'"},
      {"zero count followed by a face", a + "0\n" + face, 3, "the face count on line 2 is 0, but the line that follows holds a face"},
      {"short dummy line", a + "0\n0 0 0 0\n", 3, "the dummy line that follows the zero face count on line 2 with ten columns"},
      {"blank line between records", a + "1\n" + face + "\n" + b + "1\n" + face, 4, "blank line where an image path was expected"},
      {"path without an event folder", std::string("a_1.jpg\n1\n") + face, 1, "expected an image path 'event/name.jpg'"},
      {"path leaving the images folder", b + "1\n" + face + "../x.jpg\n1\n" + face, 4,
       "expected an image path 'event/name.jpg' inside the images folder, found '../x.jpg'"},
      {"path two folders deep", std::string("a--A/sub/a_1.jpg\n1\n") + face, 1,
       "inside the images folder, found 'a--A/sub/a_1.jpg'"},
      {"path naming a folder", std::string("a--A/..\n1\n") + face, 1, "inside the images folder, found 'a--A/..'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir.file("bad.txt");
    write_text(path, c.text);
    try {
      read_wider_annotations(path);
      FAIL_CHECK("no error for a malformed file: ", c.name);
    } catch (const Error& e) {
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(message.find("[wider] " + path + ":" + std::to_string(c.line) + ": ") == 0);
      CHECK(message.find(c.problem) != std::string::npos);
    }
  }
  CHECK_THROWS_WITH_AS(read_wider_annotations(dir.file("absent.txt")), doctest::Contains("absent.txt"), Error);
}

namespace {

// The counts of an annotation file, taken with a token stream rather than the library's line parser: a
// record is a path, a count N, then max(N, 1) lines of ten numbers.
struct IndependentCounts {
  int64_t images = 0, faces = 0, invalid = 0, zero_size = 0, zero_face = 0;
  std::map<std::string, int64_t> images_per_event;
  std::string first_path;
  std::vector<int64_t> first_face;
};

IndependentCounts count_independently(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  IndependentCounts c;
  std::string name;
  while (in >> name) {
    int64_t n = -1;
    if (!(in >> n)) FAIL("no count after ", name);
    ++c.images;
    ++c.images_per_event[name.substr(0, name.find('/'))];
    if (c.first_path.empty()) c.first_path = name;
    if (n == 0) ++c.zero_face;
    for (int64_t k = 0; k < std::max<int64_t>(n, 1); ++k) {
      std::vector<int64_t> v(10);
      for (auto& x : v)
        if (!(in >> x)) FAIL("short face line in the record of ", name);
      if (n == 0) continue;
      if (c.first_face.empty()) c.first_face = v;
      ++c.faces;
      if (v[7] == 1) {
        ++c.invalid;
      } else if (v[2] <= 0 || v[3] <= 0) {
        ++c.zero_size;
      }
    }
  }
  return c;
}

bool sample_present(const std::string& root) {
  if (fs::is_directory(root)) return true;
  MESSAGE("skipped: no WIDER FACE sample at " << root << " (set ISRN_WIDERFACE_DIR when configuring)");
  return false;
}

}  // namespace

TEST_CASE("wider: the real sample's annotation files, counted independently") {
  const std::string root = ISRN_WIDERFACE_DIR;
  if (!sample_present(root)) return;
  // Image and face counts stated in the sample's README.md.
  const std::map<std::string, std::pair<int64_t, int64_t>> readme{{"train", {1239, 6590}}, {"val", {209, 4609}}};
  for (const auto& [split, expected] : readme) {
    CAPTURE(split);
    const std::string path = root + "/wider_face_split/wider_face_" + split + "_bbx_gt.txt";
    const WiderAnnotations a = read_wider_annotations(path);
    const IndependentCounts c = count_independently(path);
    CHECK(a.stats.images == expected.first);
    CHECK(a.stats.faces == expected.second);
    CHECK(a.stats.images == c.images);
    CHECK(a.stats.faces == c.faces);
    CHECK(a.stats.invalid_dropped == c.invalid);
    CHECK(a.stats.zero_size_dropped == c.zero_size);
    CHECK(a.stats.zero_face_images == c.zero_face);
    REQUIRE(!a.records.empty());
    CHECK(a.records[0].path == c.first_path);
    REQUIRE(!a.records[0].faces.empty());
    const WiderFace& f = a.records[0].faces[0];
    CHECK(std::vector<int64_t>{f.x, f.y, f.w, f.h, f.blur, f.expression, f.illumination, f.invalid, f.occlusion,
                               f.pose} == c.first_face);
    int64_t boxes = 0;
    for (const WiderRecord& r : a.records) boxes += static_cast<int64_t>(r.boxes.size());
    CHECK(boxes == c.faces - c.invalid - c.zero_size);
  }
}

TEST_CASE("wider: WiderDataset over the real sample") {
  const std::string root = ISRN_WIDERFACE_DIR;
  if (!sample_present(root)) return;
  const std::string split_file = root + "/wider_face_split/wider_face_val_bbx_gt.txt";
  const IndependentCounts c = count_independently(split_file);
  // The sample's README says its annotation files list exactly the images it holds; count the files on disk.
  int64_t files_on_disk = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root + "/WIDER_val/images"))
    files_on_disk += entry.is_regular_file() && entry.path().extension() == ".jpg";

  WiderDataset all(root, "val");
  CHECK(static_cast<int64_t>(all.size()) == c.images);
  CHECK(all.missing_images() == c.images - files_on_disk);
  CHECK(all.file_stats().images == c.images);

  WiderOptions couples;
  couples.events = {"19--Couple"};
  WiderDataset one_event(root, "val", couples);
  REQUIRE(c.images_per_event.count("19--Couple") == 1);
  CHECK(static_cast<int64_t>(one_event.size()) == c.images_per_event.at("19--Couple"));
  CHECK(one_event.file_stats() == all.file_stats());
  REQUIRE(one_event.size() > 0);
  const Sample s = one_event.get(0);
  const WiderRecord& r = one_event.record(0);
  CHECK(s.id == r.id());
  CHECK(s.id.rfind("19--Couple/", 0) == 0);
  CHECK(s.boxes == r.boxes);
  CHECK(s.image.height > 0);
  CHECK(s.image.width > 0);
  // The official images are at most 1024 pixels wide, and every box of this event lies inside its image.
  CHECK(s.image.width <= 1024);
  for (const Box& b : s.boxes) {
    CHECK(b.x1 >= 0);
    CHECK(b.y1 >= 0);
    CHECK(b.x2 <= s.image.width);
    CHECK(b.y2 <= s.image.height);
  }
}

TEST_CASE("wider: WiderDataset over a hand-made folder: layout, missing images, events, errors") {
  test::TempDir dir("isrn_wider_root");
  const std::string root = dir.path.string();
  const std::string text =
      "1--A/1_a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n"
      "1--A/1_b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
      "2--B/2_a.jpg\n2\n5 6 7 8 0 0 0 0 0 0\n0 0 5 5 0 0 0 1 0 0\n"
      "2--B/2_missing.jpg\n1\n1 1 1 1 0 0 0 0 0 0\n";
  write_text(root + "/wider_face_split/wider_face_train_bbx_gt.txt", text);
  // Images of distinct sizes, so get() is seen to read the right file.
  const std::map<std::string, std::pair<int64_t, int64_t>> images{
      {"1--A/1_a.jpg", {10, 12}}, {"1--A/1_b.jpg", {7, 9}}, {"2--B/2_a.jpg", {16, 5}}};
  for (const auto& [name, hw] : images) {
    const std::string path = root + "/WIDER_train/images/" + name;
    fs::create_directories(fs::path(path).parent_path());
    write_image(path, Image(hw.first, hw.second, 90));
  }

  WiderDataset ds(root, "train");
  REQUIRE(ds.size() == 3);
  CHECK(ds.missing_images() == 1);
  CHECK(ds.file_stats().images == 4);
  CHECK(ds.stats().images == 3);
  CHECK(ds.stats().faces == 3);
  CHECK(ds.stats().invalid_dropped == 1);
  CHECK(ds.stats().zero_face_images == 1);
  CHECK(ds.annotation_path() == root + "/wider_face_split/wider_face_train_bbx_gt.txt");
  for (size_t i = 0; i < ds.size(); ++i) {
    const Sample s = ds.get(i);
    CAPTURE(s.id);
    const auto& hw = images.at(ds.record(i).path);
    CHECK(s.image.height == hw.first);
    CHECK(s.image.width == hw.second);
    CHECK(s.boxes == ds.record(i).boxes);
    CHECK(ds.image_path(i) == root + "/WIDER_train/images/" + ds.record(i).path);
  }
  CHECK(ds.get(0).id == "1--A/1_a");
  CHECK(ds.get(0).boxes == std::vector<Box>{{1, 2, 4, 6}});
  CHECK(ds.get(1).boxes.empty());
  CHECK(ds.get(2).boxes == std::vector<Box>{{5, 6, 12, 14}});
  CHECK_THROWS_WITH_AS(ds.get(3), doctest::Contains("[WiderDataset] index 3 out of range for 3 records"), Error);

  WiderOptions only_b;
  only_b.events = {"2--B"};
  WiderDataset b(root, "train", only_b);
  REQUIRE(b.size() == 1);
  CHECK(b.missing_images() == 1);
  CHECK(b.get(0).id == "2--B/2_a");

  WiderOptions keep_missing;
  keep_missing.skip_missing_images = false;
  WiderDataset kept(root, "train", keep_missing);
  REQUIRE(kept.size() == 4);
  CHECK(kept.missing_images() == 0);
  CHECK_THROWS_WITH_AS(kept.get(3), doctest::Contains("2_missing.jpg"), Error);

  WiderOptions typo;
  typo.events = {"2--b"};
  CHECK_THROWS_WITH_AS(WiderDataset(root, "train", typo), doctest::Contains("event '2--b' does not occur in"), Error);
  CHECK_THROWS_WITH_AS(WiderDataset(root, "test"), doctest::Contains("split must be \"train\" or \"val\""), Error);
  CHECK_THROWS_WITH_AS(WiderDataset(root, "val"), doctest::Contains("wider_face_val_bbx_gt.txt"), Error);
  CHECK_THROWS_WITH_AS(WiderDataset(root + "/nowhere", "train"), doctest::Contains("no such folder"), Error);

  // A corrupt annotation file stops construction with the file and line.
  write_text(root + "/wider_face_split/wider_face_val_bbx_gt.txt", "1--A/1_a.jpg\n1\n1 2 3\n");
  CHECK_THROWS_WITH_AS(WiderDataset(root, "val"), doctest::Contains("wider_face_val_bbx_gt.txt:3: "), Error);
}
