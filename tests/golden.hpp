#pragma once
// Reads the golden files written by data_tools/golden_*.py (safetensors layout) into host tensors.
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "isrn/isrn.hpp"

namespace isrn::test {

struct Golden {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  const Tensor& operator[](const std::string& name) const {
    auto it = tensors.find(name);
    ISRN_CHECK(it != tensors.end(), "[golden] no tensor '", name, "'");
    return it->second;
  }
  double number(const std::string& key) const { return std::stod(metadata.at(key)); }
};

inline Golden load_golden(const std::string& name) {
  const std::string path = std::string(ISRN_GOLDEN_DIR) + "/" + name + ".safetensors";
  std::ifstream in(path, std::ios::binary);
  ISRN_CHECK(in.good(), "[golden] cannot open ", path, " (regenerate with data_tools/make_golden.sh)");
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  const std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto j = nlohmann::json::parse(header);
  Golden g;
  static const std::map<std::string, DType> kinds = {{"F32", DType::Float32}, {"F64", DType::Float64},
                                                     {"I32", DType::Int32},   {"I64", DType::Int64},
                                                     {"U8", DType::UInt8},    {"BOOL", DType::Bool}};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      for (auto m = it.value().begin(); m != it.value().end(); ++m) g.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    Shape shape = it.value()["shape"].get<std::vector<int64_t>>();
    const auto offsets = it.value()["data_offsets"].get<std::vector<size_t>>();
    Tensor t = empty(shape, TensorOptions(kinds.at(it.value()["dtype"].get<std::string>())));
    ISRN_CHECK(offsets[1] <= blob.size() && offsets[1] - offsets[0] == t.numel() * t.element_size(),
               "[golden] ", path, ": tensor '", it.key(), "' is truncated");
    if (t.numel() > 0) std::memcpy(t.raw_data(), blob.data() + offsets[0], offsets[1] - offsets[0]);
    g.tensors[it.key()] = t;
  }
  return g;
}

}  // namespace isrn::test
