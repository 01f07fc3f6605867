#pragma once
// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
// {string: string}} padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.
// Python's safetensors and PyTorch read what save_safetensors writes, and load_safetensors reads theirs.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::io {

// Ordered: a file's tensors keep the order they were saved in, and the data follows that order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

// Writes `tensors` (any device, any strides: copied to the host and made contiguous) and `metadata`.
// Atomic: the bytes go to "<path>.tmp.<pid>", are fsync'ed and then renamed over `path`, so a reader
// never sees a half-written checkpoint and a failed save leaves the previous file untouched. Throws
// isrn::Error naming the path (and the OS error) on duplicate or reserved names, undefined tensors or
// any I/O failure; the temporary file is removed first.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});

struct SafetensorsFile {
  std::string path;      // where it was read from, for error messages
  NamedTensors tensors;  // host tensors, in the order of their data in the file
  Metadata metadata;

  // The tensor called `name`; throws naming the name when the file has none.
  const Tensor& at(const std::string& name) const;
};

// Reads a whole file. Every malformation (missing or short file, header length beyond the file,
// invalid JSON, unknown dtype, shape that does not match its byte range, overlapping or out-of-range
// offsets, truncated data) throws isrn::Error naming the file and what is wrong.
SafetensorsFile load_safetensors(const std::string& path);

// How a file's tensors matched a set of destinations.
struct LoadReport {
  struct Mismatch {
    std::string name;
    std::string expected;  // "float32 [64, 3, 7, 7]": the destination's dtype and shape
    std::string found;     // the same for the file's tensor
  };
  std::vector<std::string> missing;     // destinations the file lacks
  std::vector<std::string> unexpected;  // file tensors no destination asked for
  std::vector<Mismatch> mismatched;     // in both, with a different shape or dtype

  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string str() const;  // one line per problem; "all tensors matched" when ok()
};

// Copies the file tensors `source` into the destinations with the same name, in place and on each
// destination's device, under NoGradGuard (destinations are typically parameters that require grad).
// strict: throws isrn::Error with the report's text unless every destination has a same-shaped,
// same-dtype source and the source has nothing else, and then copies nothing. Non-strict: copies
// the matching ones and returns the report of the rest. Duplicate names on either side throw.
LoadReport load_into(const NamedTensors& destinations, const NamedTensors& source, bool strict);

}  // namespace isrn::io
