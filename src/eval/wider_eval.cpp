#include "isrn/eval/wider_eval.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <set>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "isrn/core/error.hpp"
#include "isrn/io/file.hpp"

namespace isrn::eval {

namespace {

constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// MATLAB's int32(): round half away from zero (std::round does exactly that), saturate, NaN becomes 0.
int64_t matlab_int32(double v) {
  if (std::isnan(v)) return 0;
  const double r = std::round(v);
  if (r <= static_cast<double>(kInt32Min)) return kInt32Min;
  if (r >= static_cast<double>(kInt32Max)) return kInt32Max;
  return static_cast<int64_t>(r);
}

// Every int32 op in MATLAB saturates instead of wrapping.
int64_t saturate(int64_t v) { return std::clamp(v, kInt32Min, kInt32Max); }

// MATLAB's max ignores NaN (VOCap's running maximum meets the 0/0 precision of thresholds with no detection).
double max_ignoring_nan(double a, double b) {
  if (std::isnan(a)) return b;
  if (std::isnan(b)) return a;
  return std::max(a, b);
}

std::string format_ap(double ap) {
  if (std::isnan(ap)) return "nan";  // printf gives "-nan" for the 0/0 of x86
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", ap);
  return buf;
}

struct IntCorners {
  int64_t x1, y1, x2, y2, area;
};

// For each detection (in score order), the face it is matched to at IoU >= 0.5, or -1. The choice does not depend
// on the setting (only what the match means does), so it is made once per image.
//
// The official image_evaluation calls boxoverlap(gt_bbx, pred) with gt_bbx int32 (face_bbx_list is int32 in the
// .mat) and pred double. In MATLAB int32-op-double is int32, so: the detection's corners are rounded where they
// meet the face's in max/min; widths, intersection and the face area are int32; the double detection area is
// rounded when added to the face area; and int32 ./ int32 rounds the IoU itself to an integer. A face therefore
// "overlaps" with value 1 exactly when inter/union >= 0.5 in these rounded quantities, and max() returns the FIRST
// such face, not the one of highest real IoU. We reproduce that, oddity included (WIDER_EVAL.md A.8).
std::vector<int64_t> match_matlab(const std::vector<FaceBox>& faces, const std::vector<Detection>& dets) {
  std::vector<IntCorners> gt(faces.size());
  for (size_t i = 0; i < faces.size(); ++i) {
    // A fractional box (a generated set) becomes what int32() would have stored in the .mat.
    const int64_t x = matlab_int32(faces[i].x), y = matlab_int32(faces[i].y);
    const int64_t x2 = saturate(x + matlab_int32(faces[i].w)), y2 = saturate(y + matlab_int32(faces[i].h));
    const int64_t area = saturate(saturate(saturate(x2 - x) + 1) * saturate(saturate(y2 - y) + 1));
    gt[i] = {x, y, x2, y2, area};
  }
  std::vector<int64_t> best(dets.size(), -1);
  for (size_t h = 0; h < dets.size(); ++h) {
    const Detection& d = dets[h];
    const double dx2 = d.x + d.w, dy2 = d.y + d.h;  // x2 = x + w: no -1 (evaluation.m)
    // max(int32 a, double b) as int32 is max(a, int32(b)): rounding is monotone.
    const int64_t rx1 = matlab_int32(d.x), ry1 = matlab_int32(d.y), rx2 = matlab_int32(dx2), ry2 = matlab_int32(dy2);
    const double det_area = (dx2 - d.x + 1) * (dy2 - d.y + 1);
    int64_t best_overlap = std::numeric_limits<int64_t>::min();
    int64_t best_face = -1;
    for (size_t i = 0; i < gt.size(); ++i) {
      const IntCorners& g = gt[i];
      const int64_t iw = saturate(saturate(std::min(g.x2, rx2) - std::max(g.x1, rx1)) + 1);
      const int64_t ih = saturate(saturate(std::min(g.y2, ry2) - std::max(g.y1, ry1)) + 1);
      int64_t overlap = 0;
      if (iw > 0 && ih > 0) {
        const int64_t inter = saturate(iw * ih);
        const int64_t uni = saturate(matlab_int32(static_cast<double>(g.area) + det_area) - inter);
        overlap = matlab_int32(static_cast<double>(inter) / static_cast<double>(uni));
      }
      if (overlap > best_overlap) {
        best_overlap = overlap;
        best_face = static_cast<int64_t>(i);
      }
    }
    if (best_face >= 0 && static_cast<double>(best_overlap) >= kIouThreshold) best[h] = best_face;
  }
  return best;
}

// The Python ports' bbox_overlaps: the same +1 convention in double precision; argmax takes the first maximum.
std::vector<int64_t> match_float64(const std::vector<FaceBox>& faces, const std::vector<Detection>& dets) {
  std::vector<int64_t> best(dets.size(), -1);
  for (size_t h = 0; h < dets.size(); ++h) {
    const Detection& d = dets[h];
    const double dx2 = d.x + d.w, dy2 = d.y + d.h;
    const double det_area = (dx2 - d.x + 1) * (dy2 - d.y + 1);
    double best_overlap = -1;
    int64_t best_face = -1;
    for (size_t i = 0; i < faces.size(); ++i) {
      const FaceBox& f = faces[i];
      const double fx2 = f.x + f.w, fy2 = f.y + f.h;
      double overlap = 0;
      const double iw = std::min(fx2, dx2) - std::max(f.x, d.x) + 1;
      const double ih = std::min(fy2, dy2) - std::max(f.y, d.y) + 1;
      if (iw > 0 && ih > 0) {
        const double ua = (fx2 - f.x + 1) * (fy2 - f.y + 1) + det_area - iw * ih;
        overlap = iw * ih / ua;
      }
      if (overlap > best_overlap) {
        best_overlap = overlap;
        best_face = static_cast<int64_t>(i);
      }
    }
    if (best_face >= 0 && best_overlap >= kIouThreshold) best[h] = best_face;
  }
  return best;
}

struct ScoredImage {
  const GroundTruthImage* truth = nullptr;
  std::vector<Detection> detections;  // by score, descending
  std::vector<double> normalised;     // non-increasing, or all NaN
  std::vector<int64_t> matched_face;  // per detection, -1 when below the IoU threshold
};

// norm_score.m: one global min and max over all scores of all scored images; s -> (s - min) / (max - min).
void normalise(std::vector<ScoredImage>& images, Arithmetic arithmetic, std::vector<std::string>& warnings) {
  int64_t count = 0;
  double raw_min = std::numeric_limits<double>::infinity(), raw_max = -raw_min;
  for (const ScoredImage& im : images)
    for (const Detection& d : im.detections) {
      raw_min = std::min(raw_min, d.score);
      raw_max = std::max(raw_max, d.score);
      ++count;
    }
  if (count == 0) return;
  if (raw_min == raw_max)
    warnings.push_back("all " + std::to_string(count) + " detection scores are equal (" + std::to_string(raw_min) +
                       "): the ranking carries no information");
  bool undefined = false;
  if (arithmetic == Arithmetic::matlab) {
    // The running max/min start at realmin/realmax('single'), and max(single, double) is single: the whole
    // normalisation runs in single precision, and a maximum score below realmin('single') (all scores <= 0) is
    // replaced by realmin.
    float hi = std::numeric_limits<float>::min(), lo = std::numeric_limits<float>::max();
    for (const ScoredImage& im : images)
      for (const Detection& d : im.detections) {
        hi = std::max(hi, static_cast<float>(d.score));
        lo = std::min(lo, static_cast<float>(d.score));
      }
    if (raw_max < static_cast<double>(std::numeric_limits<float>::min()))
      warnings.push_back("every score is below realmin('single'): the official normalisation starts its maximum "
                         "there, so no detection reaches the normalised score 1");
    const float range = hi - lo;
    undefined = !(range != 0.0f);
    for (ScoredImage& im : images) {
      im.normalised.resize(im.detections.size());
      for (size_t i = 0; i < im.detections.size(); ++i)
        im.normalised[i] = static_cast<double>((static_cast<float>(im.detections[i].score) - lo) / range);
    }
  } else {
    double hi = 0.0, lo = 1.0;  // the Python port's starting values
    hi = std::max(hi, raw_max);
    lo = std::min(lo, raw_min);
    const double range = hi - lo;
    undefined = !(range != 0.0);
    for (ScoredImage& im : images) {
      im.normalised.resize(im.detections.size());
      for (size_t i = 0; i < im.detections.size(); ++i) im.normalised[i] = (im.detections[i].score - lo) / range;
    }
  }
  if (undefined)
    warnings.push_back("the score range is 0, so min-max normalisation gives NaN for every score: no detection "
                       "passes any threshold and AP is 0 (the official code does the same)");
}

// VOCap.m: all-point interpolation over the 1,000 (recall, precision) points.
double voc_ap(const std::vector<PrPoint>& curve) {
  std::vector<double> rec{0.0}, prec{0.0};
  for (const PrPoint& p : curve) {
    rec.push_back(p.recall);
    prec.push_back(p.precision);
  }
  rec.push_back(1.0);
  prec.push_back(0.0);
  for (size_t i = prec.size() - 1; i-- > 0;) prec[i] = max_ignoring_nan(prec[i], prec[i + 1]);
  double ap = 0;
  // NaN recall (no face counts) compares unequal to everything, so it reaches the sum and makes AP NaN, as in
  // MATLAB.
  for (size_t i = 1; i < rec.size(); ++i)
    if (rec[i] != rec[i - 1]) ap += (rec[i] - rec[i - 1]) * prec[i];
  return ap;
}

void validate_truth(const GroundTruth& truth) {
  const std::string where = "[evaluate] ";
  ISRN_CHECK(!truth.settings.empty(), where, "the ground truth names no setting");
  std::set<std::string> ids;
  for (const GroundTruthImage& im : truth.images) {
    ISRN_CHECK(ids.insert(im.id).second, where, "image '", im.id, "' appears twice in the ground truth");
    ISRN_CHECK(im.keep.size() == truth.settings.size(), where, "image '", im.id, "' has ", im.keep.size(),
               " keep lists for ", truth.settings.size(), " settings");
    for (size_t i = 0; i < im.faces.size(); ++i) {
      const FaceBox& f = im.faces[i];
      ISRN_CHECK(std::isfinite(f.x) && std::isfinite(f.y) && std::isfinite(f.w) && std::isfinite(f.h), where,
                 "image '", im.id, "' face ", i, " has a non-finite coordinate");
    }
    for (size_t s = 0; s < im.keep.size(); ++s) {
      std::set<int64_t> seen;
      for (int64_t k : im.keep[s]) {
        ISRN_CHECK(k >= 0 && k < static_cast<int64_t>(im.faces.size()), where, "image '", im.id, "' setting ",
                   truth.settings[s], ": keep index ", k, " is outside its ", im.faces.size(), " faces");
        ISRN_CHECK(seen.insert(k).second, where, "image '", im.id, "' setting ", truth.settings[s], ": face ", k,
                   " is listed twice");
      }
    }
  }
}

}  // namespace

const SettingResult& EvalResult::setting(const std::string& name) const {
  for (const SettingResult& s : settings)
    if (s.name == name) return s;
  ISRN_CHECK(false, "[EvalResult::setting] no setting '", name, "'");
  return settings.front();  // unreachable
}

EvalResult evaluate(const GroundTruth& truth, const Predictions& predictions, const EvalOptions& options) {
  validate_truth(truth);
  EvalResult result;

  std::unordered_map<std::string, const GroundTruthImage*> by_id;
  for (const GroundTruthImage& im : truth.images) by_id.emplace(im.id, &im);
  int64_t unknown = 0;
  std::string unknown_example;
  for (const auto& [id, dets] : predictions) {
    if (by_id.count(id)) continue;
    if (unknown++ == 0) unknown_example = id;
  }
  if (unknown > 0)
    result.warnings.push_back(std::to_string(unknown) + " prediction entries name no image of the ground truth " +
                              "and are ignored (e.g. '" + unknown_example + "')");

  std::vector<ScoredImage> scored;
  for (const GroundTruthImage& im : truth.images) {
    const auto found = predictions.find(im.id);
    if (found == predictions.end() && !options.all_images) continue;
    ScoredImage s;
    s.truth = &im;
    if (found != predictions.end()) s.detections = found->second;
    for (size_t i = 0; i < s.detections.size(); ++i) {
      const Detection& d = s.detections[i];
      ISRN_CHECK(std::isfinite(d.x) && std::isfinite(d.y) && std::isfinite(d.w) && std::isfinite(d.h) &&
                     std::isfinite(d.score),
                 "[evaluate] image '", im.id, "' detection ", i, " has a non-finite value");
    }
    // read_pred.m sorts by score, descending; MATLAB's sort keeps equal scores in file order.
    std::stable_sort(s.detections.begin(), s.detections.end(),
                     [](const Detection& a, const Detection& b) { return a.score > b.score; });
    result.detections += static_cast<int64_t>(s.detections.size());
    scored.push_back(std::move(s));
  }
  result.images = static_cast<int64_t>(scored.size());
  if (scored.empty())
    result.warnings.push_back("no image of the ground truth has predictions: nothing was scored");

  normalise(scored, options.arithmetic, result.warnings);
  for (ScoredImage& im : scored)
    im.matched_face = options.arithmetic == Arithmetic::matlab ? match_matlab(im.truth->faces, im.detections)
                                                               : match_float64(im.truth->faces, im.detections);

  std::vector<double> thresholds(kThresholdCount);
  for (int t = 1; t <= kThresholdCount; ++t) thresholds[t - 1] = 1.0 - static_cast<double>(t) / kThresholdCount;

  for (size_t s = 0; s < truth.settings.size(); ++s) {
    SettingResult setting;
    setting.name = truth.settings[s];
    setting.images = result.images;
    std::vector<int64_t> detections(kThresholdCount, 0), recalled(kThresholdCount, 0);
    std::vector<int64_t> proposals_upto, recalled_upto;
    std::vector<char> counts, recalled_face;
    for (const ScoredImage& im : scored) {
      const GroundTruthImage& gt = *im.truth;
      // Counted before the empty check (evaluation.m): an image without detections still adds its faces.
      setting.faces += static_cast<int64_t>(gt.keep[s].size());
      // An image with no faces at all is skipped together with its detections: they are not false positives.
      // Every official validation image has a face; a generated set may not.
      if (gt.faces.empty() || im.detections.empty()) continue;
      counts.assign(gt.faces.size(), 0);
      for (int64_t k : gt.keep[s]) counts[k] = 1;
      recalled_face.assign(gt.faces.size(), 0);
      const size_t n = im.detections.size();
      proposals_upto.assign(n + 1, 0);
      recalled_upto.assign(n + 1, 0);
      for (size_t h = 0; h < n; ++h) {
        const int64_t f = im.matched_face[h];
        bool counted = true;
        int64_t newly = 0;
        if (f >= 0) {
          if (!counts[f]) {
            counted = false;  // matched to an ignored face: dropped, neither true nor false positive
          } else if (!recalled_face[f]) {
            recalled_face[f] = 1;
            newly = 1;
          }
          // A detection whose face is already recalled stays counted: a false positive.
        }
        proposals_upto[h + 1] = proposals_upto[h] + (counted ? 1 : 0);
        recalled_upto[h + 1] = recalled_upto[h] + newly;
      }
      // The detections at or above a threshold are a prefix of the sorted list (image_pr_info takes the last
      // index with score >= threshold); all-NaN scores give the empty prefix.
      size_t prefix = 0;
      for (int t = 0; t < kThresholdCount; ++t) {
        while (prefix < n && im.normalised[prefix] >= thresholds[t]) ++prefix;
        detections[t] += proposals_upto[prefix];
        recalled[t] += recalled_upto[prefix];
      }
    }
    setting.curve.resize(kThresholdCount);
    for (int t = 0; t < kThresholdCount; ++t) {
      PrPoint& p = setting.curve[t];
      p.threshold = thresholds[t];
      p.detections = detections[t];
      p.recalled = recalled[t];
      // dataset_pr_info: plain double division, 0/0 included.
      p.precision = static_cast<double>(recalled[t]) / static_cast<double>(detections[t]);
      p.recall = static_cast<double>(recalled[t]) / static_cast<double>(setting.faces);
    }
    setting.ap = voc_ap(setting.curve);
    if (setting.faces == 0 && !scored.empty())
      result.warnings.push_back("setting " + setting.name + ": no face counts among the " +
                                std::to_string(result.images) + " scored images, so recall is 0/0 and AP is NaN");
    result.settings.push_back(std::move(setting));
  }
  return result;
}

EvalResult evaluate_all_faces(const std::vector<ImageFaces>& truth, const Predictions& predictions,
                              const EvalOptions& options) {
  GroundTruth gt;
  gt.settings = {"all"};
  gt.images.reserve(truth.size());
  for (const ImageFaces& im : truth) {
    GroundTruthImage g;
    g.id = im.id;
    g.faces = im.faces;
    g.keep.emplace_back(im.faces.size());
    std::iota(g.keep[0].begin(), g.keep[0].end(), int64_t{0});
    gt.images.push_back(std::move(g));
  }
  return evaluate(gt, predictions, options);
}

GroundTruth restrict_to_events(const GroundTruth& truth, const std::vector<std::string>& events) {
  auto event_of = [](const std::string& id) { return id.substr(0, id.find('/')); };
  std::set<std::string> known;
  for (const GroundTruthImage& im : truth.images) known.insert(event_of(im.id));
  const std::set<std::string> wanted(events.begin(), events.end());
  for (const std::string& e : wanted)
    ISRN_CHECK(known.count(e), "[restrict_to_events] unknown event '", e, "' (the ground truth has ", known.size(),
               " events, e.g. '", known.empty() ? std::string() : *known.begin(), "')");
  GroundTruth out;
  out.settings = truth.settings;
  for (const GroundTruthImage& im : truth.images)
    if (wanted.count(event_of(im.id))) out.images.push_back(im);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Prediction files

namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) ++i;
    const size_t start = i;
    while (i < s.size() && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) ++i;
    if (i > start) fields.push_back(s.substr(start, i - start));
  }
  return fields;
}

