#pragma once
// The WIDER FACE evaluation, as the official MATLAB eval_tools compute it (protocol, pitfalls and known answers:
// design/WIDER_EVAL.md). Per image, detections are sorted by score; all scores are min–max normalised with one
// global minimum and maximum; each detection, in score order, is matched to the single ground-truth face of
// highest IoU (x2 = x + w, +1-pixel overlap) when that IoU is >= 0.5; a detection whose face does not count in the
// setting is dropped (neither true nor false positive); precision and recall are taken at the 1,000 thresholds
// 1 - t/1000 of the normalised score, and AP is the VOC all-point area under that curve.
//
// The ground truth is plain data, so the official .mat files (tools/wider_mat.hpp), WIDER's text annotations or
// a generated validation set all go through the same arithmetic.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace isrn::eval {

// Left, top, width, height in pixels, as WIDER writes boxes; the corners are (x, y, x + w, y + h).
struct FaceBox {
  double x = 0, y = 0, w = 0, h = 0;
};

struct Detection {
  double x = 0, y = 0, w = 0, h = 0, score = 0;
};

struct GroundTruthImage {
  std::string id;  // "<event>/<image name without extension>", the prediction file's path without ".txt"
  std::vector<FaceBox> faces;
  // keep[s]: 0-based indices of the faces that count in setting s (the .mat gt_list minus one). The other faces
  // are ignored in that setting: a detection matched to one of them is dropped.
  std::vector<std::vector<int64_t>> keep;
};

struct GroundTruth {
  std::vector<std::string> settings;  // e.g. {"easy", "medium", "hard"}
  std::vector<GroundTruthImage> images;
};

// Detections per image id, in any order (the evaluator sorts). An image without an entry had no prediction file;
// an entry with no detections is an empty file.
using Predictions = std::map<std::string, std::vector<Detection>>;

enum class Arithmetic {
  // What the official MATLAB code computes (WIDER_EVAL.md A.8): the ground truth is int32, so box overlaps are
  // int32 arithmetic and the IoU itself is rounded to an integer (a face "matches" at rounded IoU >= 1, and the
  // first such face wins); the scores are normalised in single precision.
  matlab,
  // The Python ports (WiderFace-Evaluation): IoU and normalisation in double precision; the normalisation's
  // running max/min start at 0/1 instead of MATLAB's realmin/realmax('single').
  float64,
};

struct EvalOptions {
  Arithmetic arithmetic = Arithmetic::matlab;
  // Official behaviour: every ground-truth image is scored, one without predictions as having no detections.
  // Off (default): only images with an entry in Predictions are scored, so a slice of the validation set (or
  // the sample in ../shared/data/widerface) can be evaluated.
  bool all_images = false;
};

inline constexpr int kThresholdCount = 1000;  // evaluation.m: thresh_num
inline constexpr double kIouThreshold = 0.5;   // evaluation.m: IoU_thresh

// One of the 1,000 points: the detections whose normalised score is >= threshold.
struct PrPoint {
  double threshold = 0;    // 1 - t/1000, t = 1..1000
  int64_t detections = 0;  // detections counted (dropped ones excluded)
  int64_t recalled = 0;    // faces they recall
  double precision = 0;    // recalled / detections; NaN when both are 0 (MATLAB's 0/0)
  double recall = 0;       // recalled / faces
};

struct SettingResult {
  std::string name;
  double ap = 0;           // NaN when no face counts (recall is 0/0, as in the official code)
  int64_t images = 0;      // images scored
  int64_t faces = 0;       // faces that count among them: the recall denominator
  std::vector<PrPoint> curve;  // kThresholdCount points, threshold descending
};

struct EvalResult {
  std::vector<SettingResult> settings;
  int64_t images = 0;      // images scored
  int64_t detections = 0;  // detections on them
  std::vector<std::string> warnings;

  const SettingResult& setting(const std::string& name) const;  // Error when there is no such setting
};

// Bad ground truth (keep index out of range, duplicate ids, non-finite boxes) or non-finite detections throw an
// Error naming the image. Predictions for ids outside the ground truth are ignored with a warning.
EvalResult evaluate(const GroundTruth& truth, const Predictions& predictions, const EvalOptions& options = {});

// Ground truth where every face counts (one setting, "all"): WIDER text annotations, a generated validation set.
struct ImageFaces {
  std::string id;
  std::vector<FaceBox> faces;
};
EvalResult evaluate_all_faces(const std::vector<ImageFaces>& truth, const Predictions& predictions,
                              const EvalOptions& options = {});

// Only the images of the named events (an id's part before the first '/'); an unknown event is an Error.
GroundTruth restrict_to_events(const GroundTruth& truth, const std::vector<std::string>& events);

// One prediction file: line 1 the image name, line 2 the number of boxes N, then N lines `x y w h score`
// (whitespace-separated; trailing spaces, CRLF line ends and blank lines after the boxes are accepted).
// Malformed content, or a count that disagrees with the lines, throws an Error naming the file and line.
struct PredictionFile {
  std::string name;  // line 1 as written
  std::vector<Detection> detections;  // file order
};
PredictionFile read_prediction_file(const std::string& path);

// A folder in the WIDER layout, <dir>/<event>/<name>.txt, keyed "<event>/<name>". Entries that are not such
// files are skipped with a warning, as is a first line that names another image than the file name does.
struct PredictionFolder {
  Predictions predictions;
  std::vector<std::string> warnings;
};
PredictionFolder read_prediction_folder(const std::string& dir);

// "easy 0.1234 medium 0.1234 hard 0.1234": every setting's name and AP with four decimals ("nan" when undefined).
std::string summary_line(const EvalResult& result);

// The PR curves: CSV (setting,threshold,detections,recalled,precision,recall; one row per setting and threshold)
// and a self-contained SVG plot (precision over recall, one curve per setting, legend with the APs).
std::string pr_curve_csv(const EvalResult& result);
std::string pr_curve_svg(const EvalResult& result, const std::string& title = "WIDER FACE");
// Summary as JSON: per setting ap (null when undefined), images, faces; arithmetic, images, detections, warnings.
std::string summary_json(const EvalResult& result, const EvalOptions& options);

// The same, written atomically (io::write_file_atomic); an Error names the path on failure.
void write_pr_curve_csv(const EvalResult& result, const std::string& path);
void write_pr_curve_svg(const EvalResult& result, const std::string& path, const std::string& title = "WIDER FACE");
void write_summary_json(const EvalResult& result, const EvalOptions& options, const std::string& path);

}  // namespace isrn::eval
