#include "isrn/io/json_config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "isrn/core/error.hpp"

namespace isrn::io {

namespace {

using json = nlohmann::ordered_json;  // to_string() keeps the file's key order

// JSON has one number type; a config distinguishes integers from floating-point numbers.
std::string kind_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "floating-point number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return v.type_name();
  }
}

std::vector<std::string> split_key(const std::string& key, const std::string& where) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    ISRN_CHECK(!parts.back().empty(), where, "key '", key, "' has an empty component");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

void collect_leaves(const json& object, const std::string& prefix, std::vector<std::string>& out) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.value().is_object()) {
      collect_leaves(it.value(), key, out);  // an empty object holds no setting, so it contributes nothing
    } else {
      out.push_back(key);
    }
  }
}

int64_t as_int64(const json& v, const std::string& what) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    ISRN_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), what, "integer ", u,
               " is beyond the int64 range");
    return static_cast<int64_t>(u);
  }
  return v.get<int64_t>();
}

template <typename T>
T convert(const json& v, const std::string& what) {
  auto mismatch = [&](const char* expected) {
    detail::throw_error(__FILE__, __LINE__, detail::concat(what, "expected ", expected, ", found ", kind_of(v)));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) mismatch("a boolean");
    return v.get<bool>();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (!v.is_number_integer()) mismatch("an integer");
    return as_int64(v, what);
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number()) mismatch("a number");
    return v.get<double>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) mismatch("a string");
    return v.get<std::string>();
  } else {
    using Element = typename T::value_type;
    constexpr bool integers = std::is_same_v<Element, int64_t>;
    if (!v.is_array()) mismatch(integers ? "an array of integers" : "an array of numbers");
    T out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const json& e = v[i];
      const bool fits = integers ? e.is_number_integer() : e.is_number();
      ISRN_CHECK(fits, what, "expected ", integers ? "an array of integers" : "an array of numbers", ", found ",
                 kind_of(e), " at element ", i);
      if constexpr (integers) {
        out.push_back(as_int64(e, what));
      } else {
        out.push_back(e.get<double>());
      }
    }
    return out;
  }
}

}  // namespace

struct JsonConfig::Impl {
  json document;
  std::string source;
  mutable std::set<std::string> read_keys;

  std::string where() const { return "[json_config] " + source + ": "; }

  // The value at a dotted key, or nullptr when some component is absent.
  const json* find(const std::string& key) const {
    const json* node = &document;
    std::string path;
    for (const std::string& part : split_key(key, where())) {
      ISRN_CHECK(node->is_object(), where(), "key '", key, "': '", path, "' is not an object (found ",
                 kind_of(*node), ")");
      auto it = node->find(part);
      if (it == node->end()) return nullptr;
      node = &*it;
      path = path.empty() ? part : path + "." + part;
    }
    return node;
  }
};

JsonConfig::JsonConfig(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JsonConfig::JsonConfig(const JsonConfig& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
JsonConfig& JsonConfig::operator=(const JsonConfig& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
JsonConfig::JsonConfig(JsonConfig&&) noexcept = default;
JsonConfig& JsonConfig::operator=(JsonConfig&&) noexcept = default;
JsonConfig::~JsonConfig() = default;

JsonConfig JsonConfig::parse(const std::string& text, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  // nlohmann keeps the last of duplicate keys without a word; in a config that hides a mistake.
  std::vector<std::set<std::string>> open_objects;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string key = parsed.get<std::string>();
      ISRN_CHECK(open_objects.back().insert(key).second, impl->where(), "duplicate key '", key, "'");
    }
    return true;
  };
  try {
    impl->document = json::parse(text, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double's range
    // what() reads "[json.exception.parse_error.101] parse error at line L, column C: ...": keep the rest.
    std::string message = e.what();
    const size_t tag_end = message.find("] ");
    if (tag_end != std::string::npos) message = message.substr(tag_end + 2);
    detail::throw_error(__FILE__, __LINE__, detail::concat(impl->where(), "invalid JSON: ", message));
  }
  ISRN_CHECK(impl->document.is_object(), impl->where(), "the top level is not an object (found ",
             kind_of(impl->document), ")");
  return JsonConfig(std::move(impl));
}

JsonConfig JsonConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ISRN_CHECK(in.good(), "[json_config] ", path, ": cannot open: ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  ISRN_CHECK(!in.bad(), "[json_config] ", path, ": cannot read: ", std::strerror(errno));
  return parse(text.str(), path);
}

bool JsonConfig::has(const std::string& key) const { return impl_->find(key) != nullptr; }

template <ConfigValue T>
T JsonConfig::get(const std::string& key, const T& fallback) const {
  impl_->read_keys.insert(key);
  const json* v = impl_->find(key);
  if (v == nullptr) return fallback;
  return convert<T>(*v, impl_->where() + "key '" + key + "': ");
}

template <ConfigValue T>
T JsonConfig::get(const std::string& key) const {
  impl_->read_keys.insert(key);
  const json* v = impl_->find(key);
  ISRN_CHECK(v != nullptr, impl_->where(), "required key '", key, "' is missing");
  return convert<T>(*v, impl_->where() + "key '" + key + "': ");
}

std::vector<std::string> JsonConfig::keys() const {
  std::vector<std::string> out;
  collect_leaves(impl_->document, "", out);
  std::sort(out.begin(), out.end());
  return out;
}

void JsonConfig::check_no_unknown_keys() const {
  std::string unknown;
  for (const std::string& key : keys()) {
    if (impl_->read_keys.count(key)) continue;
    unknown += unknown.empty() ? "'" : ", '";
    unknown += key + "'";
  }
  ISRN_CHECK(unknown.empty(), impl_->where(), "unknown keys (read by no code; a typo?): ", unknown);
}

std::string JsonConfig::to_string() const { return impl_->document.dump(2); }

#define ISRN_JSON_CONFIG_INSTANTIATE(T)                                   \
  template T JsonConfig::get<T>(const std::string&, const T&) const;      \
  template T JsonConfig::get<T>(const std::string&) const;
ISRN_JSON_CONFIG_INSTANTIATE(bool)
ISRN_JSON_CONFIG_INSTANTIATE(int64_t)
ISRN_JSON_CONFIG_INSTANTIATE(double)
ISRN_JSON_CONFIG_INSTANTIATE(std::string)
ISRN_JSON_CONFIG_INSTANTIATE(std::vector<double>)
ISRN_JSON_CONFIG_INSTANTIATE(std::vector<int64_t>)
#undef ISRN_JSON_CONFIG_INSTANTIATE

}  // namespace isrn::io
