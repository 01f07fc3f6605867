#include "isrn/data/image.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "isrn/core/error.hpp"
#include "isrn/data/sample.hpp"
#include "isrn/io/file.hpp"

namespace isrn::data {

Image::Image(int64_t h, int64_t w, uint8_t fill) : height(h), width(w) {
  ISRN_CHECK(h >= 0 && w >= 0, "[Image] negative size ", h, "x", w);
  pixels.assign(static_cast<size_t>(h * w * 3), fill);
}

namespace {

uint32_t little_endian(const uint8_t* bytes, int count) {
  uint32_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = value << 8 | bytes[i];
  return value;
}

// The bytes an uncompressed BMP needs to hold all its pixel rows (the last row's padding may be missing), or
// 0 for a header stb_image will refuse itself. stb_image reads no compressed BMP, and it decodes the rows of a
// file cut short as black instead of failing.
uint64_t bmp_bytes_needed(const uint8_t* data, size_t size) {
  if (size < 30 || data[0] != 'B' || data[1] != 'M') return 0;
  const uint64_t offset = little_endian(data + 10, 4), header_size = little_endian(data + 14, 4);
  int64_t width = 0, height = 0;
  uint64_t bits_per_pixel = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    width = little_endian(data + 18, 2);
    height = little_endian(data + 20, 2);
    bits_per_pixel = little_endian(data + 24, 2);
  } else {
    width = static_cast<int32_t>(little_endian(data + 18, 4));
    height = static_cast<int32_t>(little_endian(data + 22, 4));  // negative: rows stored top-down
    bits_per_pixel = little_endian(data + 28, 2);
  }
  if (width <= 0 || height == 0 || bits_per_pixel == 0 || bits_per_pixel > 32) return 0;
  const uint64_t rows = static_cast<uint64_t>(height < 0 ? -height : height);
  const uint64_t row_bits = static_cast<uint64_t>(width) * bits_per_pixel;
  const uint64_t stride = (row_bits + 31) / 32 * 4;
  return std::max(offset, 14 + header_size) + stride * (rows - 1) + (row_bits + 7) / 8;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  ISRN_CHECK(size > 0, "[read_image] ", name, ": empty file");
  ISRN_CHECK(size <= static_cast<size_t>(std::numeric_limits<int>::max()), "[read_image] ", name, ": file too large (",
             size, " bytes)");
  // stb_image fills a truncated JPEG with grey and reports success; a JPEG must end with its EOI marker
  // (trailing NULs and line ends, which some writers append, are allowed). Checked here rather than in
  // read_image so that bytes from memory get the same protection as files.
  const bool jpeg = size >= 2 && data[0] == 0xFF && data[1] == 0xD8;
  if (jpeg) {
    size_t end = size;
    while (end > 2 && (data[end - 1] == '\0' || data[end - 1] == '\n' || data[end - 1] == '\r')) --end;
    ISRN_CHECK(end >= 4 && data[end - 2] == 0xFF && data[end - 1] == 0xD9, "[read_image] ", name,
               ": truncated JPEG (no end-of-image marker)");
  }
  const uint64_t bmp_needed = bmp_bytes_needed(data, size);
  ISRN_CHECK(bmp_needed <= size, "[read_image] ", name, ": truncated BMP (its pixel rows need ", bmp_needed,
             " bytes, the file has ", size, ")");
  int w = 0, h = 0, channels = 0;
  // The size in the header decides the memory stb_image allocates before it reads any pixel: refuse the
  // implausible before that (a 73-byte BMP declaring 327,680 x 768 pixels would take 750 MB).
  if (stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &channels)) {
    ISRN_CHECK(static_cast<int64_t>(w) * h <= kMaxImagePixels, "[read_image] ", name, ": ", w, "x", h,
               " pixels, more than the ", kMaxImagePixels, " isrn decodes (corrupt header?)");
    // A Huffman-coded JPEG (the only kind stb_image reads) codes the DC coefficient of every 8x8 block of
    // its first component at least once, in at least one bit, so it cannot be smaller than one bit per block.
    // stb_image decodes missing coded data as grey: a 238-byte file declaring 13055 x 12549 pixels came back
    // as 164 megapixels of grey after seconds of work.
    const int64_t blocks = (int64_t{w} + 7) / 8 * ((int64_t{h} + 7) / 8);
    ISRN_CHECK(!jpeg || static_cast<int64_t>(size) * 8 >= blocks, "[read_image] ", name,
               ": truncated or corrupt JPEG (", w, "x", h, " pixels need at least ", (blocks + 7) / 8,
               " bytes of coded data, the file has ", size, ")");
  }
  std::unique_ptr<stbi_uc, void (*)(void*)> decoded(
      stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &channels, 3), stbi_image_free);
  ISRN_CHECK(decoded != nullptr, "[read_image] ", name, ": cannot decode: ", stbi_failure_reason());
  // stb_image "decodes" a BMP declaring zero rows (found by fuzzing): an image without pixels is no image.
  ISRN_CHECK(w > 0 && h > 0, "[read_image] ", name, ": the image has no pixels (", w, "x", h, ")");
  Image image;
  image.height = h;
  image.width = w;
  image.pixels.assign(decoded.get(), decoded.get() + static_cast<size_t>(w) * h * 3);
  return image;
}

