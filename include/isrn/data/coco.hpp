#pragma once
// MS-COCO detection annotations (instances_*.json): images, annotations with bbox [x, y, w, h] and
// categories, with a category filter, and a data set over an image folder and its json.
//
// Crowd annotations (iscrowd = 1) and boxes with w <= 0 or h <= 0 are no training boxes: they are
// dropped and counted, as are annotations of categories the filter leaves out.
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/data/dataset.hpp"
#include "isrn/data/sample.hpp"

namespace isrn::data {

struct CocoCategory {
  int64_t id = 0;
  std::string name;
  std::string supercategory;  // empty when the file has none
};

// A kept annotation.
struct CocoObject {
  int64_t id = 0;           // the annotation's id
  int64_t category_id = 0;  // as in the file
  int64_t label = 0;        // index of the category among the kept categories sorted by id: 0 .. K-1
  Box box;                  // x2 = x + w, y2 = y + h
  bool operator==(const CocoObject&) const = default;
};

struct CocoImage {
  int64_t id = 0;
  std::string file_name;  // relative to the image folder
  int64_t width = 0, height = 0;
  std::vector<CocoObject> objects;  // kept annotations, in file order

  std::vector<Box> boxes() const;
  std::string stem() const;  // file_name without its extension: the Sample id
};

struct CocoStats {
  int64_t images = 0;              // images held (after skip_images_without_boxes)
  int64_t annotations = 0;         // every annotation in the file
  int64_t crowd_dropped = 0;
  int64_t category_dropped = 0;    // of a category the filter leaves out (counted before crowd and size)
  int64_t zero_size_dropped = 0;   // not crowd, but w <= 0 or h <= 0
  int64_t images_without_boxes = 0;  // in the file, with no kept annotation (held or skipped)
  int64_t boxes() const { return annotations - crowd_dropped - category_dropped - zero_size_dropped; }
  bool operator==(const CocoStats&) const = default;
};

struct CocoFilter {
  // Keep the categories named here or listed by id (both empty: every category). A name or id the file
  // does not define throws.
  std::vector<std::string> category_names;
  std::vector<int64_t> category_ids;
  // Leave out images with no kept annotation (detection training usually does).
  bool skip_images_without_boxes = false;
};

struct CocoAnnotations {
  std::vector<CocoCategory> categories;  // the kept categories, sorted by id (label order)
  std::vector<CocoImage> images;         // in file order
  CocoStats stats;
};

// Parses COCO json text; `source` names it in messages. Invalid JSON throws isrn::Error
// "[coco] <source>: invalid JSON: ..." with the parser's line and column; a missing field, a value of the
// wrong type, a duplicate id or a reference to an unknown image or category throws
// "[coco] <source>: <json path>: <problem>", e.g. "annotations[3].bbox: expected 4 numbers, found 3".
CocoAnnotations parse_coco(const std::string& text, const std::string& source = "<string>",
                           const CocoFilter& filter = {});
CocoAnnotations read_coco(const std::string& json_path, const CocoFilter& filter = {});

// Images under `image_dir` named by file_name; get(i) decodes the image, its boxes are the kept objects'
// boxes and its id the file name without extension.
class CocoDataset : public Dataset {
 public:
  CocoDataset(const std::string& image_dir, const std::string& json_path, const CocoFilter& filter = {});

  size_t size() const override { return annotations_.images.size(); }
  Sample get(size_t index) const override;

  const CocoImage& image(size_t index) const;
  std::string image_path(size_t index) const;
  const std::vector<CocoCategory>& categories() const { return annotations_.categories; }
  const CocoStats& stats() const { return annotations_.stats; }

 private:
  std::string image_dir_;
  CocoAnnotations annotations_;
};

}  // namespace isrn::data
