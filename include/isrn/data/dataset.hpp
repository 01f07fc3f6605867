#pragma once
// A data set is an indexable collection of samples; the loader (loader.hpp) draws from it with worker
// threads, so get() must be safe to call from several threads at once.
#include <cstddef>

#include "isrn/data/sample.hpp"

namespace isrn::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  // The index-th sample, decoded; thread-safe. An unreadable image throws an Error naming the file.
  virtual Sample get(size_t index) const = 0;
};

}  // namespace isrn::data
