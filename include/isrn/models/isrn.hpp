#pragma once
// The ISRN detector (SPEC §1): backbone → first-step features and FPN → one shared head applied to
// both steps; its configuration as dotted JSON keys, and checkpoints in safetensors.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "isrn/io/json_config.hpp"
#include "isrn/io/safetensors.hpp"
#include "isrn/models/ablation.hpp"
#include "isrn/models/anchors.hpp"
#include "isrn/models/fpn.hpp"
#include "isrn/models/head.hpp"
#include "isrn/models/loss.hpp"
#include "isrn/models/postprocess.hpp"
#include "isrn/models/resnet.hpp"
#include "isrn/nn/module.hpp"

namespace isrn::models {

// Every default equals the SPEC Decisions table. Some fields are derived and overwritten by
// resolved() (and so by the Detector): the FPN width and norm follow the backbone, the head's
// channels follow the FPN and its anchors per location follow the anchor scales, and the STC/STR
// level lists and variances of inference follow those of training, so the parts cannot disagree.
struct DetectorConfig {
  ResNetConfig backbone;
  FPNConfig fpn;
  HeadConfig head;
  AnchorConfig anchors;
  LossConfig loss;  // loss.targets holds the match thresholds and the STC θ of training
  InferenceConfig infer;
  AblationConfig ablation;  // SE blocks and the segmentation branch, off by default

  DetectorConfig resolved() const;

  // Reads the dotted keys listed in to_json() (any may be absent: the default stays), then rejects
  // keys nothing read, naming them.
  static DetectorConfig from_json(const io::JsonConfig& json);
  // The same without the final check, for a file that also holds other sections (the training
  // program's augment/optim/train keys): its reader checks for unknown keys once everything is read.
  static DetectorConfig read(const io::JsonConfig& json);
  std::string to_json() const;  // every independent field; from_json reads it back to an equal config
};

// Field-by-field equality of the independent fields (the ones to_json writes).
bool same_config(const DetectorConfig& a, const DetectorConfig& b);

struct DetectorOutput {
  Tensor step1_logits, step2_logits;  // [B, A_total], anchor order
  Tensor step1_deltas, step2_deltas;  // [B, A_total, 4]
  AnchorSet anchors;                  // for the images' H×W, on their device
  Tensor seg_logits;                  // [B, 1, H2, W2] with the segmentation branch, else undefined
};

class Detector : public nn::Module {
 public:
  explicit Detector(const DetectorConfig& config, Generator& gen = default_generator());

  DetectorOutput forward(const Tensor& images);
  // gt_boxes: one [G_i, 4] (x1, y1, x2, y2) tensor per image, G_i may be 0.
  DetectionLoss loss(const Tensor& images, const std::vector<Tensor>& gt_boxes);
  // Eval mode and no graph for the call; the previous training mode comes back afterwards. `scale` is
  // the factor the images were resized by: boxes come back in the unresized coordinates (SPEC §9).
  std::vector<Detections> detect(const Tensor& images, double scale = 1.0);

  // Anchors for an H×W image on `device`, generated once per (H, W, device).
  const AnchorSet& anchors_for(int64_t image_h, int64_t image_w, Device device);

  const DetectorConfig& config() const { return config_; }

  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<FirstStepFeatures> first_step;
  std::shared_ptr<FPN> fpn;
  std::shared_ptr<Head> head;
  // Ablations (null unless switched on): one SE block per level ("0".."5") for each step's features,
  // and the segmentation branch on P2.
  std::shared_ptr<nn::Sequential> se_step1, se_step2;
  std::shared_ptr<SegBranch> seg;

 private:
  DetectorConfig config_;
  std::map<std::tuple<int64_t, int64_t, int, int>, AnchorSet> anchor_cache_;
};

inline constexpr const char* kCheckpointFormat = "isrn-detector";
inline constexpr const char* kCheckpointFormatVersion = "1";

// Parameters and buffers by their dotted names, with the config in the metadata.
void save_checkpoint(const std::string& path, const Detector& detector);
// A Detector built from the stored config, loaded strictly (on the CPU).
std::unique_ptr<Detector> load_detector(const std::string& path);
// The file's tensors into an existing detector; strict throws on any mismatch, otherwise the report says.
io::LoadReport load_weights(const std::string& path, Detector& detector, bool strict = true);

}  // namespace isrn::models
