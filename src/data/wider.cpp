#include "isrn/data/wider.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <limits>
#include <set>
#include <string_view>

#include "isrn/core/error.hpp"
#include "isrn/data/image.hpp"
#include "isrn/io/file.hpp"

namespace isrn::data {

Box WiderFace::box() const {
  return Box{static_cast<float>(x), static_cast<float>(y), static_cast<float>(static_cast<int64_t>(x) + w),
             static_cast<float>(static_cast<int64_t>(y) + h)};
}

std::string WiderRecord::event() const { return path.substr(0, path.find('/')); }

std::string WiderRecord::id() const {
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  return dot != std::string::npos && (slash == std::string::npos || dot > slash) ? path.substr(0, dot) : path;
}

WiderStats wider_stats(const std::vector<WiderRecord>& records) {
  WiderStats s;
  for (const WiderRecord& r : records) {
    ++s.images;
    if (r.faces.empty()) ++s.zero_face_images;
    for (const WiderFace& f : r.faces) {
      ++s.faces;
      if (f.invalid != 0) {
        ++s.invalid_dropped;
      } else if (f.w <= 0 || f.h <= 0) {
        ++s.zero_size_dropped;
      }
    }
  }
  return s;
}

namespace {

constexpr int kColumns = 10;
constexpr std::array<const char*, kColumns> kColumnNames{"x",       "y",         "w",         "h",        "blur",
                                                         "expression", "illumination", "invalid", "occlusion", "pose"};
// The largest code of each attribute column (readme.txt of wider_face_split); coordinates are unbounded.
constexpr std::array<int, kColumns> kMaxCode{-1, -1, -1, -1, 2, 1, 1, 1, 2, 1};

class Lines {
 public:
  Lines(const std::string& text, std::string source) : source_(std::move(source)) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + start, end - start);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
      lines_.push_back(line);
      start = end + 1;
    }
    // Blank lines at the end of the file are harmless; anywhere else they break the record structure.
    while (!lines_.empty() && lines_.back().empty()) lines_.pop_back();
  }

  bool at_end() const { return next_ >= lines_.size(); }
  int64_t line_number() const { return static_cast<int64_t>(next_) + 1; }  // of the line take() returns next
  std::string_view take() { return lines_[next_++]; }

  template <typename... Args>
  [[noreturn]] void fail(int64_t line, const Args&... args) const {
    detail::throw_error(__FILE__, __LINE__, detail::concat("[wider] ", source_, ":", line, ": ", args...));
  }

 private:
  std::string source_;
  std::vector<std::string_view> lines_;
  size_t next_ = 0;
};

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool parse_integer(std::string_view token, int64_t& value) {
  const char* first = token.data();
  const char* last = token.data() + token.size();
  if (first != last && *first == '+') ++first;  // from_chars takes no plus sign
  const auto [end, ec] = std::from_chars(first, last, value);
  return ec == std::errc() && end == last && first != last;
}

bool all_integers(const std::vector<std::string_view>& toks) {
  int64_t ignored = 0;
  return !toks.empty() && std::all_of(toks.begin(), toks.end(), [&](std::string_view t) { return parse_integer(t, ignored); });
}

std::string quoted(std::string_view line) {
  constexpr size_t kMax = 80;
  std::string out(1, '\'');
  out.append(line.substr(0, kMax));
  out.append(line.size() > kMax ? "...'" : "'");
  return out;
}

// The ten columns of a face line; `what` says which line of which record it is, for the messages.
WiderFace parse_face(const Lines& lines, int64_t line_no, std::string_view line, const std::string& what) {
  const auto toks = tokens(line);
  if (toks.size() != kColumns) {
    if (!all_integers(toks))
      lines.fail(line_no, "expected ", what, " (ten integers), found ", quoted(line),
                 "; does the face count match the lines that follow?");
    lines.fail(line_no, "expected ", what, " with ten columns (x y w h blur expression illumination invalid "
                        "occlusion pose), found ", toks.size());
  }
  std::array<int64_t, kColumns> v{};
  for (int c = 0; c < kColumns; ++c) {
    if (!parse_integer(toks[c], v[c]))
      lines.fail(line_no, "column ", c + 1, " (", kColumnNames[c], ") of ", what, " is not an integer: '",
                 std::string(toks[c]), "'");
    if (kMaxCode[c] >= 0) {
      if (v[c] < 0 || v[c] > kMaxCode[c])
        lines.fail(line_no, "column ", c + 1, " (", kColumnNames[c], ") of ", what, " is ", v[c],
                   ", outside 0..", kMaxCode[c]);
    } else if (v[c] < std::numeric_limits<int32_t>::min() || v[c] > std::numeric_limits<int32_t>::max()) {
      lines.fail(line_no, "column ", c + 1, " (", kColumnNames[c], ") of ", what, " is ", v[c],
                 ", beyond the 32-bit range");
    }
  }
  WiderFace f;
  f.x = static_cast<int32_t>(v[0]);
  f.y = static_cast<int32_t>(v[1]);
  f.w = static_cast<int32_t>(v[2]);
  f.h = static_cast<int32_t>(v[3]);
  f.blur = static_cast<int8_t>(v[4]);
  f.expression = static_cast<int8_t>(v[5]);
  f.illumination = static_cast<int8_t>(v[6]);
  f.invalid = static_cast<int8_t>(v[7]);
  f.occlusion = static_cast<int8_t>(v[8]);
  f.pose = static_cast<int8_t>(v[9]);
  return f;
}

}  // namespace

