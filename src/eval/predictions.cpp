#include "isrn/eval/predictions.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "isrn/core/error.hpp"
#include "isrn/io/file.hpp"

namespace isrn::eval {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------------------
// Inputs

bool has_image_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

std::string image_id(const std::string& path) {
  ISRN_CHECK(!path.empty(), "[image_id] empty path");
  const fs::path absolute = fs::absolute(fs::path(path)).lexically_normal();
  std::string event = absolute.parent_path().filename().string();
  if (event.empty() || event == "." || event == "..") event = "_";
  const std::string name = absolute.stem().string();
  ISRN_CHECK(!name.empty(), "[image_id] ", path, " has no file name");
  return event + "/" + name;
}

namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<InputImage> read_list(const std::string& list_path) {
  const std::string text = io::read_file(list_path, "[collect_inputs] ");
  const fs::path base = fs::path(list_path).parent_path();
  std::vector<InputImage> images;
  std::string_view rest(text);
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    const std::string_view line = trim(rest.substr(0, nl));
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const fs::path listed(line);
    const std::string path = listed.is_relative() && !base.empty() ? (base / listed).string() : listed.string();
    images.push_back({path, image_id(path)});
  }
  return images;
}

std::vector<InputImage> scan_folder(const std::string& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  ISRN_CHECK(!ec, "[collect_inputs] ", dir, ": cannot list the folder: ", ec.message());
  for (; it != end; it.increment(ec)) {
    ISRN_CHECK(!ec, "[collect_inputs] ", dir, ": cannot list the folder: ", ec.message());
    std::error_code file_ec;
    if (it->is_regular_file(file_ec) && has_image_extension(it->path().string())) found.push_back(it->path());
  }
  ISRN_CHECK(!ec, "[collect_inputs] ", dir, ": cannot list the folder: ", ec.message());
  std::sort(found.begin(), found.end());
  std::vector<InputImage> images;
  images.reserve(found.size());
  for (const fs::path& p : found) images.push_back({p.string(), image_id(p.string())});
  return images;
}

}  // namespace

std::vector<InputImage> collect_inputs(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  ISRN_CHECK(fs::exists(status), "[collect_inputs] ", path, ": no such file or folder");
  std::vector<InputImage> images;
  if (fs::is_directory(status))
    images = scan_folder(path);
  else if (has_image_extension(path))
    images.push_back({path, image_id(path)});
  else
    images = read_list(path);

  std::map<std::string, const std::string*> by_id;
  for (const InputImage& image : images) {
    const auto [it, inserted] = by_id.emplace(image.id, &image.path);
    ISRN_CHECK(inserted, "[collect_inputs] ", *it->second, " and ", image.path, " would both be written as ",
               image.id, " (the last folder and the file name name an image's predictions)");
  }
  return images;
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs

std::vector<ScoredBox> to_scored_boxes(const models::Detections& detections) {
  ISRN_CHECK(detections.boxes.defined() && detections.boxes.dim() == 2 && detections.boxes.size(1) == 4,
             "[to_scored_boxes] boxes must be [K, 4]");
  ISRN_CHECK(detections.scores.defined() && detections.scores.dim() == 1 &&
                 detections.scores.size(0) == detections.boxes.size(0),
             "[to_scored_boxes] scores must be [", detections.boxes.size(0), "]");
  const std::vector<double> b =
      detections.boxes.detach().to(Device::cpu()).to(DType::Float64).contiguous().to_vector<double>();
  const std::vector<double> s =
      detections.scores.detach().to(Device::cpu()).to(DType::Float64).contiguous().to_vector<double>();
  std::vector<ScoredBox> boxes(s.size());
  for (size_t i = 0; i < s.size(); ++i) boxes[i] = {b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3], s[i]};
  return boxes;
}

std::vector<ScoredBox> select_and_sort(std::vector<ScoredBox> boxes, double threshold) {
  std::erase_if(boxes, [threshold](const ScoredBox& b) { return !(b.score >= threshold); });
  std::stable_sort(boxes.begin(), boxes.end(),
                   [](const ScoredBox& a, const ScoredBox& b) { return a.score > b.score; });
  return boxes;
}