[[noreturn]] void fail_at(const std::string& path, size_t line, const std::string& problem) {
  throw Error("[read_prediction_file] " + path + ":" + std::to_string(line) + ": " + problem);
}

}  // namespace

PredictionFile read_prediction_file(const std::string& path) {
  const std::string where = "[read_prediction_file] ";
  const std::string text = io::read_file(path, where);
  std::vector<std::string_view> lines;
  std::string_view rest(text);
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  const auto fail = [&path](size_t line, const std::string& problem) { fail_at(path, line, problem); };

  PredictionFile file;
  if (lines.empty() || trim(lines[0]).empty()) fail(1, "expected the image name, found an empty line");
  file.name = std::string(trim(lines[0]));
  if (lines.size() < 2) fail(2, "expected the number of boxes, found the end of the file");
  const std::string_view count_text = trim(lines[1]);
  int64_t count = -1;
  const auto [count_end, count_err] = std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
  if (count_text.empty() || count_err != std::errc() || count_end != count_text.data() + count_text.size() || count < 0)
    fail(2, "expected the number of boxes (an integer >= 0), found '" + std::string(count_text) + "'");

  file.detections.reserve(static_cast<size_t>(std::min<int64_t>(count, 1 << 20)));
  for (int64_t k = 0; k < count; ++k) {
    const size_t line = static_cast<size_t>(k) + 3;
    if (line > lines.size())
      fail(line, "expected box " + std::to_string(k + 1) + " of the " + std::to_string(count) +
                     " announced on line 2, found the end of the file");
    const std::vector<std::string_view> fields = split_fields(lines[line - 1]);
    if (fields.size() != 5)
      fail(line, "expected 5 numbers (x y w h score), found " + std::to_string(fields.size()) + " fields");
    double v[5];
    for (int j = 0; j < 5; ++j) {
      std::string_view f = fields[j];
      if (f.size() > 1 && f.front() == '+') f.remove_prefix(1);  // from_chars rejects a leading '+'
      const auto [end, err] = std::from_chars(f.data(), f.data() + f.size(), v[j]);
      if (err != std::errc() || end != f.data() + f.size())
        fail(line, "'" + std::string(fields[j]) + "' is not a number");
      if (!std::isfinite(v[j])) fail(line, "non-finite value '" + std::string(fields[j]) + "'");
    }
    file.detections.push_back({v[0], v[1], v[2], v[3], v[4]});
  }
  for (size_t i = static_cast<size_t>(count) + 2; i < lines.size(); ++i)
    if (!trim(lines[i]).empty())
      fail(i + 1, "line 2 announces " + std::to_string(count) + " boxes, but more lines follow");
  return file;
}

