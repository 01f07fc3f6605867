#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "isrn/data/coco.hpp"
#include "test_util.hpp"

using namespace isrn;
using namespace isrn::data;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// Three categories defined out of id order, three images (one without annotations), and annotations
// covering a crowd box, a zero-width box, a negative-height box and a boolean iscrowd.
json good_document() {
  return json::parse(R"({
    "info": {"description": "hand-made"},
    "categories": [
      {"id": 7, "name": "face", "supercategory": "person"},
      {"id": 3, "name": "cat"},
      {"id": 5, "name": "dog", "supercategory": "animal"}
    ],
    "images": [
      {"id": 10, "file_name": "a/one.jpg", "width": 20, "height": 10},
      {"id": 11, "file_name": "two.png", "width": 8, "height": 6},
      {"id": 12, "file_name": "three.jpg", "width": 5, "height": 5}
    ],
    "annotations": [
      {"id": 100, "image_id": 10, "category_id": 7, "bbox": [1.5, 2, 3, 4.25], "iscrowd": 0, "area": 12.75},
      {"id": 101, "image_id": 10, "category_id": 3, "bbox": [0, 0, 5, 5]},
      {"id": 102, "image_id": 11, "category_id": 7, "bbox": [1, 1, 2, 2], "iscrowd": 1},
      {"id": 103, "image_id": 11, "category_id": 5, "bbox": [2, 2, 0, 3], "iscrowd": 0},
      {"id": 104, "image_id": 11, "category_id": 5, "bbox": [2, 2, 3, -1]},
      {"id": 105, "image_id": 10, "category_id": 5, "bbox": [4, 4, 2, 1], "iscrowd": false},
      {"id": 106, "image_id": 11, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": true}
    ]
  })");
}

}  // namespace

TEST_CASE("coco: images, kept annotations, labels in category-id order, crowd and zero-size counts") {
  const CocoAnnotations a = parse_coco(good_document().dump(), "good.json");
  REQUIRE(a.categories.size() == 3);
  CHECK(a.categories[0].id == 3);  // sorted by id: labels 0, 1, 2 are ids 3, 5, 7
  CHECK(a.categories[0].name == "cat");
  CHECK(a.categories[0].supercategory.empty());
  CHECK(a.categories[1].id == 5);
  CHECK(a.categories[2].name == "face");
  CHECK(a.categories[2].supercategory == "person");

  REQUIRE(a.images.size() == 3);
  const CocoImage& one = a.images[0];
  CHECK(one.id == 10);
  CHECK(one.file_name == "a/one.jpg");
  CHECK(one.stem() == "a/one");
  CHECK(one.width == 20);
  CHECK(one.height == 10);
  REQUIRE(one.objects.size() == 3);
  CHECK(one.objects[0] == CocoObject{100, 7, 2, Box{1.5f, 2.0f, 4.5f, 6.25f}});
  CHECK(one.objects[1] == CocoObject{101, 3, 0, Box{0, 0, 5, 5}});
  CHECK(one.objects[2] == CocoObject{105, 5, 1, Box{4, 4, 6, 5}});
  CHECK(one.boxes() == std::vector<Box>{{1.5f, 2.0f, 4.5f, 6.25f}, {0, 0, 5, 5}, {4, 4, 6, 5}});
  CHECK(a.images[1].objects.empty());  // crowd, zero-width, negative-height, crowd again
  CHECK(a.images[1].stem() == "two");
  CHECK(a.images[2].objects.empty());

  CHECK(a.stats.images == 3);
  CHECK(a.stats.annotations == 7);
  CHECK(a.stats.crowd_dropped == 2);
  CHECK(a.stats.zero_size_dropped == 2);
  CHECK(a.stats.category_dropped == 0);
  CHECK(a.stats.images_without_boxes == 2);
  CHECK(a.stats.boxes() == 3);
}

