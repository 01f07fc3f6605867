#pragma once
// A typed reader for JSON configuration files. Keys are dotted paths into nested objects
// ("train.optimizer.lr"). Every get() records the key it read, so that after all the code has read
// its settings, check_no_unknown_keys() can reject a file holding a key nobody read: a typo such
// as "learning_rat" fails loudly instead of silently leaving the default in place.
#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace isrn::io {

// The value types a config key can hold; get() is instantiated for each in src/io/json_config.cpp.
template <typename T>
concept ConfigValue = std::same_as<T, bool> || std::same_as<T, int64_t> || std::same_as<T, double> ||
                      std::same_as<T, std::string> || std::same_as<T, std::vector<double>> ||
                      std::same_as<T, std::vector<int64_t>>;

class JsonConfig {
 public:
  // Parses JSON text (comments allowed) whose top level is an object. `source` names the text in
  // error messages. A syntax error throws isrn::Error with the line and column.
  static JsonConfig parse(const std::string& text, const std::string& source = "<string>");
  static JsonConfig from_file(const std::string& path);

  JsonConfig(const JsonConfig& other);
  JsonConfig& operator=(const JsonConfig& other);
  JsonConfig(JsonConfig&&) noexcept;
  JsonConfig& operator=(JsonConfig&&) noexcept;
  ~JsonConfig();

  // Whether the key is present (does not count as reading it).
  bool has(const std::string& key) const;

  // The value at `key`, or `fallback` when the key is absent. A present key of another type throws
  // isrn::Error naming the key and the expected and found types; bool is never read as a number, a
  // floating-point number never as an integer, an integer is read as a double.
  template <ConfigValue T>
  T get(const std::string& key, const T& fallback) const;
  // The value at `key`, which must be present.
  template <ConfigValue T>
  T get(const std::string& key) const;

  // Throws isrn::Error listing every leaf key of the file that no get() has read.
  void check_no_unknown_keys() const;
  // The leaf keys of the file (dotted; arrays are leaves), sorted.
  std::vector<std::string> keys() const;

  // The whole document as indented JSON: what gets stored in a checkpoint's metadata.
  std::string to_string() const;

 private:
  struct Impl;
  explicit JsonConfig(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace isrn::io
