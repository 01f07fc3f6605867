// Image decoding/encoding, bilinear resizing against a naive double-precision reference of OpenCV's
// INTER_LINEAR geometry, flipping and normalization.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "isrn/data/image.hpp"
#include "test_util.hpp"

using namespace isrn;
using data::Image;

namespace {

Image random_image(int64_t h, int64_t w, uint64_t seed) {
  Image im(h, w);
  Generator gen(seed);
  for (auto& p : im.pixels) p = static_cast<uint8_t>(gen.next_u64() & 0xff);
  return im;
}

// Smooth content (what photographs mostly are), where a JPEG coder at high quality is nearly exact.
Image smooth_image(int64_t h, int64_t w) {
  Image im(h, w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = im.at(y, x);
      p[0] = static_cast<uint8_t>(128 + 100 * std::sin(0.05 * x + 0.02 * y));
      p[1] = static_cast<uint8_t>(255 * x / std::max<int64_t>(1, w - 1));
      p[2] = static_cast<uint8_t>(255 * y / std::max<int64_t>(1, h - 1));
    }
  return im;
}

// read_image(path) must throw an Error whose message names the file and the problem.
void expect_read_error(const std::string& path, const std::string& problem) {
  CAPTURE(problem);
  try {
    data::read_image(path);
    FAIL_CHECK("no error for ", problem);
  } catch (const Error& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK(message.find("[read_image]") != std::string::npos);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(problem) != std::string::npos);
  }
}