WiderAnnotations parse_wider_annotations(const std::string& text, const std::string& source) {
  Lines lines(text, source);
  WiderAnnotations out;
  while (!lines.at_end()) {
    WiderRecord record;
    record.line = lines.line_number();
    const std::string_view path = lines.take();
    if (path.empty()) lines.fail(record.line, "blank line where an image path was expected");
    const auto path_tokens = tokens(path);
    if (all_integers(path_tokens))
      lines.fail(record.line, "expected an image path, found ", quoted(path),
                 "; the previous record has more face lines than its count says");
    const size_t slash = path.find('/');
    if (slash == 0 || slash == std::string_view::npos || slash + 1 == path.size())
      lines.fail(record.line, "expected an image path 'event/name.jpg', found ", quoted(path));
    // Exactly one folder level, and no '.' or '..' for it or the name: an annotation file names images inside
    // its data set's images folder, never beside or above it.
    const std::string_view event = path.substr(0, slash), name = path.substr(slash + 1);
    if (name.find('/') != std::string_view::npos || event == "." || event == ".." || name == "." || name == "..")
      lines.fail(record.line, "expected an image path 'event/name.jpg' inside the images folder, found ",
                 quoted(path));
    record.path = std::string(path);

    if (lines.at_end()) lines.fail(record.line, "the file ends after the image path: the face count is missing");
    const int64_t count_line = lines.line_number();
    const std::string_view count_text = lines.take();
    const auto count_tokens = tokens(count_text);
    int64_t count = 0;
    if (count_tokens.size() != 1 || !parse_integer(count_tokens[0], count))
      lines.fail(count_line, "expected the face count of '", record.path, "', found ", quoted(count_text));
    if (count < 0) lines.fail(count_line, "negative face count ", count, " for '", record.path, "'");

    if (count == 0) {
      // The official files follow a zero count with one all-zero line; a parser that does not consume it
      // reads it as the next image path and loses its place.
      if (lines.at_end())
        lines.fail(count_line, "the file ends after the zero face count of '", record.path,
                   "': the dummy line of ten zeros is missing");
      const int64_t dummy_line = lines.line_number();
      const std::string_view dummy = lines.take();
      const WiderFace f = parse_face(lines, dummy_line, dummy,
                                     "the dummy line that follows the zero face count on line " +
                                         std::to_string(count_line));
      if (!(f == WiderFace{}))
        lines.fail(dummy_line, "the face count on line ", count_line, " is 0, but the line that follows holds a face ",
                   quoted(dummy), " (a zero-face record has one all-zero dummy line)");
    } else {
      // Guards the reserve against an absurd count; the loop reports the real shortfall.
      record.faces.reserve(static_cast<size_t>(std::min<int64_t>(count, 1 << 16)));
      for (int64_t k = 0; k < count; ++k) {
        if (lines.at_end())
          lines.fail(count_line, "the file ends inside the record of '", record.path, "': the count says ", count,
                     " faces, ", k, " face lines follow");
        const int64_t face_line = lines.line_number();
        const std::string_view line = lines.take();
        const WiderFace f = parse_face(lines, face_line, line,
                                       "face " + std::to_string(k + 1) + " of " + std::to_string(count) +
                                           " (count on line " + std::to_string(count_line) + ")");
        record.faces.push_back(f);
        if (f.trainable()) record.boxes.push_back(f.box());
      }
    }
    out.records.push_back(std::move(record));
  }
  out.stats = wider_stats(out.records);
  return out;
}

WiderAnnotations read_wider_annotations(const std::string& path) {
  return parse_wider_annotations(io::read_file(path, "[wider] "), path);
}

WiderDataset::WiderDataset(const std::string& root, const std::string& split, const WiderOptions& options) {
  namespace fs = std::filesystem;
  ISRN_CHECK(split == "train" || split == "val", "[WiderDataset] split must be \"train\" or \"val\", got \"", split,
             "\" (the test split has no released annotations)");
  annotation_path_ = (fs::path(root) / "wider_face_split" / ("wider_face_" + split + "_bbx_gt.txt")).string();
  image_dir_ = (fs::path(root) / ("WIDER_" + split) / "images").string();
  ISRN_CHECK(fs::is_directory(root), "[WiderDataset] ", root, ": no such folder");
  WiderAnnotations annotations = read_wider_annotations(annotation_path_);
  file_stats_ = annotations.stats;

  std::set<std::string> wanted(options.events.begin(), options.events.end());
  if (!wanted.empty()) {
    std::set<std::string> present;
    for (const WiderRecord& r : annotations.records) present.insert(r.event());
    for (const std::string& e : wanted)
      ISRN_CHECK(present.count(e) != 0, "[WiderDataset] event '", e, "' does not occur in ", annotation_path_);
  }
  for (WiderRecord& r : annotations.records) {
    if (!wanted.empty() && wanted.count(r.event()) == 0) continue;
    if (options.skip_missing_images) {
      std::error_code ec;
      if (!fs::is_regular_file(fs::path(image_dir_) / r.path, ec)) {
        ++missing_images_;
        continue;
      }
    }
    records_.push_back(std::move(r));
  }
  stats_ = wider_stats(records_);
}

const WiderRecord& WiderDataset::record(size_t index) const {
  ISRN_CHECK(index < records_.size(), "[WiderDataset] index ", index, " out of range for ", records_.size(),
             " records");
  return records_[index];
}

std::string WiderDataset::image_path(size_t index) const {
  return (std::filesystem::path(image_dir_) / record(index).path).string();
}

Sample WiderDataset::get(size_t index) const {
  const WiderRecord& r = record(index);
  Sample s;
  s.image = read_image(image_path(index));
  s.boxes = r.boxes;
  s.id = r.id();
  return s;
}

}  // namespace isrn::data
