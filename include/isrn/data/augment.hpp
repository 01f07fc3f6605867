#pragma once
// Training-time augmentation, SPEC §10: photometric distortion (RefineDet values, both orders), then
// with probability das_prob PyramidBox data-anchor-sampling, otherwise the SRN path (expand with the
// mean pixel, square crop); then horizontal flip, resize to the square training size, and dropping the
// boxes too small to learn from.
//
// Every transform is also a function of its own, and the random ones are split into a draw (from the
// generator) and an application (deterministic), so each can be tested. Everything is deterministic
// given the generator's state.
#include <array>
#include <cstdint>
#include <vector>

#include "isrn/data/sample.hpp"
#include "isrn/tensor.hpp"

namespace isrn::data {

struct AugmentConfig {
  int64_t size = 1024;  // the output is size × size (the report trains at 1024)
  // Fill of expanded and padded areas: ImageNet's mean, which normalizes to 0.
  std::array<uint8_t, 3> mean_pixel{124, 116, 104};

  // Photometric distortion, RefineDet's distort_param; each part is applied with its probability.
  double brightness_prob = 0.5;
  float brightness_delta = 32;  // added, U[−delta, delta]
  double contrast_prob = 0.5;
  float contrast_lower = 0.5f, contrast_upper = 1.5f;  // multiplied
  double saturation_prob = 0.5;
  float saturation_lower = 0.5f, saturation_upper = 1.5f;  // multiplies HSV saturation
  double hue_prob = 0.5;
  float hue_delta = 18;              // degrees added to the HSV hue, U[−delta, delta]
  double contrast_last_prob = 0.5;   // contrast after the HSV parts instead of before them (SSD's two orders)

  // SRN path: expand, then a square crop.
  double expand_prob = 0.5;
  float expand_max_ratio = 2;         // canvas side = U[1, expand_max_ratio] × image side
  double full_side_crop_prob = 0.5;   // patch (a): side = the shorter side; otherwise (b)
  float min_crop_scale = 0.5f;        // patch (b): side = U[min_crop_scale, 1] × the shorter side
  int crop_max_tries = 50;            // then the image is left uncropped

  // PyramidBox data-anchor-sampling, instead of the SRN path.
  double das_prob = 0.5;
  std::vector<float> das_anchor_sizes{16, 32, 64, 128, 256, 512};  // SRN-matched: {8, 16, 32, 64, 128, 256}
  double das_max_area = 12000.0 * 12000.0;                          // cap on the rescaled image's area
  int das_max_tries = 50;
  float das_accept_iou = 0.7f;

  double flip_prob = 0.5;
  // After the final resize, boxes narrower or lower than this are dropped (PyramidBox: 6 px); boxes of
  // zero width or height are always dropped.
  float min_face_size = 6;
};

// Throws an Error "[augment] ..." naming the first field out of range.
void validate(const AugmentConfig& config);

// The whole pipeline; the output is config.size × config.size.
Sample augment(const Sample& sample, const AugmentConfig& config, Generator& rng);

// No augmentation (validation): the image resized to size × size, boxes scaled with it.
Sample resize_to(const Sample& sample, int64_t size);

// ---- Photometric distortion ---------------------------------------------------------------------
// Values that leave a part out: brightness 0, contrast 1, saturation 1, hue 0. Each part clamps to
// [0, 255] as the 8-bit original does; one rounding at the end.
struct Photometric {
  float brightness = 0;
  float contrast = 1;
  float saturation = 1;
  float hue = 0;  // degrees
  bool contrast_last = false;
};
Photometric draw_photometric(const AugmentConfig& config, Generator& rng);
void apply_photometric(Image& image, const Photometric& p);

// ---- Geometry -----------------------------------------------------------------------------------
// A window of an image; it may reach outside it.
struct Window {
  int64_t left = 0, top = 0, width = 0, height = 0;
};

// The image placed at (left, top) of a height × width canvas filled with `fill`; boxes move with it.
Sample expand(const Sample& sample, int64_t height, int64_t width, int64_t top, int64_t left,
              const std::array<uint8_t, 3>& fill);
// With probability expand_prob a canvas of U[1, expand_max_ratio] times the size, the image at a uniform
// position; otherwise the sample unchanged.
Sample random_expand(const Sample& sample, const AugmentConfig& config, Generator& rng);

// The SSD rule: keep the boxes whose centre lies strictly inside the window.
bool centre_inside(const Box& box, const Window& window);
// The window's pixels (`fill` outside the image) and the boxes kept by centre_inside, clipped to the
// window, in window coordinates.
Sample crop(const Sample& sample, const Window& window, const std::array<uint8_t, 3>& fill);
// SRN's square crop: patch (a) or (b) at a uniform position inside the image, redrawn until a box survives
// (at most crop_max_tries times, then the sample unchanged). A sample without boxes takes the first patch.
Sample random_square_crop(const Sample& sample, const AugmentConfig& config, Generator& rng);

// Horizontal mirror of image and boxes.
Sample flip(const Sample& sample);
Sample random_flip(const Sample& sample, const AugmentConfig& config, Generator& rng);

// ---- Data-anchor-sampling (PyramidBox) ---------------------------------------------------------------
// The rescale factor for a face of size sqrt(w·h) = face_size in a height × width image: the nearest anchor
// size i, a target anchor j uniform in {0, …, min(last, i + 1)}, a target size U[s_j / 2, 2·s_j], the
// factor target / face_size, capped so the rescaled image stays within das_max_area.
double das_scale(float face_size, int64_t height, int64_t width, const AugmentConfig& config, Generator& rng);
// Whether PyramidBox accepts a patch: some box lies fully inside it, or some box overlaps it with IoU
// above `iou`.
bool das_accepts(const std::vector<Box>& boxes, const Window& window, float iou);
// The image resized by `scale` (to round(height·scale) × round(width·scale)), then crop(window, fill);
// only the window is computed.
Sample scale_and_crop(const Sample& sample, double scale, const Window& window, const std::array<uint8_t, 3>& fill);
// The whole of it: a random face, das_scale, and a size × size patch containing that face at a random
// offset, retried until das_accepts (at most das_max_tries times, then the sample unchanged). A sample
// without a box of positive size is returned unchanged.
Sample data_anchor_sample(const Sample& sample, const AugmentConfig& config, Generator& rng);

// Removes boxes with width or height below min_size, and boxes of zero (or negative) width or height.
void drop_small_boxes(std::vector<Box>& boxes, float min_size);

}  // namespace isrn::data