PredictionFolder read_prediction_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string where = "[read_prediction_folder] ";
  std::error_code ec;
  ISRN_CHECK(fs::is_directory(dir, ec), where, dir, ": not a folder");
  const auto sorted_entries = [&](const fs::path& p) {
    std::vector<fs::directory_entry> entries;
    std::error_code iter_ec;
    for (fs::directory_iterator it(p, iter_ec), end; !iter_ec && it != end; it.increment(iter_ec))
      entries.push_back(*it);
    ISRN_CHECK(!iter_ec, where, p.string(), ": cannot list the folder: ", iter_ec.message());
    std::sort(entries.begin(), entries.end(),
              [](const fs::directory_entry& a, const fs::directory_entry& b) { return a.path() < b.path(); });
    return entries;
  };

  PredictionFolder folder;
  int64_t skipped = 0, misnamed = 0;
  std::string skipped_example, misnamed_example;
  for (const fs::directory_entry& event : sorted_entries(dir)) {
    if (!event.is_directory()) {
      if (skipped++ == 0) skipped_example = event.path().string();
      continue;
    }
    const std::string event_name = event.path().filename().string();
    for (const fs::directory_entry& entry : sorted_entries(event.path())) {
      if (!entry.is_regular_file() || entry.path().extension() != ".txt") {
        if (skipped++ == 0) skipped_example = entry.path().string();
        continue;
      }
      const std::string stem = entry.path().stem().string();
      PredictionFile file = read_prediction_file(entry.path().string());
      // The official reader locates files by path and never reads line 1; the Python ports key by it. A
      // disagreement means one of the two will score the wrong image.
      std::string named = file.name.substr(file.name.find_last_of('/') == std::string::npos
                                               ? 0
                                               : file.name.find_last_of('/') + 1);
      if (named.size() > 4 && named.compare(named.size() - 4, 4, ".jpg") == 0) named.resize(named.size() - 4);
      if (named != stem && misnamed++ == 0)
        misnamed_example = entry.path().string() + " names '" + file.name + "'";
      folder.predictions.emplace(event_name + "/" + stem, std::move(file.detections));
    }
  }
  if (skipped > 0)
    folder.warnings.push_back(std::to_string(skipped) + " entries of " + dir +
                              " are not <event>/<name>.txt files and were skipped (e.g. " + skipped_example + ")");
  if (misnamed > 0)
    folder.warnings.push_back(std::to_string(misnamed) + " prediction files name another image on their first line "
                              "than their file name does; the file name is used (e.g. " + misnamed_example + ")");
  return folder;
}

