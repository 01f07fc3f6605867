#pragma once
// 8-bit RGB images on the host: decoding and encoding (stb_image), bilinear resizing with OpenCV's
// pixel-centre convention, flipping, and conversion to the network's normalized float input.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/tensor.hpp"

namespace isrn::data {

// Row-major, interleaved RGB (height × width × 3).
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int64_t height, int64_t width, uint8_t fill = 0);

  bool empty() const { return height == 0 || width == 0; }
  uint8_t* at(int64_t y, int64_t x) { return pixels.data() + (y * width + x) * 3; }
  const uint8_t* at(int64_t y, int64_t x) const { return pixels.data() + (y * width + x) * 3; }
};

// Larger images are refused before decoding: 2^28 pixels (16384 x 16384, 768 MiB as RGB) is beyond any camera's
// photo, so a header declaring more is corrupt or hostile.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// JPEG, PNG, BMP (anything stb_image reads), converted to RGB. A missing, truncated or corrupt file, or one
// declaring more than kMaxImagePixels, throws an Error naming the file and the reason.
Image read_image(const std::string& path);
// The same from bytes in memory; `name` is what the error messages call them.
Image decode_image(const uint8_t* data, size_t size, const std::string& name);

// By extension: .png, .jpg/.jpeg (quality 1–100), .bmp. Written atomically.
void write_image(const std::string& path, const Image& image, int jpeg_quality = 95);

// cv2.resize(INTER_LINEAR) geometry: output pixel centre (x + 0.5)·(w_in / w_out) − 0.5, clamped at the
// borders, in float (not OpenCV's 11-bit fixed point, so values may differ from OpenCV's by one level).
Image resize_bilinear(const Image& image, int64_t height, int64_t width);
// The window [top, top + height) × [left, left + width) of resize_bilinear(image, scaled_height,
// scaled_width), with `fill` where the window leaves the resized image; only the window is computed, so a
// crop of a large upscale (data-anchor-sampling) costs the crop, not the upscale.
Image resize_window_bilinear(const Image& image, int64_t scaled_height, int64_t scaled_width, int64_t top,
                             int64_t left, int64_t height, int64_t width, const std::array<uint8_t, 3>& fill);
Image flip_horizontal(const Image& image);

inline constexpr std::array<float, 3> kImageNetMean{0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd{0.229f, 0.224f, 0.225f};

// The network input of SPEC §9: float32 [3, H, W] on the CPU, (pixel / 255 − mean) / std per channel.
Tensor to_tensor(const Image& image, const std::array<float, 3>& mean = kImageNetMean,
                 const std::array<float, 3>& std = kImageNetStd);
// The same written into dst (3 planes of plane_stride floats, rows of row_stride floats), for batching
// images of different sizes into one zero-padded tensor.
void normalize_into(const Image& image, float* dst, int64_t plane_stride, int64_t row_stride,
                    const std::array<float, 3>& mean = kImageNetMean, const std::array<float, 3>& std = kImageNetStd);
// One image of a zero-padded batch: dst is a 3 × height × width slot (height and width at least the image's);
// the image is normalized into its top left and every other element set to 0 (the mean pixel after
// normalization). Every element is written, so the slot may hold anything before.
void normalize_padded_into(const Image& image, float* dst, int64_t height, int64_t width);

}  // namespace isrn::data