TEST_CASE("coco: the category filter by name, by id, both, and skipping images without boxes") {
  const std::string text = good_document().dump();
  CocoFilter faces;
  faces.category_names = {"face"};
  const CocoAnnotations f = parse_coco(text, "good.json", faces);
  REQUIRE(f.categories.size() == 1);
  CHECK(f.categories[0].id == 7);
  REQUIRE(f.images.size() == 3);
  REQUIRE(f.images[0].objects.size() == 1);
  CHECK(f.images[0].objects[0].id == 100);
  CHECK(f.images[0].objects[0].label == 0);
  // Category drops are counted first: the crowd face (102) still counts as crowd, the crowd cat (106) as category.
  CHECK(f.stats.category_dropped == 5);
  CHECK(f.stats.crowd_dropped == 1);
  CHECK(f.stats.zero_size_dropped == 0);
  CHECK(f.stats.boxes() == 1);

  CocoFilter by_id;
  by_id.category_ids = {5};
  by_id.category_names = {"cat"};  // the union of both lists
  const CocoAnnotations d = parse_coco(text, "good.json", by_id);
  REQUIRE(d.categories.size() == 2);
  CHECK(d.categories[0].name == "cat");
  CHECK(d.categories[1].name == "dog");
  REQUIRE(d.images[0].objects.size() == 2);
  CHECK(d.images[0].objects[0].id == 101);
  CHECK(d.images[0].objects[0].label == 0);
  CHECK(d.images[0].objects[1].id == 105);
  CHECK(d.images[0].objects[1].label == 1);
  CHECK(d.stats.category_dropped == 2);

  CocoFilter skip = faces;
  skip.skip_images_without_boxes = true;
  const CocoAnnotations s = parse_coco(text, "good.json", skip);
  REQUIRE(s.images.size() == 1);
  CHECK(s.images[0].id == 10);
  CHECK(s.stats.images == 1);
  CHECK(s.stats.images_without_boxes == 2);

  CocoFilter typo;
  typo.category_names = {"Face"};
  CHECK_THROWS_WITH_AS(parse_coco(text, "good.json", typo),
                       doctest::Contains("[coco] good.json: the category filter names 'Face'"), Error);
  CocoFilter bad_id;
  bad_id.category_ids = {4};
  CHECK_THROWS_WITH_AS(parse_coco(text, "good.json", bad_id), doctest::Contains("lists id 4"), Error);
}