// ---------------------------------------------------------------------------------------------------------------
// Reports

std::string summary_line(const EvalResult& result) {
  std::string line;
  for (const SettingResult& s : result.settings) {
    if (!line.empty()) line += ' ';
    line += s.name + ' ' + format_ap(s.ap);
  }
  return line;
}

std::string pr_curve_csv(const EvalResult& result) {
  std::string csv = "setting,threshold,detections,recalled,precision,recall\n";
  char buf[160];
  const auto number = [](double v) {
    if (std::isnan(v)) return std::string("nan");  // 0/0 precision where no detection passes the threshold
    char n[32];
    std::snprintf(n, sizeof n, "%.10g", v);
    return std::string(n);
  };
  for (const SettingResult& s : result.settings)
    for (const PrPoint& p : s.curve) {
      std::snprintf(buf, sizeof buf, ",%.3f,%lld,%lld,", p.threshold, static_cast<long long>(p.detections),
                    static_cast<long long>(p.recalled));
      csv += s.name + buf + number(p.precision) + "," + number(p.recall) + "\n";
    }
  return csv;
}

namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

std::string pr_curve_svg(const EvalResult& result, const std::string& title) {
  constexpr double left = 70, top = 40, width = 520, height = 400;
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  char buf[256];
  const auto px = [&](double recall) { return left + recall * width; };
  const auto py = [&](double precision) { return top + (1.0 - precision) * height; };

  std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"500\" viewBox=\"0 0 640 500\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"640\" height=\"500\" fill=\"white\"/>\n";
  std::snprintf(buf, sizeof buf, "<text x=\"%g\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", left + width / 2);
  svg += buf + xml_escape(title) + "</text>\n";
  for (int i = 0; i <= 10; ++i) {
    const double v = i / 10.0;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#e0e0e0\"/>"
                  "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#e0e0e0\"/>\n",
                  px(v), top, px(v), top + height, left, py(v), left + width, py(v));
    svg += buf;
    if (i % 2 == 0) {
      std::snprintf(buf, sizeof buf,
                    "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.1f</text>"
                    "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.1f</text>\n",
                    px(v), top + height + 18, v, left - 6, py(v) + 4, v);
      svg += buf;
    }
  }
  std::snprintf(buf, sizeof buf,
                "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"black\"/>\n"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">Recall</text>\n"
                "<text x=\"20\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 20 %g)\">Precision</text>\n",
                left, top, width, height, left + width / 2, top + height + 40, top + height / 2, top + height / 2);
  svg += buf;
  for (size_t s = 0; s < result.settings.size(); ++s) {
    const SettingResult& setting = result.settings[s];
    const char* color = colors[s % (sizeof colors / sizeof colors[0])];
    std::string points;
    for (const PrPoint& p : setting.curve) {
      if (std::isnan(p.precision) || std::isnan(p.recall)) continue;  // no detection at this threshold
      std::snprintf(buf, sizeof buf, "%s%.2f,%.2f", points.empty() ? "" : " ", px(p.recall), py(p.precision));
      points += buf;
    }
    if (!points.empty())
      svg += std::string("<polyline fill=\"none\" stroke=\"") + color + "\" stroke-width=\"2\" points=\"" + points +
             "\"/>\n";
    const double ly = top + height - 20.0 * static_cast<double>(result.settings.size() - s) - 4;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"2\"/>"
                  "<text x=\"%g\" y=\"%g\">",
                  left + 12, ly, left + 36, ly, color, left + 42, ly + 4);
    svg += buf + xml_escape(setting.name) + " AP " + format_ap(setting.ap) + "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

