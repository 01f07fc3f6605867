#pragma once
// isrn::Error and the checking macros. ISRN_CHECK validates user input in every build; the message
// is assembled only on failure, from any streamable pieces.
#include <sstream>
#include <stdexcept>
#include <string>

namespace isrn {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace isrn

#define ISRN_CHECK(cond, ...)                                                                      \
  do {                                                                                             \
    if (!(cond)) [[unlikely]]                                                                      \
      ::isrn::detail::throw_error(__FILE__, __LINE__, ::isrn::detail::concat(__VA_ARGS__));      \
  } while (0)

// Invariants of the library itself: a failure here is a bug in isrn, not in the caller.
#define ISRN_ASSERT(cond, ...)                                                                     \
  do {                                                                                             \
    if (!(cond)) [[unlikely]]                                                                      \
      ::isrn::detail::throw_error(                                                                 \
          __FILE__, __LINE__,                                                                      \
          ::isrn::detail::concat("internal error: ", #cond, " ", ##__VA_ARGS__));                 \
  } while (0)
