// WIDER FACE text annotations (isrn::data::parse_wider_annotations).
#include "fuzz_target.hpp"
#include "isrn/data/wider.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  isrn::fuzz::accept_only_isrn_errors([&] {
    const auto parsed = isrn::data::parse_wider_annotations(text, "fuzz");
    // What the parser accepted must be self-consistent: the counts it reports are those of its records, and
    // every training box is a trainable face's box.
    ISRN_FUZZ_EXPECT(isrn::data::wider_stats(parsed.records) == parsed.stats, "stats disagree with the records");
    for (const auto& record : parsed.records) {
      size_t trainable = 0;
      for (const auto& face : record.faces) trainable += face.trainable();
      ISRN_FUZZ_EXPECT(record.boxes.size() == trainable, record.path + ": boxes are not the trainable faces");
      for (const auto& box : record.boxes)
        ISRN_FUZZ_EXPECT(box.x2 > box.x1 && box.y2 > box.y1, record.path + ": an empty training box");
      ISRN_FUZZ_EXPECT(record.line >= 1, record.path + ": line number below 1");
    }
  });
  return 0;
}