std::string summary_json(const EvalResult& result, const EvalOptions& options) {
  nlohmann::ordered_json j;
  j["arithmetic"] = options.arithmetic == Arithmetic::matlab ? "matlab" : "float64";
  j["all_images"] = options.all_images;
  j["images"] = result.images;
  j["detections"] = result.detections;
  nlohmann::ordered_json settings = nlohmann::ordered_json::array();
  for (const SettingResult& s : result.settings) {
    nlohmann::ordered_json e;
    e["name"] = s.name;
    e["ap"] = std::isnan(s.ap) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.ap);
    e["images"] = s.images;
    e["faces"] = s.faces;
    settings.push_back(std::move(e));
  }
  j["settings"] = std::move(settings);
  j["warnings"] = result.warnings;
  return j.dump(2) + "\n";
}

void write_pr_curve_csv(const EvalResult& result, const std::string& path) {
  io::write_file_atomic(path, pr_curve_csv(result), "[write_pr_curve_csv] ");
}

void write_pr_curve_svg(const EvalResult& result, const std::string& path, const std::string& title) {
  io::write_file_atomic(path, pr_curve_svg(result, title), "[write_pr_curve_svg] ");
}

void write_summary_json(const EvalResult& result, const EvalOptions& options, const std::string& path) {
  io::write_file_atomic(path, summary_json(result, options), "[write_summary_json] ");
}

}  // namespace isrn::eval
