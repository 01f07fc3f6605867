// Image files: JPEG, PNG, BMP through stb_image (isrn::data::decode_image), and the resizing that follows
// them into the network.
#include <algorithm>

#include "fuzz_target.hpp"
#include "isrn/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  isrn::fuzz::accept_only_isrn_errors([&] {
    const isrn::data::Image image = isrn::data::decode_image(data, size, "fuzz");
    ISRN_FUZZ_EXPECT(image.height > 0 && image.width > 0, "a decoded image without pixels");
    ISRN_FUZZ_EXPECT(image.pixels.size() == static_cast<size_t>(image.height * image.width * 3),
                     "pixel buffer of the wrong size");
    // Touch every pixel (the sanitizers check the buffer) through what the loader does next.
    const auto small = isrn::data::resize_bilinear(image, std::min<int64_t>(image.height, 8),
                                                   std::min<int64_t>(image.width, 8));
    ISRN_FUZZ_EXPECT(small.pixels.size() == static_cast<size_t>(small.height * small.width * 3),
                     "resized buffer of the wrong size");
    (void)isrn::data::flip_horizontal(image);
  });
  return 0;
}
