// MS-COCO annotation json (isrn::data::parse_coco).
#include "fuzz_target.hpp"
#include "isrn/data/coco.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  isrn::fuzz::accept_only_isrn_errors([&] {
    const auto parsed = isrn::data::parse_coco(text, "fuzz");
    int64_t kept = 0;
    for (const auto& image : parsed.images) {
      kept += static_cast<int64_t>(image.objects.size());
      for (const auto& object : image.objects) {
        ISRN_FUZZ_EXPECT(object.label >= 0 && object.label < static_cast<int64_t>(parsed.categories.size()),
                         "label outside the kept categories");
        ISRN_FUZZ_EXPECT(object.box.x2 > object.box.x1 && object.box.y2 > object.box.y1, "an empty kept box");
      }
    }
    ISRN_FUZZ_EXPECT(kept == parsed.stats.boxes(), "stats disagree with the kept objects");
  });
  return 0;
}
