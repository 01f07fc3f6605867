#pragma once
// WIDER FACE: the official text annotations (wider_face_split/wider_face_{train,val}_bbx_gt.txt) and a
// data set over the official folder layout.
//
// A record is an image path line (`event/name.jpg`), a count line N, then N lines
// `x y w h blur expression illumination invalid occlusion pose` (integers; top-left corner and size).
// An image without faces is written as N = 0 followed by ONE dummy line of ten zeros, which belongs to
// the record and is not a face. Every face line is kept with its attributes; faces flagged invalid and
// boxes with w <= 0 or h <= 0 are left out of the training boxes and counted.
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/data/dataset.hpp"
#include "isrn/data/sample.hpp"

namespace isrn::data {

// One face line as written, attribute codes as in the official readme.txt.
struct WiderFace {
  int32_t x = 0, y = 0, w = 0, h = 0;
  int8_t blur = 0;          // 0 clear, 1 normal, 2 heavy
  int8_t expression = 0;    // 0 typical, 1 exaggerate
  int8_t illumination = 0;  // 0 normal, 1 extreme
  int8_t invalid = 0;       // 0 valid, 1 invalid
  int8_t occlusion = 0;     // 0 none, 1 partial, 2 heavy
  int8_t pose = 0;          // 0 typical, 1 atypical

  // Corners with x2 = x + w, y2 = y + h, as the official evaluation reads them.
  Box box() const;
  // Whether the face is a training box: flagged valid and of positive width and height.
  bool trainable() const { return invalid == 0 && w > 0 && h > 0; }
  bool operator==(const WiderFace&) const = default;
};

struct WiderRecord {
  std::string path;               // "event/name.jpg", as on the record's first line
  std::vector<WiderFace> faces;   // every face line in file order (the zero-face dummy line is not one)
  std::vector<Box> boxes;         // box() of the trainable faces, in file order
  int64_t line = 0;               // 1-based line of the path in the annotation file

  std::string event() const;      // "0--Parade"
  std::string id() const;         // "0--Parade/0_Parade_marchingband_1_799": the path without its extension
};

// Counts over a set of records. Each dropped face is counted once: a face flagged invalid counts as
// invalid even when its box is also empty.
struct WiderStats {
  int64_t images = 0;
  int64_t faces = 0;              // face lines, dummy lines excluded
  int64_t invalid_dropped = 0;
  int64_t zero_size_dropped = 0;  // flagged valid, but w <= 0 or h <= 0
  int64_t zero_face_images = 0;   // records with N = 0
  int64_t boxes() const { return faces - invalid_dropped - zero_size_dropped; }
  bool operator==(const WiderStats&) const = default;
};

WiderStats wider_stats(const std::vector<WiderRecord>& records);

struct WiderAnnotations {
  std::vector<WiderRecord> records;
  WiderStats stats;
};

// Parses annotation text; `source` names it in error messages. Anything malformed (an image path other than
// `event/name` inside the images folder, a non-numeric or out-of-range value, a wrong column count, a negative
// count, a count that does not match the lines that follow, a missing or non-zero dummy line, text ending inside
// a record) throws isrn::Error "[wider] <source>:<line>: <problem>" with the 1-based line number. Trailing
// blanks, CRLF line ends and blank lines at the end of the file are accepted.
WiderAnnotations parse_wider_annotations(const std::string& text, const std::string& source = "<string>");
WiderAnnotations read_wider_annotations(const std::string& path);

struct WiderOptions {
  // Keep only these events ("0--Parade", ...); empty keeps every event. A name absent from the
  // annotation file throws, so a typo does not silently leave an empty data set.
  std::vector<std::string> events;
  // Leave out records whose image file is missing (counted by missing_images()); when false, every
  // record is kept and get() of a missing image throws.
  bool skip_missing_images = true;
};

// `root` holds the official layout: wider_face_split/wider_face_<split>_bbx_gt.txt and
// WIDER_<split>/images/<event>/<name>.jpg, for split "train" or "val". get(i) decodes the image;
// its boxes are the record's trainable faces, its id the record's id().
class WiderDataset : public Dataset {
 public:
  WiderDataset(const std::string& root, const std::string& split, const WiderOptions& options = {});

  size_t size() const override { return records_.size(); }
  Sample get(size_t index) const override;

  const WiderRecord& record(size_t index) const;
  std::string image_path(size_t index) const;
  const std::string& annotation_path() const { return annotation_path_; }
  // Counts over the records held (after the event filter and missing images).
  const WiderStats& stats() const { return stats_; }
  // Counts over the whole annotation file.
  const WiderStats& file_stats() const { return file_stats_; }
  // Records of the selected events left out because their image file does not exist.
  int64_t missing_images() const { return missing_images_; }

 private:
  std::string image_dir_;
  std::string annotation_path_;
  std::vector<WiderRecord> records_;
  WiderStats stats_, file_stats_;
  int64_t missing_images_ = 0;
};

}  // namespace isrn::data
