#include "isrn/data/coco.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "isrn/core/error.hpp"
#include "isrn/data/image.hpp"
#include "isrn/io/file.hpp"

namespace isrn::data {

std::vector<Box> CocoImage::boxes() const {
  std::vector<Box> out;
  out.reserve(objects.size());
  for (const CocoObject& o : objects) out.push_back(o.box);
  return out;
}

std::string CocoImage::stem() const {
  const size_t slash = file_name.rfind('/');
  const size_t dot = file_name.rfind('.');
  return dot != std::string::npos && (slash == std::string::npos || dot > slash) ? file_name.substr(0, dot)
                                                                                  : file_name;
}

namespace {

using json = nlohmann::json;

// Reads typed fields and names the json path of anything wrong.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  template <typename... Args>
  [[noreturn]] void fail(const std::string& path, const Args&... args) const {
    detail::throw_error(__FILE__, __LINE__, detail::concat("[coco] ", source_, ": ", path, ": ", args...));
  }

  static std::string kind(const json& v) {
    switch (v.type()) {
      case json::value_t::number_integer:
      case json::value_t::number_unsigned: return "an integer";
      case json::value_t::number_float: return "a floating-point number";
      case json::value_t::string: return "a string";
      case json::value_t::boolean: return "a boolean";
      case json::value_t::array: return "an array";
      case json::value_t::object: return "an object";
      case json::value_t::null: return "null";
      default: return v.type_name();
    }
  }

  const json& field(const json& object, const char* key, const std::string& path) const {
    if (!object.is_object()) fail(path, "expected an object, found ", kind(object));
    const auto it = object.find(key);
    if (it == object.end()) fail(path, "missing field '", key, "'");
    return *it;
  }
  const json* optional_field(const json& object, const char* key) const {
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  const json& array(const json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "expected an array, found ", kind(v));
    return v;
  }
  int64_t integer(const json& v, const std::string& path) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(path, "integer beyond the int64 range");
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (!v.is_number_integer()) fail(path, "expected an integer, found ", kind(v));
    return v.get<int64_t>();
  }
  double number(const json& v, const std::string& path) const {
    if (!v.is_number()) fail(path, "expected a number, found ", kind(v));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(path, "expected a finite number, found ", d);
    return d;
  }
  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string, found ", kind(v));
    return v.get<std::string>();
  }

 private:
  std::string source_;
};

std::string at(const std::string& array, size_t i) { return array + "[" + std::to_string(i) + "]"; }

}  // namespace