TEST_CASE("coco: malformed json and missing or mistyped fields name the file and the json path") {
  test::TempDir dir("isrn_coco_bad");
  const std::string path = dir.file("bad.json");
  struct Case {
    std::string name;
    std::function<void(json&)> edit;
    std::string problem;
  };
  const std::vector<Case> cases{
      {"no images", [](json& j) { j.erase("images"); }, "(top level): missing field 'images'"},
      {"no annotations", [](json& j) { j.erase("annotations"); }, "(top level): missing field 'annotations'"},
      {"no categories", [](json& j) { j.erase("categories"); }, "(top level): missing field 'categories'"},
      {"images not an array", [](json& j) { j["images"] = json::object(); }, "images: expected an array, found an object"},
      {"image not an object", [](json& j) { j["images"][1] = 3; }, "images[1]: expected an object, found an integer"},
      {"image without id", [](json& j) { j["images"][2].erase("id"); }, "images[2]: missing field 'id'"},
      {"image id a string", [](json& j) { j["images"][0]["id"] = "10"; }, "images[0].id: expected an integer, found a string"},
      {"image without file_name", [](json& j) { j["images"][1].erase("file_name"); }, "images[1]: missing field 'file_name'"},
      {"file_name above the folder", [](json& j) { j["images"][1]["file_name"] = "a/../../x.jpg"; },
       "images[1].file_name: 'a/../../x.jpg' leaves the image folder"},
      {"file_name absolute", [](json& j) { j["images"][0]["file_name"] = "/etc/x.jpg"; },
       "images[0].file_name: '/etc/x.jpg' leaves the image folder"},
      {"image without width", [](json& j) { j["images"][1].erase("width"); }, "images[1]: missing field 'width'"},
      {"image height fractional", [](json& j) { j["images"][0]["height"] = 10.5; },
       "images[0].height: expected an integer, found a floating-point number"},
      {"image of zero size", [](json& j) { j["images"][2]["width"] = 0; }, "images[2]: image size 0x5 must be positive"},
      {"duplicate image id", [](json& j) { j["images"][2]["id"] = 10; }, "images[2].id: 10 is also the id of images[0]"},
      {"category without name", [](json& j) { j["categories"][1].erase("name"); }, "categories[1]: missing field 'name'"},
      {"duplicate category id", [](json& j) { j["categories"][2]["id"] = 7; }, "categories[2].id: 7 is also the id of categories[0]"},
      {"annotation without bbox", [](json& j) { j["annotations"][3].erase("bbox"); }, "annotations[3]: missing field 'bbox'"},
      {"annotation without id", [](json& j) { j["annotations"][0].erase("id"); }, "annotations[0]: missing field 'id'"},
      {"annotation without image_id", [](json& j) { j["annotations"][4].erase("image_id"); }, "annotations[4]: missing field 'image_id'"},
      {"bbox of three numbers", [](json& j) { j["annotations"][3]["bbox"] = {1, 2, 3}; },
       "annotations[3].bbox: expected 4 numbers [x, y, w, h], found 3"},
      {"bbox with a string", [](json& j) { j["annotations"][5]["bbox"][2] = "3"; },
       "annotations[5].bbox[2]: expected a number, found a string"},
      {"bbox not an array", [](json& j) { j["annotations"][1]["bbox"] = 4; }, "annotations[1].bbox: expected an array, found an integer"},
      {"iscrowd 2", [](json& j) { j["annotations"][2]["iscrowd"] = 2; }, "annotations[2].iscrowd: expected 0 or 1, found 2"},
      {"unknown image", [](json& j) { j["annotations"][6]["image_id"] = 99; }, "annotations[6].image_id: no image has id 99"},
      {"unknown category", [](json& j) { j["annotations"][0]["category_id"] = 4; }, "annotations[0].category_id: no category has id 4"},
      {"top level an array", [](json& j) { j = json::array(); }, "(top level): expected an object, found an array"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    json doc = good_document();
    c.edit(doc);
    write_text(path, doc.dump(2));
    try {
      read_coco(path);
      FAIL_CHECK("no error for a malformed file: ", c.name);
    } catch (const Error& e) {
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(message.find("[coco] " + path + ": " + c.problem) == 0);
    }
  }
  // Text that is not JSON at all: the parser's line is reported.
  write_text(path, "{\n  \"images\": [\n    {\"id\": 1,,}\n  ]\n}\n");
  const std::string invalid = "[coco] " + path + ": invalid JSON: ";
  CHECK_THROWS_WITH_AS(read_coco(path), doctest::Contains(invalid.c_str()), Error);
  CHECK_THROWS_WITH_AS(read_coco(path), doctest::Contains("line 3"), Error);
  write_text(path, "");
  CHECK_THROWS_WITH_AS(read_coco(path), doctest::Contains("invalid JSON"), Error);
  CHECK_THROWS_WITH_AS(read_coco(dir.file("absent.json")), doctest::Contains("absent.json"), Error);
}

TEST_CASE("coco: CocoDataset decodes the images and hands out the kept boxes") {
  test::TempDir dir("isrn_coco_ds");
  const std::string images = (dir.path / "images").string();
  fs::create_directories(images + "/a");
  write_image(images + "/a/one.jpg", Image(10, 20, 50));
  write_image(images + "/two.png", Image(6, 8, 200));
  write_image(images + "/three.jpg", Image(5, 5, 0));
  const std::string json_path = dir.file("instances.json");
  write_text(json_path, good_document().dump());

  CocoDataset ds(images, json_path);
  REQUIRE(ds.size() == 3);
  CHECK(ds.categories().size() == 3);
  CHECK(ds.stats().boxes() == 3);
  const Sample s0 = ds.get(0);
  CHECK(s0.id == "a/one");
  CHECK(s0.image.height == 10);
  CHECK(s0.image.width == 20);
  CHECK(s0.boxes == ds.image(0).boxes());
  CHECK(s0.boxes.size() == 3);
  const Sample s1 = ds.get(1);
  CHECK(s1.id == "two");
  CHECK(s1.image.height == 6);
  CHECK(s1.image.pixels[0] == 200);  // PNG is lossless
  CHECK(s1.boxes.empty());
  CHECK(ds.image_path(2) == (fs::path(images) / "three.jpg").string());
  CHECK_THROWS_WITH_AS(ds.get(3), doctest::Contains("[CocoDataset] index 3 out of range for 3 images"), Error);

  CocoFilter dogs;
  dogs.category_names = {"dog"};
  dogs.skip_images_without_boxes = true;
  CocoDataset only_dogs(images, json_path, dogs);
  REQUIRE(only_dogs.size() == 1);
  CHECK(only_dogs.get(0).boxes == std::vector<Box>{{4, 4, 6, 5}});

  fs::remove(images + "/two.png");
  CHECK_THROWS_WITH_AS(ds.get(1), doctest::Contains("two.png"), Error);
  CHECK_THROWS_WITH_AS(CocoDataset(dir.file("nowhere"), json_path), doctest::Contains("no such folder"), Error);
}
