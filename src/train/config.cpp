#include "isrn/train/config.hpp"

#include <nlohmann/json.hpp>

namespace isrn::train {

namespace {

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

template <typename T>
void read(const io::JsonConfig& json, const std::string& key, T& field) {
  field = json.get<T>(key, field);
}
void read(const io::JsonConfig& json, const std::string& key, float& field) {
  field = static_cast<float>(json.get<double>(key, field));
}
void read(const io::JsonConfig& json, const std::string& key, int& field) {
  field = static_cast<int>(json.get<int64_t>(key, field));
}
void read(const io::JsonConfig& json, const std::string& key, uint64_t& field) {
  const int64_t v = json.get<int64_t>(key, static_cast<int64_t>(field));
  ISRN_CHECK(v >= 0, "[train_config] key '", key, "' must be non-negative, got ", v);
  field = static_cast<uint64_t>(v);
}

}  // namespace

TrainConfig TrainConfig::from_json(const io::JsonConfig& json) {
  TrainConfig c;
  c.detector = models::DetectorConfig::read(json);

  data::AugmentConfig& a = c.augment;
  read(json, "augment.size", a.size);
  std::vector<int64_t> mean{a.mean_pixel[0], a.mean_pixel[1], a.mean_pixel[2]};
  read(json, "augment.mean_pixel", mean);
  ISRN_CHECK(mean.size() == 3, "[train_config] key 'augment.mean_pixel' needs 3 values, got ", mean.size());
  for (int i = 0; i < 3; ++i) {
    ISRN_CHECK(mean[i] >= 0 && mean[i] <= 255, "[train_config] key 'augment.mean_pixel' values must lie in 0..255");
    a.mean_pixel[i] = static_cast<uint8_t>(mean[i]);
  }
  read(json, "augment.brightness_prob", a.brightness_prob);
  read(json, "augment.brightness_delta", a.brightness_delta);
  read(json, "augment.contrast_prob", a.contrast_prob);
  read(json, "augment.contrast_lower", a.contrast_lower);
  read(json, "augment.contrast_upper", a.contrast_upper);
  read(json, "augment.saturation_prob", a.saturation_prob);
  read(json, "augment.saturation_lower", a.saturation_lower);
  read(json, "augment.saturation_upper", a.saturation_upper);
  read(json, "augment.hue_prob", a.hue_prob);
  read(json, "augment.hue_delta", a.hue_delta);
  read(json, "augment.contrast_last_prob", a.contrast_last_prob);
  read(json, "augment.expand_prob", a.expand_prob);
  read(json, "augment.expand_max_ratio", a.expand_max_ratio);
  read(json, "augment.full_side_crop_prob", a.full_side_crop_prob);
  read(json, "augment.min_crop_scale", a.min_crop_scale);
  read(json, "augment.crop_max_tries", a.crop_max_tries);
  read(json, "augment.das_prob", a.das_prob);
  std::vector<double> das = to_double(a.das_anchor_sizes);
  read(json, "augment.das_anchor_sizes", das);
  a.das_anchor_sizes = to_float(das);
  read(json, "augment.das_max_area", a.das_max_area);
  read(json, "augment.das_max_tries", a.das_max_tries);
  read(json, "augment.das_accept_iou", a.das_accept_iou);
  read(json, "augment.flip_prob", a.flip_prob);
  read(json, "augment.min_face_size", a.min_face_size);
  data::validate(a);

  OptimConfig& o = c.optim;
  read(json, "optim.lr", o.lr);
  read(json, "optim.momentum", o.momentum);
  read(json, "optim.weight_decay", o.weight_decay);
  read(json, "optim.batch", o.batch);
  read(json, "optim.epochs", o.epochs);
  read(json, "optim.milestones", o.milestones);
  read(json, "optim.gamma", o.gamma);
  read(json, "optim.warmup_epochs", o.warmup_epochs);
  read(json, "optim.warmup_factor", o.warmup_factor);
  read(json, "optim.clip_grad_norm", o.clip_grad_norm);
  ISRN_CHECK(o.lr > 0 && o.momentum >= 0 && o.weight_decay >= 0, "[train_config] optim.lr must be positive and "
             "optim.momentum, optim.weight_decay non-negative");
  ISRN_CHECK(o.batch > 0, "[train_config] key 'optim.batch' must be positive, got ", o.batch);
  ISRN_CHECK(o.epochs > 0, "[train_config] key 'optim.epochs' must be positive, got ", o.epochs);
  ISRN_CHECK(o.warmup_epochs >= 0 && o.warmup_factor > 0 && o.warmup_factor <= 1, "[train_config] optim.warmup_epochs "
             "must be non-negative and optim.warmup_factor in (0, 1]");
  for (size_t i = 0; i < o.milestones.size(); ++i)
    ISRN_CHECK(o.milestones[i] >= 0 && (i == 0 || o.milestones[i] > o.milestones[i - 1]),
               "[train_config] key 'optim.milestones' must be increasing and non-negative");

  RunConfig& r = c.run;
  read(json, "train.seed", r.seed);
  read(json, "train.workers", r.workers);
  read(json, "train.prefetch", r.prefetch);
  read(json, "train.checkpoint_every", r.checkpoint_every);
  read(json, "train.keep_last", r.keep_last);
  read(json, "train.eval_every_epochs", r.eval_every_epochs);
  read(json, "train.log_every", r.log_every);
  read(json, "train.activation_checkpointing", r.activation_checkpointing);
  read(json, "train.precision", r.precision);
  ISRN_CHECK(r.precision == "fp32" || r.precision == "bf16", "[train_config] key 'train.precision' must be \"fp32\" or "
             "\"bf16\", got \"", r.precision, "\"");
  ISRN_CHECK(r.workers >= 0 && r.prefetch >= 1, "[train_config] train.workers must be ≥ 0 and train.prefetch ≥ 1");
  ISRN_CHECK(r.checkpoint_every > 0 && r.keep_last > 0 && r.log_every > 0, "[train_config] train.checkpoint_every, "
             "train.keep_last and train.log_every must be positive");
  ISRN_CHECK(r.eval_every_epochs >= 0, "[train_config] key 'train.eval_every_epochs' must be non-negative");

  data::SyntheticConfig& s = c.synthetic.scenes;
  read(json, "data.synthetic.min_image_size", s.min_image_size);
  read(json, "data.synthetic.max_image_size", s.max_image_size);
  read(json, "data.synthetic.min_faces", s.min_faces);
  read(json, "data.synthetic.max_faces", s.max_faces);
  read(json, "data.synthetic.min_face_size", s.min_face_size);
  read(json, "data.synthetic.max_face_size", s.max_face_size);
  read(json, "data.synthetic.min_distractors", s.min_distractors);
  read(json, "data.synthetic.max_distractors", s.max_distractors);
  read(json, "data.synthetic.blur_prob", s.blur_prob);
  read(json, "data.synthetic.occlusion_prob", s.occlusion_prob);
  read(json, "data.synthetic.val_images", c.synthetic.val_images);
  ISRN_CHECK(c.synthetic.val_images >= 0, "[train_config] key 'data.synthetic.val_images' must be non-negative");

  json.check_no_unknown_keys();
  return c;
}

TrainConfig TrainConfig::from_file(const std::string& path) { return from_json(io::JsonConfig::from_file(path)); }

std::string TrainConfig::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(detector.to_json());
  const data::AugmentConfig& a = augment;
  j["augment"] = {{"size", a.size},
                  {"mean_pixel", {a.mean_pixel[0], a.mean_pixel[1], a.mean_pixel[2]}},
                  {"brightness_prob", a.brightness_prob},
                  {"brightness_delta", a.brightness_delta},
                  {"contrast_prob", a.contrast_prob},
                  {"contrast_lower", a.contrast_lower},
                  {"contrast_upper", a.contrast_upper},
                  {"saturation_prob", a.saturation_prob},
                  {"saturation_lower", a.saturation_lower},
                  {"saturation_upper", a.saturation_upper},
                  {"hue_prob", a.hue_prob},
                  {"hue_delta", a.hue_delta},
                  {"contrast_last_prob", a.contrast_last_prob},
                  {"expand_prob", a.expand_prob},
                  {"expand_max_ratio", a.expand_max_ratio},
                  {"full_side_crop_prob", a.full_side_crop_prob},
                  {"min_crop_scale", a.min_crop_scale},
                  {"crop_max_tries", a.crop_max_tries},
                  {"das_prob", a.das_prob},
                  {"das_anchor_sizes", a.das_anchor_sizes},
                  {"das_max_area", a.das_max_area},
                  {"das_max_tries", a.das_max_tries},
                  {"das_accept_iou", a.das_accept_iou},
                  {"flip_prob", a.flip_prob},
                  {"min_face_size", a.min_face_size}};
  j["optim"] = {{"lr", optim.lr},
                {"momentum", optim.momentum},
                {"weight_decay", optim.weight_decay},
                {"batch", optim.batch},
                {"epochs", optim.epochs},
                {"milestones", optim.milestones},
                {"gamma", optim.gamma},
                {"warmup_epochs", optim.warmup_epochs},
                {"warmup_factor", optim.warmup_factor},
                {"clip_grad_norm", optim.clip_grad_norm}};
  j["train"] = {{"seed", run.seed},
                {"workers", run.workers},
                {"prefetch", run.prefetch},
                {"checkpoint_every", run.checkpoint_every},
                {"keep_last", run.keep_last},
                {"eval_every_epochs", run.eval_every_epochs},
                {"log_every", run.log_every},
                {"activation_checkpointing", run.activation_checkpointing},
                {"precision", run.precision}};
  const data::SyntheticConfig& s = synthetic.scenes;
  j["data"] = {{"synthetic",
                {{"min_image_size", s.min_image_size},
                 {"max_image_size", s.max_image_size},
                 {"min_faces", s.min_faces},
                 {"max_faces", s.max_faces},
                 {"min_face_size", s.min_face_size},
                 {"max_face_size", s.max_face_size},
                 {"min_distractors", s.min_distractors},
                 {"max_distractors", s.max_distractors},
                 {"blur_prob", s.blur_prob},
                 {"occlusion_prob", s.occlusion_prob},
                 {"val_images", synthetic.val_images}}}};
  return j.dump(2) + "\n";
}

}  // namespace isrn::train