Image read_image(const std::string& path) {
  const std::string bytes = io::read_file(path, "[read_image] ");
  return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

namespace {

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

void write_image(const std::string& path, const Image& image, int jpeg_quality) {
  const std::string where = "[write_image] ";
  ISRN_CHECK(!image.empty(), where, path, ": empty image");
  ISRN_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * 3), where, path,
             ": pixel buffer holds ", image.pixels.size(), " bytes, not ", image.height, "x", image.width, "x3");
  ISRN_CHECK(image.width <= std::numeric_limits<int>::max() / 3 && image.height <= std::numeric_limits<int>::max(),
             where, path, ": image too large");
  const std::string ext = lower(std::filesystem::path(path).extension().string());
  const int w = static_cast<int>(image.width), h = static_cast<int>(image.height);
  std::string bytes;
  int ok = 0;
  if (ext == ".png") {
    ok = stbi_write_png_to_func(append_bytes, &bytes, w, h, 3, image.pixels.data(), w * 3);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    ISRN_CHECK(jpeg_quality >= 1 && jpeg_quality <= 100, where, path, ": JPEG quality ", jpeg_quality,
               " is outside 1..100");
    ok = stbi_write_jpg_to_func(append_bytes, &bytes, w, h, 3, image.pixels.data(), jpeg_quality);
  } else if (ext == ".bmp") {
    ok = stbi_write_bmp_to_func(append_bytes, &bytes, w, h, 3, image.pixels.data());
  } else {
    ISRN_CHECK(false, where, path, ": unknown extension '", ext, "' (use .png, .jpg, .jpeg or .bmp)");
  }
  ISRN_CHECK(ok != 0, where, path, ": the encoder failed");
  io::write_file_atomic(path, bytes, where);
}

namespace {

// One output position of a bilinear resize: the two source positions and the weight of the second.
// `inside` is false for positions of a window that fall outside the resized image.
struct Tap {
  int64_t i0 = 0, i1 = 0;
  float w1 = 0;
  bool inside = false;
};

// Taps for the output positions first .. first + count - 1 of a resize from `in` to `out` positions.
std::vector<Tap> bilinear_taps(int64_t in, int64_t out, int64_t first, int64_t count) {
  std::vector<Tap> taps(static_cast<size_t>(count));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t o = first + k;
    if (o < 0 || o >= out) continue;
    const double src = std::max(0.0, (static_cast<double>(o) + 0.5) * scale - 0.5);
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    taps[static_cast<size_t>(k)] = {i0, std::min(i0 + 1, in - 1), static_cast<float>(src - static_cast<double>(i0)), true};
  }
  return taps;
}