// OpenCV's INTER_LINEAR source position for output index o (modules/imgproc/src/resize.cpp):
// f = (o + 0.5)·in/out − 0.5, s = floor(f); left of the first pixel and right of the last the weight of
// the neighbour is 0.
struct CvTap {
  int64_t s0, s1;
  double w1;
};
CvTap cv_tap(int64_t o, int64_t in, int64_t out) {
  const double f = (static_cast<double>(o) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
  int64_t s = static_cast<int64_t>(std::floor(f));
  double w = f - static_cast<double>(s);
  if (s < 0) s = 0, w = 0;
  if (s >= in - 1) s = in - 1, w = 0;
  return {s, std::min(s + 1, in - 1), w};
}

Image reference_resize(const Image& in, int64_t oh, int64_t ow) {
  Image out(oh, ow);
  for (int64_t y = 0; y < oh; ++y) {
    const CvTap ty = cv_tap(y, in.height, oh);
    for (int64_t x = 0; x < ow; ++x) {
      const CvTap tx = cv_tap(x, in.width, ow);
      for (int c = 0; c < 3; ++c) {
        const double top = (1 - tx.w1) * in.at(ty.s0, tx.s0)[c] + tx.w1 * in.at(ty.s0, tx.s1)[c];
        const double bottom = (1 - tx.w1) * in.at(ty.s1, tx.s0)[c] + tx.w1 * in.at(ty.s1, tx.s1)[c];
        out.at(y, x)[c] = static_cast<uint8_t>(std::lround((1 - ty.w1) * top + ty.w1 * bottom));
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("image: PNG and BMP round trips are exact, JPEG within a stated tolerance") {
  test::TempDir dir("isrn_image");
  const Image im = random_image(37, 53, 1);
  for (const std::string name : {"a.png", "b.bmp", "c.PNG"}) {
    CAPTURE(name);
    data::write_image(dir.file(name), im);
    const Image back = data::read_image(dir.file(name));
    CHECK(back.height == 37);
    CHECK(back.width == 53);
    CHECK(back.pixels == im.pixels);
  }
  // stb's JPEG writer keeps full chroma resolution above quality 90, so at 95 smooth content comes back
  // within a few levels: measured mean 0.53 and max 3 on this image; bounds 1.5 and 12 leave room for
  // other encoders' rounding while still failing on any real corruption (a swapped channel, a shift).
  const Image smooth = smooth_image(64, 96);
  data::write_image(dir.file("d.jpg"), smooth, 95);
  const Image back = data::read_image(dir.file("d.jpg"));
  REQUIRE(back.height == 64);
  REQUIRE(back.width == 96);
  double total = 0;
  int worst = 0;
  for (size_t i = 0; i < smooth.pixels.size(); ++i) {
    const int d = std::abs(int(back.pixels[i]) - int(smooth.pixels[i]));
    total += d;
    worst = std::max(worst, d);
  }
  CHECK(total / static_cast<double>(smooth.pixels.size()) < 1.5);
  CHECK(worst <= 12);
  // Quality is honoured: quality 5 loses far more (measured mean 11.7).
  data::write_image(dir.file("e.jpeg"), smooth, 5);
  const Image poor = data::read_image(dir.file("e.jpeg"));
  double poor_total = 0;
  for (size_t i = 0; i < smooth.pixels.size(); ++i) poor_total += std::abs(int(poor.pixels[i]) - int(smooth.pixels[i]));
  CHECK(poor_total > 10 * total);
  // The same bytes decode the same way from memory.
  const std::string bytes = test::read_bytes(dir.file("d.jpg"));
  const Image mem = data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
  CHECK(mem.pixels == back.pixels);
  // A 1×1 image survives every format.
  const Image dot = random_image(1, 1, 2);
  data::write_image(dir.file("dot.png"), dot);
  CHECK(data::read_image(dir.file("dot.png")).pixels == dot.pixels);
}

TEST_CASE("image: unreadable files throw an Error naming the file") {
  test::TempDir dir("isrn_image_bad");
  const Image im = random_image(40, 30, 3);
  data::write_image(dir.file("ok.jpg"), im);
  data::write_image(dir.file("ok.png"), im);
  const std::string jpeg = test::read_bytes(dir.file("ok.jpg")), png = test::read_bytes(dir.file("ok.png"));

  test::write_bytes(dir.file("half.jpg"), jpeg.substr(0, jpeg.size() / 2));
  expect_read_error(dir.file("half.jpg"), "truncated JPEG");
  // Cut just before the end-of-image marker: all the entropy data is there but the file is incomplete.
  test::write_bytes(dir.file("noeoi.jpg"), jpeg.substr(0, jpeg.size() - 2));
  expect_read_error(dir.file("noeoi.jpg"), "truncated JPEG");
  // Trailing line ends after the marker (some writers append them) are not truncation.
  test::write_bytes(dir.file("newline.jpg"), jpeg + "\r\n");
  CHECK(data::read_image(dir.file("newline.jpg")).height == 40);
  // The same check applies to bytes in memory.
  const std::string cut = jpeg.substr(0, jpeg.size() / 2);
  CHECK_THROWS_WITH_AS(data::decode_image(reinterpret_cast<const uint8_t*>(cut.data()), cut.size(), "buffer#7"),
                       doctest::Contains("buffer#7: truncated JPEG"), Error);

  test::write_bytes(dir.file("half.png"), png.substr(0, png.size() / 2));
  expect_read_error(dir.file("half.png"), "cannot decode");
  test::write_bytes(dir.file("header.png"), png.substr(0, 20));
  expect_read_error(dir.file("header.png"), "cannot decode");
  // stb_image decodes the missing rows of a short BMP as black; isrn refuses it. Rows are 53 × 3 = 159 bytes
  // padded to 160: a file without the last row's padding byte still holds every pixel and is read.
  const Image wide = random_image(37, 53, 4);
  data::write_image(dir.file("ok.bmp"), wide);
  const std::string bmp = test::read_bytes(dir.file("ok.bmp"));
  test::write_bytes(dir.file("nopad.bmp"), bmp.substr(0, bmp.size() - 1));
  CHECK(data::read_image(dir.file("nopad.bmp")).pixels == wide.pixels);
  test::write_bytes(dir.file("short.bmp"), bmp.substr(0, bmp.size() - 2));
  expect_read_error(dir.file("short.bmp"), "truncated BMP");
  test::write_bytes(dir.file("headeronly.bmp"), bmp.substr(0, 60));
  expect_read_error(dir.file("headeronly.bmp"), "truncated BMP");
  std::string no_rows = bmp;
  for (int at = 22; at < 26; ++at) no_rows[at] = 0;  // height 0, which stb_image accepts
  test::write_bytes(dir.file("norows.bmp"), no_rows);
  expect_read_error(dir.file("norows.bmp"), "the image has no pixels (53x0)");
  // A header declaring more than kMaxImagePixels is refused before anything is allocated for it. (Grey, as
  // stb_image itself refuses more than 2^30 bytes of decoded PNG: 20000² RGB would not reach isrn's check.)
  std::string huge_png = png.substr(0, 33);  // signature and IHDR chunk
  for (const int at : {16, 20}) {  // width, height: 20000 each, big-endian
    huge_png[at] = 0, huge_png[at + 1] = 0, huge_png[at + 2] = static_cast<char>(20000 >> 8),
    huge_png[at + 3] = static_cast<char>(20000 & 0xff);
  }
  huge_png[25] = 0;  // colour type: greyscale
  test::write_bytes(dir.file("huge.png"), huge_png + png.substr(33));
  expect_read_error(dir.file("huge.png"), "20000x20000 pixels, more than the 268435456 isrn decodes");
  // A JPEG codes every 8x8 block in at least one bit: a header declaring 4000 x 3000 pixels (23,438 bytes at
  // the least) over the 40 x 30 image's coded data is refused, where stb_image would return grey.
  std::string big_jpeg = jpeg;
  const size_t sof = big_jpeg.find("\xFF\xC0");
  REQUIRE(sof != std::string::npos);
  big_jpeg[sof + 5] = static_cast<char>(3000 >> 8), big_jpeg[sof + 6] = static_cast<char>(3000 & 0xff);
  big_jpeg[sof + 7] = static_cast<char>(4000 >> 8), big_jpeg[sof + 8] = static_cast<char>(4000 & 0xff);
  test::write_bytes(dir.file("big.jpg"), big_jpeg);
  expect_read_error(dir.file("big.jpg"), "4000x3000 pixels need at least 23438 bytes of coded data");
  // The bound is below what real JPEGs take: a flat 1024 x 1024 image at the lowest quality has 16,384 blocks
  // and needs 2,048 bytes; the smallest encoding of it seen (PIL, greyscale, progressive, optimized Huffman
  // tables) takes 4,378. stb's writer's is read.
  data::write_image(dir.file("flat.jpg"), Image(1024, 1024, 128), 1);
  CHECK(data::read_image(dir.file("flat.jpg")).width == 1024);
  test::write_bytes(dir.file("garbage.jpg"), "this is not an image at all, just some text bytes");
  expect_read_error(dir.file("garbage.jpg"), "cannot decode");
  test::write_bytes(dir.file("empty.png"), "");
  expect_read_error(dir.file("empty.png"), "empty file");
  expect_read_error(dir.file("missing.jpg"), "cannot open");
  expect_read_error(dir.path.string(), "not a regular file");
}

TEST_CASE("image: write_image rejects what it cannot write, naming the file") {
  test::TempDir dir("isrn_image_write");
  const Image im = random_image(4, 5, 4);
  CHECK_THROWS_WITH_AS(data::write_image(dir.file("x.gif"), im), doctest::Contains("unknown extension '.gif'"), Error);
  CHECK_THROWS_WITH_AS(data::write_image(dir.file("x.jpg"), im, 0), doctest::Contains("x.jpg: JPEG quality 0"), Error);
  CHECK_THROWS_WITH_AS(data::write_image(dir.file("x.jpg"), im, 101), doctest::Contains("outside 1..100"), Error);
  CHECK_THROWS_WITH_AS(data::write_image(dir.file("x.png"), Image(), 95), doctest::Contains("x.png: empty image"),
                       Error);
  Image broken = im;
  broken.pixels.pop_back();
  CHECK_THROWS_WITH_AS(data::write_image(dir.file("x.png"), broken), doctest::Contains("pixel buffer holds 59 bytes"),
                       Error);
  CHECK_THROWS_WITH_AS(data::write_image((dir.path / "no_such_dir" / "x.png").string(), im),
                       doctest::Contains("no_such_dir/x.png"), Error);
  CHECK(!std::filesystem::exists(dir.file("x.png")));
  CHECK_THROWS_WITH_AS(Image(-1, 3), doctest::Contains("[Image] negative size"), Error);
}

TEST_CASE("image: resize_bilinear follows OpenCV's INTER_LINEAR geometry") {
  struct Case {
    int64_t ih, iw, oh, ow;
  };
  // Non-square, up and down (also different directions per axis), non-integer ratios, identity, and
  // 1-pixel inputs and outputs.
  const std::vector<Case> cases = {{7, 13, 19, 5},  {30, 31, 10, 9},  {16, 16, 32, 32}, {1, 1, 3, 4},
                                   {5, 1, 1, 1},    {1, 7, 4, 3},     {9, 4, 9, 4},     {3, 2, 1, 17},
                                   {64, 48, 37, 71}, {2, 3, 200, 150}};
  for (const Case& c : cases) {
    CAPTURE(c.ih);
    CAPTURE(c.iw);
    CAPTURE(c.oh);
    CAPTURE(c.ow);
    const Image in = random_image(c.ih, c.iw, 10 + c.ih * 100 + c.iw);
    const Image got = data::resize_bilinear(in, c.oh, c.ow);
    const Image want = reference_resize(in, c.oh, c.ow);
    REQUIRE(got.height == c.oh);
    REQUIRE(got.width == c.ow);
    // The library interpolates in float, the reference in double: they round differently only when the
    // exact value lies within float rounding (~1e-5) of a half level, so a level apart at most, and rarely.
    int64_t off_by_one = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) {
      const int d = std::abs(int(got.pixels[i]) - int(want.pixels[i]));
      REQUIRE(d <= 1);
      off_by_one += d;
    }
    CHECK(off_by_one * 100 <= static_cast<int64_t>(got.pixels.size()));
    if (c.ih == c.oh && c.iw == c.ow) CHECK(got.pixels == in.pixels);
  }
  CHECK_THROWS_WITH_AS(data::resize_bilinear(random_image(3, 3, 0), 0, 4),
                       doctest::Contains("[resize_bilinear] output size 0x4"), Error);
  CHECK_THROWS_WITH_AS(data::resize_bilinear(Image(), 3, 4), doctest::Contains("empty input"), Error);
}

TEST_CASE("image: resize_window_bilinear is a filled window of the full resize") {
  const Image in = random_image(23, 17, 77);
  const std::array<uint8_t, 3> fill{124, 116, 104};
  const int64_t sh = 61, sw = 45;
  const Image full = data::resize_bilinear(in, sh, sw);
  struct Window {
    int64_t top, left, h, w;
  };
  // Inside, straddling every border, larger than the image on both axes, entirely outside, empty.
  for (const Window& win : std::vector<Window>{
           {5, 7, 20, 11}, {-4, -6, 30, 25}, {50, 40, 20, 20}, {-10, -10, 90, 70}, {100, 0, 5, 5}, {3, 3, 0, 4}}) {
    CAPTURE(win.top);
    CAPTURE(win.left);
    const Image got = data::resize_window_bilinear(in, sh, sw, win.top, win.left, win.h, win.w, fill);
    REQUIRE(got.height == win.h);
    REQUIRE(got.width == win.w);
    for (int64_t y = 0; y < win.h; ++y)
      for (int64_t x = 0; x < win.w; ++x) {
        const int64_t sy = win.top + y, sx = win.left + x;
        const bool inside = sy >= 0 && sy < sh && sx >= 0 && sx < sw;
        for (int c = 0; c < 3; ++c) {
          const uint8_t want = inside ? full.at(sy, sx)[c] : fill[c];
          if (got.at(y, x)[c] != want) {
            FAIL_CHECK("pixel (", y, ", ", x, ") channel ", c, " is ", int(got.at(y, x)[c]), ", expected ", int(want));
            return;
          }
        }
      }
  }
  CHECK_THROWS_WITH_AS(data::resize_window_bilinear(in, 0, 5, 0, 0, 1, 1, fill),
                       doctest::Contains("[resize_window_bilinear] resized size 0x5"), Error);
  CHECK_THROWS_WITH_AS(data::resize_window_bilinear(in, 5, 5, 0, 0, -1, 1, fill), doctest::Contains("window size"),
                       Error);
}

TEST_CASE("image: flip_horizontal mirrors columns") {
  const Image in = random_image(5, 8, 9);
  const Image f = data::flip_horizontal(in);
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c) REQUIRE(f.at(y, x)[c] == in.at(y, 7 - x)[c]);
  CHECK(data::flip_horizontal(f).pixels == in.pixels);
  const Image column = random_image(6, 1, 10);
  CHECK(data::flip_horizontal(column).pixels == column.pixels);
  CHECK(data::flip_horizontal(Image()).empty());
}

TEST_CASE("image: to_tensor and normalize_into compute (pixel/255 - mean)/std per channel") {
  const Image in = random_image(6, 11, 11);
  const std::array<float, 3> mean{0.1f, 0.5f, 0.9f}, stdev{0.2f, 0.25f, 0.5f};
  const Tensor t = data::to_tensor(in, mean, stdev);
  REQUIRE(t.shape() == Shape{3, 6, 11});
  CHECK(t.dtype() == DType::Float32);
  std::vector<double> want;
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 11; ++x) want.push_back((in.at(y, x)[c] / 255.0 - mean[c]) / stdev[c]);
  // float32 arithmetic on values of magnitude ≤ 5: a few ulps.
  test::check_close(t, want, 1e-6, 1e-6, "to_tensor");
  // The ImageNet defaults: a pixel equal to the mean becomes ~0.
  Image grey(1, 1);
  for (int c = 0; c < 3; ++c) grey.pixels[c] = static_cast<uint8_t>(std::lround(data::kImageNetMean[c] * 255));
  for (double v : test::values(data::to_tensor(grey))) CHECK(std::abs(v) < 0.5 / 255 / 0.2);

  // Into a larger zero-padded buffer: the image's rows land at the strides given, the padding is untouched.
  const int64_t H = 8, W = 14;
  std::vector<float> buffer(3 * H * W, -100.0f);
  data::normalize_into(in, buffer.data(), H * W, W, mean, stdev);
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const float v = buffer[static_cast<size_t>(c * H * W + y * W + x)];
        if (y < 6 && x < 11)
          REQUIRE(std::abs(v - want[static_cast<size_t>(c * 66 + y * 11 + x)]) < 1e-5);
        else
          REQUIRE(v == -100.0f);
      }
  CHECK_THROWS_WITH_AS(data::to_tensor(in, mean, {0.2f, 0.0f, 0.5f}), doctest::Contains("std[1] = 0"), Error);
  CHECK(data::to_tensor(Image()).numel() == 0);
}
