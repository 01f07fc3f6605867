#pragma once
// What a detection run reads and writes: the images it goes over (one image, a folder searched recursively, or a
// text list of paths), each named by its WIDER id "<event>/<name>"; the WIDER FACE prediction file of an image
// (the layout read_prediction_file and the official evaluation read, design/WIDER_EVAL.md §A.4); and one JSON
// document per image.
#include <string>
#include <vector>

#include "isrn/models/postprocess.hpp"

namespace isrn::eval {

// ---------------------------------------------------------------------------------------------------------------
// Inputs

struct InputImage {
  std::string path;  // as listed: relative to the working folder, or resolved against a list file's folder
  std::string id;    // image_id(path)
};

// .jpg, .jpeg, .png, .bmp in any letter case: the files stb_image decodes that a folder of images holds.
bool has_image_extension(const std::string& path);

// "<event>/<name>": the last folder of the path and the file name without its extension, so
// WIDER_val/images/0--Parade/0_Parade_marchingband_1_465.jpg is 0--Parade/0_Parade_marchingband_1_465 and its
// prediction file <output>/0--Parade/0_Parade_marchingband_1_465.txt. A file directly in / is "_/<name>".
std::string image_id(const std::string& path);

// The images a path names, sorted by path for a folder and in list order for a list:
//   - a file with an image extension: that image;
//   - a folder: every file with an image extension below it, at any depth (other files are ignored);
//   - any other file: a text list, one path per line; surrounding spaces and tabs are trimmed, blank lines and lines
//     starting with '#' are skipped, and a relative path is taken relative to the list's folder. Listed paths are
//     not opened here: a missing or unreadable image is the reader's to report, so a run can skip it and go on.
// A path that does not exist, or two images with one id (their prediction files would overwrite each other), is
// an Error naming them.
std::vector<InputImage> collect_inputs(const std::string& path);

// ---------------------------------------------------------------------------------------------------------------
// Outputs

// Corners in pixels, x2 = x + w and y2 = y + h: the convention of data::Box, of the training targets built from
// WIDER's `x y w h` annotations, and of the evaluation's reading of a prediction line.
struct ScoredBox {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0, score = 0;
};

// A detector's output on the host, in its order (boxes [K, 4], scores [K], any device and floating dtype).
std::vector<ScoredBox> to_scored_boxes(const models::Detections& detections);

// The boxes with score >= threshold, sorted by descending score (stable: equal scores keep their order).
std::vector<ScoredBox> select_and_sort(std::vector<ScoredBox> boxes, double threshold);

// The WIDER FACE prediction file of image `name` (the file name without extension, as the official .mat file lists
// and RetinaFace's writer puts it on line 1): the name, the number of boxes, then one `x y w h score` line per box
// in descending score order, with w = x2 − x1 and h = y2 − y1, so that the evaluation's x + w is the detector's x2.
// Coordinates are rounded to 1/100 pixel (the official MATLAB evaluation rounds them to whole pixels itself) and
// printed in the fewest digits that read back to that value; a score is printed in the fewest digits that read back
// to its float32 value, so the order and ties of the scores survive. A non-finite value is an Error naming the
// image.
std::string format_wider_prediction(const std::string& name, const std::vector<ScoredBox>& boxes);

// <dir>/<id>.txt with format_wider_prediction's content, the event folder created as needed, written atomically.
// Returns the path written.
std::string write_wider_prediction(const std::string& dir, const std::string& id,
                                   const std::vector<ScoredBox>& boxes);

// Milliseconds per stage for one image.
struct ImageTiming {
  double decode = 0, preprocess = 0, network = 0, postprocess = 0;
};

// One image's detections as a JSON document:
//   {"image": path, "id": id, "width": W, "height": H,
//    "detections": [{"x1": .., "y1": .., "x2": .., "y2": .., "score": ..}, ...],   (descending score)
//    "timing_ms": {"decode": .., "preprocess": .., "network": .., "postprocess": ..}}
// with the numbers rounded as format_wider_prediction rounds them (timings to 1/1000 ms).
struct ImageRecord {
  std::string path, id;
  int64_t width = 0, height = 0;
  std::vector<ScoredBox> boxes;
  ImageTiming timing_ms;
};
std::string format_detections_json(const ImageRecord& record);

// <dir>/<id>.json with format_detections_json's content, written atomically. Returns the path written.
std::string write_detections_json(const std::string& dir, const ImageRecord& record);

}  // namespace isrn::eval
