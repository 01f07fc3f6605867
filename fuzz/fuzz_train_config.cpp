// Training configuration files (isrn::io::JsonConfig and isrn::train::TrainConfig::from_json).
#include "fuzz_target.hpp"
#include "isrn/io/json_config.hpp"
#include "isrn/train/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  isrn::fuzz::accept_only_isrn_errors([&] {
    const auto json = isrn::io::JsonConfig::parse(text, "fuzz");
    (void)json.keys();
    const std::string dumped = json.to_string();
    // The document isrn writes back (into checkpoints) must read again as the same document.
    ISRN_FUZZ_EXPECT(isrn::io::JsonConfig::parse(dumped, "dumped").to_string() == dumped,
                     "to_string does not read back");
    const auto config = isrn::train::TrainConfig::from_json(json);
    // An accepted config is written into every checkpoint and read back on resume: the round trip must hold.
    const std::string written = config.to_json();
    const auto again = isrn::train::TrainConfig::from_json(isrn::io::JsonConfig::parse(written, "written"));
    ISRN_FUZZ_EXPECT(again.to_json() == written, "to_json does not read back as the same config:\n" + written);
  });
  return 0;
}