CocoAnnotations parse_coco(const std::string& text, const std::string& source, const CocoFilter& filter) {
  const Reader r(source);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double's range
    ISRN_CHECK(false, "[coco] ", source, ": invalid JSON: ", e.what());
  }
  if (!doc.is_object()) r.fail("(top level)", "expected an object, found ", Reader::kind(doc));

  // Categories: every one defined, then the kept ones.
  std::map<int64_t, CocoCategory> defined;  // sorted by id: the label order
  std::map<int64_t, size_t> category_index;
  const json& categories = r.array(r.field(doc, "categories", "(top level)"), "categories");
  for (size_t i = 0; i < categories.size(); ++i) {
    const std::string path = at("categories", i);
    CocoCategory c;
    c.id = r.integer(r.field(categories[i], "id", path), path + ".id");
    c.name = r.string(r.field(categories[i], "name", path), path + ".name");
    if (const json* s = r.optional_field(categories[i], "supercategory")) c.supercategory = r.string(*s, path + ".supercategory");
    if (!category_index.emplace(c.id, i).second)
      r.fail(path + ".id", c.id, " is also the id of ", at("categories", category_index.at(c.id)));
    defined.emplace(c.id, std::move(c));
  }
  std::set<int64_t> kept_ids;
  for (const std::string& name : filter.category_names) {
    const auto it = std::find_if(defined.begin(), defined.end(), [&](const auto& kv) { return kv.second.name == name; });
    ISRN_CHECK(it != defined.end(), "[coco] ", source, ": the category filter names '", name,
               "', which the file does not define");
    kept_ids.insert(it->first);
  }
  for (int64_t id : filter.category_ids) {
    ISRN_CHECK(defined.count(id) != 0, "[coco] ", source, ": the category filter lists id ", id,
               ", which the file does not define");
    kept_ids.insert(id);
  }
  const bool keep_all = filter.category_names.empty() && filter.category_ids.empty();
  CocoAnnotations out;
  std::unordered_map<int64_t, int64_t> label_of;
  for (const auto& [id, c] : defined) {
    if (!keep_all && kept_ids.count(id) == 0) continue;
    label_of.emplace(id, static_cast<int64_t>(out.categories.size()));
    out.categories.push_back(c);
  }

  // Images, in file order.
  std::vector<CocoImage> images;
  std::unordered_map<int64_t, size_t> image_index;
  const json& image_array = r.array(r.field(doc, "images", "(top level)"), "images");
  images.reserve(image_array.size());
  for (size_t i = 0; i < image_array.size(); ++i) {
    const std::string path = at("images", i);
    CocoImage image;
    image.id = r.integer(r.field(image_array[i], "id", path), path + ".id");
    image.file_name = r.string(r.field(image_array[i], "file_name", path), path + ".file_name");
    if (image.file_name.empty()) r.fail(path + ".file_name", "empty file name");
    // Relative to the image folder and inside it: an annotation file names its own images, not others.
    const std::filesystem::path relative(image.file_name);
    const bool climbs = std::any_of(relative.begin(), relative.end(), [](const auto& part) { return part == ".."; });
    if (relative.is_absolute() || climbs)
      r.fail(path + ".file_name", "'", image.file_name, "' leaves the image folder");
    image.width = r.integer(r.field(image_array[i], "width", path), path + ".width");
    image.height = r.integer(r.field(image_array[i], "height", path), path + ".height");
    if (image.width <= 0 || image.height <= 0)
      r.fail(path, "image size ", image.width, "x", image.height, " must be positive");
    if (!image_index.emplace(image.id, i).second)
      r.fail(path + ".id", image.id, " is also the id of ", at("images", image_index.at(image.id)));
    images.push_back(std::move(image));
  }

  // Annotations: every one is validated, whatever the filter, so a broken file fails the same way for all users.
  const json& annotations = r.array(r.field(doc, "annotations", "(top level)"), "annotations");
  for (size_t i = 0; i < annotations.size(); ++i) {
    const std::string path = at("annotations", i);
    const json& a = annotations[i];
    CocoObject o;
    o.id = r.integer(r.field(a, "id", path), path + ".id");
    const int64_t image_id = r.integer(r.field(a, "image_id", path), path + ".image_id");
    o.category_id = r.integer(r.field(a, "category_id", path), path + ".category_id");
    const json& bbox = r.array(r.field(a, "bbox", path), path + ".bbox");
    if (bbox.size() != 4) r.fail(path + ".bbox", "expected 4 numbers [x, y, w, h], found ", bbox.size());
    double xywh[4];
    for (size_t k = 0; k < 4; ++k) xywh[k] = r.number(bbox[k], at(path + ".bbox", k));
    bool crowd = false;
    if (const json* c = r.optional_field(a, "iscrowd")) {
      if (c->is_boolean()) {
        crowd = c->get<bool>();
      } else {
        const int64_t flag = r.integer(*c, path + ".iscrowd");
        if (flag != 0 && flag != 1) r.fail(path + ".iscrowd", "expected 0 or 1, found ", flag);
        crowd = flag == 1;
      }
    }
    const auto image_it = image_index.find(image_id);
    if (image_it == image_index.end()) r.fail(path + ".image_id", "no image has id ", image_id);
    if (defined.count(o.category_id) == 0) r.fail(path + ".category_id", "no category has id ", o.category_id);

    ++out.stats.annotations;
    const auto label = label_of.find(o.category_id);
    if (label == label_of.end()) {
      ++out.stats.category_dropped;
    } else if (crowd) {
      ++out.stats.crowd_dropped;
    } else if (xywh[2] <= 0 || xywh[3] <= 0) {
      ++out.stats.zero_size_dropped;
    } else {
      o.label = label->second;
      o.box = Box{static_cast<float>(xywh[0]), static_cast<float>(xywh[1]), static_cast<float>(xywh[0] + xywh[2]),
                  static_cast<float>(xywh[1] + xywh[3])};
      images[image_it->second].objects.push_back(o);
    }
  }

  for (CocoImage& image : images) {
    if (image.objects.empty()) {
      ++out.stats.images_without_boxes;
      if (filter.skip_images_without_boxes) continue;
    }
    out.images.push_back(std::move(image));
  }
  out.stats.images = static_cast<int64_t>(out.images.size());
  return out;
}

CocoAnnotations read_coco(const std::string& json_path, const CocoFilter& filter) {
  return parse_coco(io::read_file(json_path, "[coco] "), json_path, filter);
}

CocoDataset::CocoDataset(const std::string& image_dir, const std::string& json_path, const CocoFilter& filter)
    : image_dir_(image_dir) {
  ISRN_CHECK(std::filesystem::is_directory(image_dir), "[CocoDataset] ", image_dir, ": no such folder");
  annotations_ = read_coco(json_path, filter);
}

const CocoImage& CocoDataset::image(size_t index) const {
  ISRN_CHECK(index < annotations_.images.size(), "[CocoDataset] index ", index, " out of range for ",
             annotations_.images.size(), " images");
  return annotations_.images[index];
}

std::string CocoDataset::image_path(size_t index) const {
  return (std::filesystem::path(image_dir_) / image(index).file_name).string();
}

Sample CocoDataset::get(size_t index) const {
  const CocoImage& info = image(index);
  Sample s;
  s.image = read_image(image_path(index));
  s.boxes = info.boxes();
  s.id = info.stem();
  return s;
}

}  // namespace isrn::data