Image resample_window(const Image& image, int64_t scaled_height, int64_t scaled_width, int64_t top, int64_t left,
                      int64_t height, int64_t width, const std::array<uint8_t, 3>& fill) {
  const std::vector<Tap> xs = bilinear_taps(image.width, scaled_width, left, width);
  const std::vector<Tap> ys = bilinear_taps(image.height, scaled_height, top, height);
  Image out(height, width);
  // Horizontally interpolated source rows, two at a time: an upscale reuses each row for several
  // output rows, so a row is interpolated once per change of source row, not once per output row.
  std::array<std::vector<float>, 2> rows{std::vector<float>(static_cast<size_t>(width * 3)),
                                         std::vector<float>(static_cast<size_t>(width * 3))};
  std::array<int64_t, 2> row_of{-1, -1};
  auto fetch = [&](int64_t y, int64_t keep) -> const float* {
    for (int s = 0; s < 2; ++s)
      if (row_of[s] == y) return rows[s].data();
    const int s = row_of[0] == keep ? 1 : 0;
    const uint8_t* src = image.at(y, 0);
    float* row = rows[s].data();
    for (int64_t x = 0; x < width; ++x) {
      const Tap& t = xs[static_cast<size_t>(x)];
      if (!t.inside) continue;
      for (int c = 0; c < 3; ++c) {
        const float a = src[t.i0 * 3 + c], b = src[t.i1 * 3 + c];
        row[x * 3 + c] = a + (b - a) * t.w1;
      }
    }
    row_of[s] = y;
    return row;
  };
  for (int64_t y = 0; y < height; ++y) {
    const Tap& t = ys[static_cast<size_t>(y)];
    uint8_t* dst = out.at(y, 0);
    if (!t.inside) {
      for (int64_t x = 0; x < width; ++x) std::copy(fill.begin(), fill.end(), dst + x * 3);
      continue;
    }
    const float* row0 = fetch(t.i0, t.i1);
    const float* row1 = fetch(t.i1, t.i0);
    for (int64_t x = 0; x < width; ++x) {
      if (!xs[static_cast<size_t>(x)].inside) {
        std::copy(fill.begin(), fill.end(), dst + x * 3);
        continue;
      }
      for (int64_t i = x * 3; i < x * 3 + 3; ++i) {
        const float v = row0[i] + (row1[i] - row0[i]) * t.w1;
        dst[i] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return out;
}

}  // namespace

Image resize_bilinear(const Image& image, int64_t height, int64_t width) {
  ISRN_CHECK(height > 0 && width > 0, "[resize_bilinear] output size ", height, "x", width, " must be positive");
  ISRN_CHECK(!image.empty(), "[resize_bilinear] empty input image");
  return resample_window(image, height, width, 0, 0, height, width, {0, 0, 0});
}

Image resize_window_bilinear(const Image& image, int64_t scaled_height, int64_t scaled_width, int64_t top,
                             int64_t left, int64_t height, int64_t width, const std::array<uint8_t, 3>& fill) {
  ISRN_CHECK(scaled_height > 0 && scaled_width > 0, "[resize_window_bilinear] resized size ", scaled_height, "x",
             scaled_width, " must be positive");
  ISRN_CHECK(height >= 0 && width >= 0, "[resize_window_bilinear] window size ", height, "x", width,
             " must not be negative");
  ISRN_CHECK(!image.empty(), "[resize_window_bilinear] empty input image");
  return resample_window(image, scaled_height, scaled_width, top, left, height, width, fill);
}

Image flip_horizontal(const Image& image) {
  Image out(image.height, image.width);
  for (int64_t y = 0; y < image.height; ++y)
    for (int64_t x = 0; x < image.width; ++x) std::copy_n(image.at(y, image.width - 1 - x), 3, out.at(y, x));
  return out;
}

void normalize_into(const Image& image, float* dst, int64_t plane_stride, int64_t row_stride,
                    const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  for (int c = 0; c < 3; ++c)
    ISRN_CHECK(std[c] > 0, "[normalize_into] std[", c, "] = ", std[c], " must be positive");
  std::array<float, 3> scale{}, shift{};
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * std[c]);
    shift[c] = -mean[c] / std[c];
  }
  for (int64_t y = 0; y < image.height; ++y) {
    const uint8_t* src = image.at(y, 0);
    for (int c = 0; c < 3; ++c) {
      float* row = dst + c * plane_stride + y * row_stride;
      for (int64_t x = 0; x < image.width; ++x) row[x] = src[x * 3 + c] * scale[c] + shift[c];
    }
  }
}

void normalize_padded_into(const Image& image, float* dst, int64_t height, int64_t width) {
  ISRN_CHECK(image.height <= height && image.width <= width, "[normalize_padded_into] a ", image.height, "x",
             image.width, " image does not fit a ", height, "x", width, " slot");
  const int64_t plane = height * width;
  normalize_into(image, dst, plane, width);
  for (int64_t c = 0; c < 3; ++c) {
    float* channel = dst + c * plane;
    if (image.width < width)
      for (int64_t y = 0; y < image.height; ++y)
        std::fill(channel + y * width + image.width, channel + (y + 1) * width, 0.0f);
    std::fill(channel + image.height * width, channel + plane, 0.0f);
  }
}

Tensor to_tensor(const Image& image, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  Tensor t = isrn::empty({3, image.height, image.width}, DType::Float32);
  normalize_into(image, t.data_ptr<float>(), image.height * image.width, image.width, mean, std);
  return t;
}

Tensor boxes_to_tensor(const std::vector<Box>& boxes) {
  Tensor t = isrn::empty({static_cast<int64_t>(boxes.size()), 4}, DType::Float32);
  float* p = t.data_ptr<float>();
  for (const Box& b : boxes) {
    *p++ = b.x1;
    *p++ = b.y1;
    *p++ = b.x2;
    *p++ = b.y2;
  }
  return t;
}

std::vector<Box> boxes_from_tensor(const Tensor& boxes) {
  ISRN_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, "[boxes_from_tensor] expects [G, 4], got ",
             boxes.defined() ? shape_str(boxes.shape()) : std::string("undefined"));
  const std::vector<float> v = boxes.detach().to(Device::cpu()).to(DType::Float32).contiguous().to_vector<float>();
  std::vector<Box> out;
  for (size_t i = 0; i + 3 < v.size(); i += 4) out.push_back({v[i], v[i + 1], v[i + 2], v[i + 3]});
  return out;
}

}  // namespace isrn::data
