#pragma once
// Procedural face scenes: training data that needs no files. A scene is a cluttered, textured background
// with face-like distractors (which are not labelled) and faces of WIDER FACE's size range, drawn with
// skin tones, hair, eyes, brows, nose and mouth, pose, lighting, optional blur and partial occlusion.
//
// A scene is a pure function of (config, seed): the same seed gives the same bytes on every run, at any
// thread count, so a data loader's workers can make any index in any order.
#include <cstdint>
#include <string>
#include <vector>

#include "isrn/data/dataset.hpp"
#include "isrn/data/sample.hpp"

namespace isrn::data {

// Every range is inclusive and drawn uniformly unless it says otherwise; every probability is in [0, 1].
struct SyntheticConfig {
  // Height and width, drawn independently.
  int64_t min_image_size = 320;
  int64_t max_image_size = 800;
  // Faces per scene. Fewer are drawn when a face finds no place that respects max_overlap.
  int min_faces = 1;
  int max_faces = 16;
  // Face size sqrt(w·h) of the unrotated face, log-uniform (as many faces of 8–16 px as of 200–400 px,
  // like WIDER's long tail of small faces); capped at 0.9 × the image's shorter side.
  float min_face_size = 8;
  float max_face_size = 400;
  // Height / width of a face box.
  float min_face_aspect = 1.05f;
  float max_face_aspect = 1.5f;
  // A face may cover at most this fraction of another face's box (the faces behind stay visible enough
  // to be labelled, as WIDER labels crowds).
  float max_overlap = 0.3f;
  double border_cut_prob = 0.1;  // the face may leave the image by up to 40 % of its box (box clipped)
  double blur_prob = 0.2;        // defocus blur of the face, normal or heavy
  double occlusion_prob = 0.25;  // a random shape (object, hand, mask) covering 15–75 % of the face
  double profile_prob = 0.15;    // strong yaw: features shifted, far eye hidden; otherwise near frontal
  double body_prob = 0.75;       // neck and torso below the face
  // Unlabelled: ellipses without a face's layout, skin-coloured blobs, heads seen from behind, rings.
  int min_distractors = 0;
  int max_distractors = 8;
  // Rectangles, ellipses, bars and rings over the textured background.
  int min_background_shapes = 4;
  int max_background_shapes = 30;
  float max_noise = 6;  // per-pixel sensor noise, amplitude up to this many levels
};

// What isrn-synth writes in the WIDER attribute columns for a face, in the official codes.
struct FaceAttributes {
  uint8_t blur = 0;          // 0 clear, 1 normal, 2 heavy
  uint8_t expression = 0;    // 0 typical, 1 exaggerate (open mouth, raised brows)
  uint8_t illumination = 0;  // 0 normal, 1 extreme (strong side light, very dark or bright scene)
  uint8_t occlusion = 0;     // 0 none, 1 partial (up to 30 %), 2 heavy
  uint8_t pose = 0;          // 0 typical, 1 atypical (profile or strong roll)
  bool operator==(const FaceAttributes&) const = default;
};

// Throws an Error "[synthetic] ..." naming the first field out of range.
void validate(const SyntheticConfig& config);

// One scene. Boxes have integer corners (x2 = x + w) inside the image and positive size; `attributes`,
// when given, receives one entry per box. The id is "synthetic/seed_<seed>".
Sample generate_scene(const SyntheticConfig& config, uint64_t seed, std::vector<FaceAttributes>* attributes = nullptr);

// The seed of scene `index` of a data set with seed `seed`: a bijective 64-bit mix, so neighbouring
// indices (and neighbouring data-set seeds) give unrelated scenes.
uint64_t scene_seed(uint64_t seed, uint64_t index);

// `size` scenes; get(i) is generate_scene(config, scene_seed(seed, i)) with id "synthetic/<i>".
class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(SyntheticConfig config, uint64_t seed, size_t size);
  size_t size() const override { return size_; }
  Sample get(size_t index) const override;
  // The same scene with its attributes.
  Sample get(size_t index, std::vector<FaceAttributes>* attributes) const;
  const SyntheticConfig& config() const { return config_; }

 private:
  SyntheticConfig config_;
  uint64_t seed_;
  size_t size_;
};

// isrn-synth: a generated set in the official WIDER FACE layout, so that code written for WIDER reads it
// unchanged: <out>/WIDER_{train,val}/images/<event>/<name>.jpg and
// <out>/wider_face_split/wider_face_{train,val}_bbx_gt.txt. Events group scenes by face count
// (0--Synthetic_Few: up to 3, 1--Synthetic_Group: up to 10, 2--Synthetic_Crowd: more); images are
// JPEG. Train scene i is SyntheticDataset(config, seed, train).get(i); validation scenes come from a
// second seed derived from `seed`, so the splits never share a scene.
struct WiderExport {
  std::string out_dir;
  size_t train = 0;
  size_t val = 0;
  uint64_t seed = 0;
  SyntheticConfig config;
  int jpeg_quality = 95;
  int threads = 1;  // scenes are generated and encoded on this many threads; the output does not depend on it
};
struct WiderExportCounts {
  size_t train_images = 0, train_faces = 0, val_images = 0, val_faces = 0;
};
WiderExportCounts write_synthetic_wider(const WiderExport& options);

// The validation seed write_synthetic_wider uses for data-set seed `seed`.
uint64_t validation_seed(uint64_t seed);

}  // namespace isrn::data
