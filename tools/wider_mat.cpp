#include "wider_mat.hpp"

#include <matio.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>

#include "isrn/core/error.hpp"

namespace isrn::eval {

namespace {

// matio reports problems through a global logger (stderr by default); keep its last message for our Error
// instead, so a failure is one line that names the file.
thread_local std::string last_matio_message;

void capture_matio_log(int /*level*/, char* message) { last_matio_message = message ? message : ""; }

void install_matio_logger() {
  static std::once_flag once;
  std::call_once(once, [] { Mat_LogInitFunc("isrn", capture_matio_log); });
}

struct MatCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFreer {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using MatFile = std::unique_ptr<mat_t, MatCloser>;
using MatVar = std::unique_ptr<matvar_t, VarFreer>;

size_t element_count(const matvar_t* v) {
  size_t n = 1;
  for (int i = 0; i < v->rank; ++i) n *= v->dims[i];
  return n;
}

std::string dims_text(const matvar_t* v) {
  std::string s;
  for (int i = 0; i < v->rank; ++i) {
    if (i > 0) s += 'x';
    s += std::to_string(v->dims[i]);
  }
  return s;
}

bool is_vector(const matvar_t* v) {
  int long_dims = 0;
  for (int i = 0; i < v->rank; ++i) long_dims += v->dims[i] != 1;
  return element_count(v) == 0 || long_dims <= 1;
}

bool is_numeric(const matvar_t* v) {
  return v->class_type >= MAT_C_DOUBLE && v->class_type <= MAT_C_UINT64 && !v->isComplex;
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {
    install_matio_logger();
    std::error_code ec;
    ISRN_CHECK(std::filesystem::is_regular_file(path_, ec), where(), "no such file");
    last_matio_message.clear();
    file_.reset(Mat_Open(path_.c_str(), MAT_ACC_RDONLY));
    ISRN_CHECK(file_ != nullptr, where(), "cannot open as a MATLAB file",
               last_matio_message.empty() ? "" : ": " + last_matio_message);
  }

  std::string where() const { return "[read_wider_mat] " + path_ + ": "; }

  // A top-level variable, or null when absent.
  MatVar read(const char* name, bool required) {
    last_matio_message.clear();
    MatVar v(Mat_VarRead(file_.get(), name));
    ISRN_CHECK(v || !required, where(), "no variable '", name, "'",
               last_matio_message.empty() ? "" : " (" + last_matio_message + ")");
    return v;
  }

  // A cell vector's elements (N x 1, 1 x N or empty).
  std::vector<const matvar_t*> cells(const matvar_t* v, const std::string& what) const {
    ISRN_CHECK(v->class_type == MAT_C_CELL && is_vector(v), where(), what, " is not a cell vector (class ",
               v->class_type, ", ", dims_text(v), ")");
    std::vector<const matvar_t*> out;
    for (size_t i = 0; i < element_count(v); ++i) {
      const matvar_t* c = Mat_VarGetCell(const_cast<matvar_t*>(v), static_cast<int>(i));
      ISRN_CHECK(c != nullptr, where(), what, "{", i + 1, "} is missing");
      out.push_back(c);
    }
    return out;
  }

  std::string text(const matvar_t* v, const std::string& what) const {
    ISRN_CHECK(v->class_type == MAT_C_CHAR && is_vector(v), where(), what, " is not a character row (class ",
               v->class_type, ", ", dims_text(v), ")");
    const size_t n = element_count(v);
    std::string s;
    if (n == 0) return s;
    ISRN_CHECK(v->data != nullptr, where(), what, " has no data");
    if (v->data_size == 1) {
      s.assign(static_cast<const char*>(v->data), n);
    } else if (v->data_size == 2) {
      for (size_t i = 0; i < n; ++i) {
        const uint16_t c = static_cast<const uint16_t*>(v->data)[i];
        ISRN_CHECK(c < 128, where(), what, " holds a non-ASCII character (", c, ")");
        s += static_cast<char>(c);
      }
    } else {
      ISRN_CHECK(false, where(), what, " has ", v->data_size, "-byte characters");
    }
    return s;
  }

  // Element i of a numeric array, by its storage type (matio widens the official uint8/uint16 storage of
  // double-class arrays to double, but an integer-class array keeps its own type).
  double number(const matvar_t* v, size_t i, const std::string& what) const {
    ISRN_CHECK(v->data != nullptr, where(), what, " has no data");
    switch (v->data_type) {
      case MAT_T_DOUBLE: return static_cast<const double*>(v->data)[i];
      case MAT_T_SINGLE: return static_cast<const float*>(v->data)[i];
      case MAT_T_INT8: return static_cast<const int8_t*>(v->data)[i];
      case MAT_T_UINT8: return static_cast<const uint8_t*>(v->data)[i];
      case MAT_T_INT16: return static_cast<const int16_t*>(v->data)[i];
      case MAT_T_UINT16: return static_cast<const uint16_t*>(v->data)[i];
      case MAT_T_INT32: return static_cast<const int32_t*>(v->data)[i];
      case MAT_T_UINT32: return static_cast<const uint32_t*>(v->data)[i];
      case MAT_T_INT64: return static_cast<double>(static_cast<const int64_t*>(v->data)[i]);
      case MAT_T_UINT64: return static_cast<double>(static_cast<const uint64_t*>(v->data)[i]);
      default: ISRN_CHECK(false, where(), what, " has unsupported storage type ", v->data_type);
    }
    return 0;  // unreachable
  }

  std::vector<FaceBox> boxes(const matvar_t* v, const std::string& what) const {
    ISRN_CHECK(is_numeric(v), where(), what, " is not a real numeric array (class ", v->class_type, ")");
    const size_t n = element_count(v);
    if (n == 0) return {};
    ISRN_CHECK(v->rank == 2 && v->dims[1] == 4, where(), what, " is ", dims_text(v), ", expected N x 4 (x y w h)");
    const size_t rows = v->dims[0];
    std::vector<FaceBox> out(rows);
    for (size_t r = 0; r < rows; ++r) {  // column-major
      out[r].x = number(v, r, what);
      out[r].y = number(v, r + rows, what);
      out[r].w = number(v, r + 2 * rows, what);
      out[r].h = number(v, r + 3 * rows, what);
    }
    return out;
  }

  std::vector<int64_t> keep_list(const matvar_t* v, size_t faces, const std::string& what) const {
    ISRN_CHECK(is_numeric(v) && is_vector(v), where(), what, " is not a numeric vector (class ", v->class_type,
               ", ", dims_text(v), ")");
    std::vector<int64_t> out;
    for (size_t i = 0; i < element_count(v); ++i) {
      const double k = number(v, i, what);
      ISRN_CHECK(k == std::floor(k) && k >= 1 && k <= static_cast<double>(faces), where(), what, " entry ", i + 1,
                 " is ", k, ", not a face index in 1..", faces);
      out.push_back(static_cast<int64_t>(k) - 1);
    }
    return out;
  }

 private:
  std::string path_;
  MatFile file_;
};

}  // namespace

WiderMat read_wider_mat(const std::string& path) {
  Reader reader(path);
  WiderMat mat;
  const MatVar event_list = reader.read("event_list", true);
  const MatVar file_list = reader.read("file_list", true);
  const MatVar face_bbx_list = reader.read("face_bbx_list", true);
  const MatVar gt_list = reader.read("gt_list", false);

  const auto events = reader.cells(event_list.get(), "event_list");
  const auto files = reader.cells(file_list.get(), "file_list");
  const auto boxes = reader.cells(face_bbx_list.get(), "face_bbx_list");
  ISRN_CHECK(files.size() == events.size() && boxes.size() == events.size(), reader.where(), "event_list has ",
             events.size(), " events, file_list ", files.size(), ", face_bbx_list ", boxes.size());
  std::vector<const matvar_t*> keeps;
  if (gt_list) {
    keeps = reader.cells(gt_list.get(), "gt_list");
    ISRN_CHECK(keeps.size() == events.size(), reader.where(), "gt_list has ", keeps.size(), " events, event_list ",
               events.size());
    mat.has_keep_lists = true;
  }

  for (size_t e = 0; e < events.size(); ++e) {
    const std::string ev = "{" + std::to_string(e + 1) + "}";
    mat.events.push_back(reader.text(events[e], "event_list" + ev));
    const auto names = reader.cells(files[e], "file_list" + ev);
    const auto face_cells = reader.cells(boxes[e], "face_bbx_list" + ev);
    ISRN_CHECK(face_cells.size() == names.size(), reader.where(), "event ", e + 1, " has ", names.size(),
               " images in file_list but ", face_cells.size(), " in face_bbx_list");
    std::vector<const matvar_t*> keep_cells;
    if (gt_list) {
      keep_cells = reader.cells(keeps[e], "gt_list" + ev);
      ISRN_CHECK(keep_cells.size() == names.size(), reader.where(), "event ", e + 1, " has ", names.size(),
                 " images in file_list but ", keep_cells.size(), " in gt_list");
    }
    mat.files.emplace_back();
    mat.faces.emplace_back();
    mat.keep.emplace_back();
    for (size_t j = 0; j < names.size(); ++j) {
      const std::string im = ev + "{" + std::to_string(j + 1) + "}";
      mat.files.back().push_back(reader.text(names[j], "file_list" + im));
      mat.faces.back().push_back(reader.boxes(face_cells[j], "face_bbx_list" + im));
      if (gt_list)
        mat.keep.back().push_back(reader.keep_list(keep_cells[j], mat.faces.back().back().size(), "gt_list" + im));
    }
  }
  return mat;
}

GroundTruth read_wider_ground_truth(const std::string& dir) {
  const std::string where = "[read_wider_ground_truth] ";
  std::error_code ec;
  ISRN_CHECK(std::filesystem::is_directory(dir, ec), where, dir, ": not a folder");
  const auto file = [&](const std::string& name) { return (std::filesystem::path(dir) / name).string(); };
  const WiderMat all = read_wider_mat(file("wider_face_val.mat"));

  GroundTruth truth;
  truth.settings = {"easy", "medium", "hard"};
  for (size_t e = 0; e < all.events.size(); ++e)
    for (size_t j = 0; j < all.files[e].size(); ++j) {
      GroundTruthImage im;
      im.id = all.events[e] + "/" + all.files[e][j];
      im.faces = all.faces[e][j];
      truth.images.push_back(std::move(im));
    }

  for (const std::string& setting : truth.settings) {
    const std::string path = file("wider_" + setting + "_val.mat");
    const WiderMat mat = read_wider_mat(path);
    ISRN_CHECK(mat.has_keep_lists, where, path, ": no gt_list");
    // evaluation.m takes the boxes from the setting's file and the images from wider_face_val.mat; the official
    // files agree, and one GroundTruth needs them to.
    ISRN_CHECK(mat.events == all.events && mat.files == all.files, where, path,
               ": its events or images differ from wider_face_val.mat");
    size_t i = 0;
    for (size_t e = 0; e < mat.events.size(); ++e)
      for (size_t j = 0; j < mat.files[e].size(); ++j, ++i) {
        const std::vector<FaceBox>& a = mat.faces[e][j];
        const std::vector<FaceBox>& b = truth.images[i].faces;
        bool same = a.size() == b.size();
        for (size_t k = 0; same && k < a.size(); ++k)
          same = a[k].x == b[k].x && a[k].y == b[k].y && a[k].w == b[k].w && a[k].h == b[k].h;
        ISRN_CHECK(same, where, path, ": the boxes of ", truth.images[i].id, " differ from wider_face_val.mat");
        truth.images[i].keep.push_back(mat.keep[e][j]);
      }
  }
  return truth;
}

}  // namespace isrn::eval
