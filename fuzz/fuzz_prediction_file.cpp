// WIDER prediction files, as isrn-eval reads them (isrn::eval::read_prediction_file), and the evaluation of
// what they hold.
#include <cmath>

#include "fuzz_target.hpp"
#include "isrn/eval/wider_eval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const isrn::fuzz::InputFile input(".txt");
  const std::string& path = input.write(data, size);
  isrn::fuzz::accept_only_isrn_errors([&] {
    const auto file = isrn::eval::read_prediction_file(path);
    // Score what was read against one face, so the evaluator's arithmetic sees every value the reader lets
    // through (it refuses non-finite ones with an Error of its own).
    const isrn::eval::ImageFaces truth{"event/image", {isrn::eval::FaceBox{10, 10, 20, 20}}};
    const auto result = isrn::eval::evaluate_all_faces({truth}, {{"event/image", file.detections}});
    for (const auto& setting : result.settings)
      ISRN_FUZZ_EXPECT(std::isnan(setting.ap) || (setting.ap >= 0 && setting.ap <= 1), "AP outside [0, 1]");
  });
  return 0;
}
