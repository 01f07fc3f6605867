#pragma once
// Single-scale detection of several images at once, as a detection program runs it: the images (each
// optionally shrunk to at most max_size² pixels) are normalized into one zero-padded batch, go through the
// network together, and each image's boxes are mapped back and clipped to its own size. The three stages are
// timed separately so a program can say where its time goes.
#include <cstdint>
#include <vector>

#include "isrn/data/image.hpp"
#include "isrn/models/isrn.hpp"

namespace isrn::models {

// Seconds spent in each stage. On CUDA every stage waits for its device work before its clock stops, so the
// network time is the network's, not the time to queue it.
struct StageTimes {
  double preprocess = 0;   // resizing, normalization into the batch, the copy to the device
  double network = 0;      // Detector::forward
  double postprocess = 0;  // decoding, NMS, the copy back, mapping and clipping

  StageTimes& operator+=(const StageTimes& other);
};

// The factor an image is resized by so that it has at most max_size² pixels (the M of SPEC §9): 1 when it is
// already small enough or max_size is 0 (no limit); images are never enlarged.
double shrink_scale(int64_t height, int64_t width, int64_t max_size);

// float32 [B, 3, H, W] on the CPU with H, W the largest height and width: each image normalized (data::to_tensor)
// at its top left, zeros elsewhere. Zero after normalization is the mean pixel, what the expand augmentation pads
// with in training (SPEC §10.1).
Tensor pad_batch(const std::vector<const data::Image*>& images);

// Boxes clipped to [0, width − 1] × [0, height − 1] (as the multi-scale test clips, SPEC §9); boxes left with
// no width or height (they lay outside the image, e.g. in a batch's padding) are dropped. Order is kept.
// float32 on the CPU.
Detections clip_detections(const Detections& detections, int64_t height, int64_t width);

struct BatchOptions {
  int64_t max_size = 0;  // shrink_scale's limit; 0: every image at its own size
  Device device = Device::cpu();
};

// Every image's detections, in the images' coordinates, clipped (clip_detections), float32 on the CPU. One
// forward pass for the batch; the detector is in eval mode and records no graph for the call (its training mode
// comes back afterwards).
//
// Padding is not neutral: a padded image's GroupNorm statistics include the padding, and anchors over the padding
// compete in NMS's top-N before their boxes are dropped, so an image in a batch with larger images can get
// slightly different scores and boxes than alone. Images of equal size are not padded and match batch 1 up to
// floating-point summation order.
std::vector<Detections> detect_batch(Detector& detector, const std::vector<const data::Image*>& images,
                                     const BatchOptions& options = {}, StageTimes* times = nullptr);

// Detector::detect with one resize factor per image (scales[i] for images[i] of the [B, 3, H, W] batch) and
// the network and the post-processing timed apart; the detections stay on the batch's device, unclipped.
std::vector<Detections> detect_prepared(Detector& detector, const Tensor& batch, const std::vector<double>& scales,
                                        StageTimes* times = nullptr);

// Blocks until the work producing `t` on its device is done (one element is copied to the host). A no-op on the
// CPU. What a stage clock uses before it stops.
void wait_for(const Tensor& t);

}  // namespace isrn::models