namespace {

// To 1/100 pixel; -0 prints as 0.
double round_hundredth(double v) {
  const double r = std::round(v * 100.0) / 100.0;
  return r == 0.0 ? 0.0 : r;
}

// The score's float32 value, as the double whose shortest decimal is the float's shortest decimal, so that the
// JSON writer (shortest round-trip for doubles) prints the float's digits.
double float_digits(double score) {
  char buf[32];
  const auto [end, err] = std::to_chars(buf, buf + sizeof buf, static_cast<float>(score));
  double v = 0;
  std::from_chars(buf, end, v);
  return v;
}

void append_shortest(std::string& out, double v) {
  char buf[32];
  const auto [end, err] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_shortest(std::string& out, float v) {
  char buf[32];
  const auto [end, err] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void check_finite(const std::vector<ScoredBox>& boxes, const std::string& what, const std::string& name) {
  for (size_t i = 0; i < boxes.size(); ++i) {
    const ScoredBox& b = boxes[i];
    ISRN_CHECK(std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2) &&
                   std::isfinite(b.score),
               what, name, ": detection ", i, " has a non-finite value (", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2,
               ", score ", b.score, ")");
  }
}

// <dir>/<id><extension>, with the event folder created.
std::string output_path(const std::string& dir, const std::string& id, const std::string& extension,
                        const std::string& what) {
  ISRN_CHECK(!id.empty() && id.find('/') != std::string::npos, what, "id '", id, "' is not <event>/<name>");
  const fs::path path = fs::path(dir) / (id + extension);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ISRN_CHECK(!ec, what, "cannot create the folder ", path.parent_path().string(), ": ", ec.message());
  return path.string();
}

}  // namespace

std::string format_wider_prediction(const std::string& name, const std::vector<ScoredBox>& boxes) {
  ISRN_CHECK(!name.empty() && name.find_first_of("\r\n") == std::string::npos,
             "[format_wider_prediction] the image name must be one non-empty line, got '", name, "'");
  check_finite(boxes, "[format_wider_prediction] ", name);
  const std::vector<ScoredBox> sorted = select_and_sort(boxes, -INFINITY);
  std::string text = name + "\n" + std::to_string(sorted.size()) + "\n";
  for (const ScoredBox& b : sorted) {
    const double x1 = round_hundredth(b.x1), y1 = round_hundredth(b.y1);
    append_shortest(text, x1);
    text += ' ';
    append_shortest(text, y1);
    text += ' ';
    append_shortest(text, round_hundredth(round_hundredth(b.x2) - x1));
    text += ' ';
    append_shortest(text, round_hundredth(round_hundredth(b.y2) - y1));
    text += ' ';
    append_shortest(text, static_cast<float>(b.score));
    text += '\n';
  }
  return text;
}

std::string write_wider_prediction(const std::string& dir, const std::string& id,
                                   const std::vector<ScoredBox>& boxes) {
  const std::string where = "[write_wider_prediction] ";
  const std::string path = output_path(dir, id, ".txt", where);
  io::write_file_atomic(path, format_wider_prediction(id.substr(id.rfind('/') + 1), boxes), where);
  return path;
}

std::string format_detections_json(const ImageRecord& record) {
  check_finite(record.boxes, "[format_detections_json] ", record.id);
  const auto thousandth = [](double v) { return std::round(v * 1000.0) / 1000.0; };
  nlohmann::ordered_json detections = nlohmann::ordered_json::array();
  for (const ScoredBox& b : select_and_sort(record.boxes, -INFINITY))
    detections.push_back(nlohmann::ordered_json{{"x1", round_hundredth(b.x1)},
                          {"y1", round_hundredth(b.y1)},
                          {"x2", round_hundredth(b.x2)},
                          {"y2", round_hundredth(b.y2)},
                          {"score", float_digits(b.score)}});
  const nlohmann::ordered_json doc = {
      {"image", record.path},
      {"id", record.id},
      {"width", record.width},
      {"height", record.height},
      {"detections", detections},
      {"timing_ms",
       {{"decode", thousandth(record.timing_ms.decode)},
        {"preprocess", thousandth(record.timing_ms.preprocess)},
        {"network", thousandth(record.timing_ms.network)},
        {"postprocess", thousandth(record.timing_ms.postprocess)}}}};
  return doc.dump() + "\n";
}

std::string write_detections_json(const std::string& dir, const ImageRecord& record) {
  const std::string where = "[write_detections_json] ";
  const std::string path = output_path(dir, record.id, ".json", where);
  io::write_file_atomic(path, format_detections_json(record), where);
  return path;
}

}  // namespace isrn::eval
