#include "isrn/models/isrn.hpp"

#include <cmath>
#include <iomanip>
#include <sstream>
#include <utility>

#include "isrn/autograd/grad_mode.hpp"
#include "isrn/ops/loss.hpp"

namespace isrn::models {

namespace {

std::string stem_name(Stem s) { return s == Stem::isrn ? "isrn" : "resnet"; }
std::string upsample_name(ResizeMode m) { return m == ResizeMode::Bilinear ? "bilinear" : "nearest"; }
std::string p6_name(P6Source s) { return s == P6Source::lateral ? "lateral" : "p5"; }

// An enum from its JSON spelling; anything else names the key and the spellings allowed.
template <typename E>
E parse_choice(const io::JsonConfig& json, const std::string& key, E fallback,
               const std::vector<std::pair<std::string, E>>& choices) {
  const std::string fallback_name = [&] {
    for (auto& [name, value] : choices)
      if (value == fallback) return name;
    return choices.front().first;
  }();
  const std::string text = json.get<std::string>(key, fallback_name);
  std::string allowed;
  for (auto& [name, value] : choices) {
    if (name == text) return value;
    allowed += (allowed.empty() ? "'" : ", '") + name + "'";
  }
  ::isrn::detail::throw_error(__FILE__, __LINE__,
                      ::isrn::detail::concat("[detector_config] key '", key, "': '", text, "' is not one of ", allowed));
}

// Shortest text that reads back to the same double.
std::string number(double v) {
  std::ostringstream s;
  s << std::setprecision(17) << v;
  return s.str();
}

std::string number_list(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + number(v[i]);
  return out + "]";
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }
std::string boolean(bool b) { return b ? "true" : "false"; }

}  // namespace

DetectorConfig DetectorConfig::resolved() const {
  DetectorConfig c = *this;
  c.fpn.width_mult = c.backbone.width_mult;
  c.fpn.norm = c.backbone.norm;
  c.fpn.dtype = c.backbone.dtype;
  c.head.channels = c.fpn.channels();
  c.head.norm = c.backbone.norm;
  c.head.dtype = c.backbone.dtype;
  c.head.num_anchors = c.anchors.anchors_per_location();
  c.backbone.extra_levels = true;  // levels 6 and 7 are part of the detector
  c.infer.stc_levels = c.loss.targets.stc_levels;
  c.infer.str_levels = c.loss.targets.str_levels;
  c.infer.variances = c.loss.targets.match.variances;
  c.infer.max_log_scale = c.loss.targets.max_log_scale;
  return c;
}

DetectorConfig DetectorConfig::from_json(const io::JsonConfig& json) {
  DetectorConfig c = read(json);
  json.check_no_unknown_keys();
  return c;
}

DetectorConfig DetectorConfig::read(const io::JsonConfig& json) {
  DetectorConfig c;
  ResNetConfig& b = c.backbone;
  const int64_t depth = json.get<int64_t>("model.backbone.depth", b.depth);
  // Checked before the narrowing to int, which would read 2^32 + 18 as 18.
  ISRN_CHECK(depth == 18 || depth == 34 || depth == 50, "[detector_config] key 'model.backbone.depth' must be 18, "
             "34 or 50, got ", depth);
  b.depth = static_cast<int>(depth);
  b.width_mult = json.get<double>("model.backbone.width_mult", b.width_mult);
  b.stem = parse_choice<Stem>(json, "model.backbone.stem", b.stem, {{"isrn", Stem::isrn}, {"resnet", Stem::resnet}});
  const bool group = parse_choice<bool>(json, "model.norm", b.norm.enabled(), {{"group", true}, {"none", false}});
  const int64_t groups = json.get<int64_t>("model.norm_groups", b.norm.groups);
  ISRN_CHECK(groups > 0, "[detector_config] key 'model.norm_groups' must be positive, got ", groups);
  b.norm = group ? nn::NormConfig::group(groups) : nn::NormConfig::none();
  b.norm.groups = groups;

  c.fpn.upsample = parse_choice<ResizeMode>(json, "model.fpn.upsample", c.fpn.upsample,
                                            {{"bilinear", ResizeMode::Bilinear}, {"nearest", ResizeMode::Nearest}});
  c.fpn.p6_from = parse_choice<P6Source>(json, "model.fpn.p6_from", c.fpn.p6_from,
                                         {{"lateral", P6Source::lateral}, {"p5", P6Source::p5}});
  c.head.separate_step1_predictors =
      json.get<bool>("model.head.separate_step1_predictors", c.head.separate_step1_predictors);
  c.head.prior = json.get<double>("model.head.prior", c.head.prior);

  c.anchors.scales = json.get<std::vector<double>>("anchors.scales", c.anchors.scales);
  c.anchors.ratio = json.get<double>("anchors.ratio", c.anchors.ratio);
  c.anchors.plus_one_corners = json.get<bool>("anchors.plus_one_corners", c.anchors.plus_one_corners);

  TwoStepConfig& t = c.loss.targets;
  t.match.step1.negative_below = json.get<double>("match.step1.neg", t.match.step1.negative_below);
  t.match.step1.positive_at_least = json.get<double>("match.step1.pos", t.match.step1.positive_at_least);
  t.match.step2.negative_below = json.get<double>("match.step2.neg", t.match.step2.negative_below);
  t.match.step2.positive_at_least = json.get<double>("match.step2.pos", t.match.step2.positive_at_least);
  t.match.best_anchor_rule = json.get<bool>("match.best_anchor_rule", t.match.best_anchor_rule);
  t.stc_theta = json.get<double>("stc.theta", t.stc_theta);
  c.loss.focal_alpha = json.get<double>("loss.alpha", c.loss.focal_alpha);
  c.loss.focal_gamma = json.get<double>("loss.gamma", c.loss.focal_gamma);
  c.loss.smooth_l1_beta = json.get<double>("loss.smooth_l1_beta", c.loss.smooth_l1_beta);

  InferenceConfig& i = c.infer;
  i.stc_theta = json.get<double>("infer.theta", i.stc_theta);
  i.score_threshold = json.get<double>("infer.score_threshold", i.score_threshold);
  i.pre_nms_top_n = json.get<int64_t>("infer.top_k", i.pre_nms_top_n);
  i.nms_iou = json.get<double>("infer.nms", i.nms_iou);
  i.keep_top_n = json.get<int64_t>("infer.keep", i.keep_top_n);

  AblationConfig& a = c.ablation;
  a.se = json.get<bool>("ablation.se", a.se);
  a.se_reduction = json.get<int64_t>("ablation.se_reduction", a.se_reduction);
  a.seg_branch = json.get<bool>("ablation.seg_branch", a.seg_branch);
  a.seg_mode = parse_choice<SegMode>(json, "ablation.seg_mode", a.seg_mode,
                                     {{"multiply", SegMode::multiply}, {"residual", SegMode::residual}});
  a.seg_weight = json.get<double>("ablation.seg_weight", a.seg_weight);
  ISRN_CHECK(a.se_reduction > 0, "[detector_config] key 'ablation.se_reduction' must be positive, got ",
             a.se_reduction);
  ISRN_CHECK(a.seg_weight >= 0, "[detector_config] key 'ablation.seg_weight' must be non-negative, got ",
             a.seg_weight);

  // Numbers out of range are named by their key when the file is read, not by the op that would meet them at
  // construction or at the first step (or never: a negative gamma only shows as a NaN loss much later).
  const auto require = [](bool ok, const char* key, double value, const char* range) {
    ISRN_CHECK(ok, "[detector_config] key '", key, "' must be ", range, ", got ", value);
  };
  const auto fraction = [&](const char* key, double value) {
    require(value >= 0 && value <= 1, key, value, "in [0, 1]");
  };
  // 16x the paper's width is 1.6 G parameters in the backbone alone: beyond that a typo, not a model.
  require(b.width_mult > 0 && b.width_mult <= 16, "model.backbone.width_mult", b.width_mult, "in (0, 16]");
  require(c.head.prior > 0 && c.head.prior < 1, "model.head.prior", c.head.prior, "in (0, 1)");
  ISRN_CHECK(!c.anchors.scales.empty(), "[detector_config] key 'anchors.scales' must list at least one scale");
  for (const double s : c.anchors.scales)
    require(std::isfinite(s) && s > 0, "anchors.scales", s, "finite and positive");
  require(std::isfinite(c.anchors.ratio) && c.anchors.ratio > 0, "anchors.ratio", c.anchors.ratio,
          "finite and positive");
  for (const auto& [step, thresholds] : {std::pair{"step1", &t.match.step1}, std::pair{"step2", &t.match.step2}}) {
    const std::string neg = std::string("match.") + step + ".neg", pos = std::string("match.") + step + ".pos";
    fraction(neg.c_str(), thresholds->negative_below);
    fraction(pos.c_str(), thresholds->positive_at_least);
    require(thresholds->negative_below <= thresholds->positive_at_least, neg.c_str(), thresholds->negative_below,
            "at most its 'pos'");
  }
  fraction("stc.theta", t.stc_theta);
  fraction("infer.theta", i.stc_theta);
  fraction("loss.alpha", c.loss.focal_alpha);
  require(std::isfinite(c.loss.focal_gamma) && c.loss.focal_gamma >= 0, "loss.gamma", c.loss.focal_gamma,
          "finite and non-negative");
  require(std::isfinite(c.loss.smooth_l1_beta) && c.loss.smooth_l1_beta >= 0, "loss.smooth_l1_beta",
          c.loss.smooth_l1_beta, "finite and non-negative");
  fraction("infer.score_threshold", i.score_threshold);
  fraction("infer.nms", i.nms_iou);
  require(i.pre_nms_top_n >= 0, "infer.top_k", static_cast<double>(i.pre_nms_top_n), "non-negative");
  require(i.keep_top_n >= 0, "infer.keep", static_cast<double>(i.keep_top_n), "non-negative");
  return c.resolved();
}

std::string DetectorConfig::to_json() const {
  const DetectorConfig& c = *this;
  const TwoStepConfig& t = c.loss.targets;
  std::ostringstream s;
  s << "{\n"
    << "  \"model\": {\n"
    << "    \"backbone\": {\"depth\": " << c.backbone.depth << ", \"width_mult\": " << number(c.backbone.width_mult)
    << ", \"stem\": " << quoted(stem_name(c.backbone.stem)) << "},\n"
    << "    \"norm\": " << quoted(c.backbone.norm.enabled() ? "group" : "none")
    << ", \"norm_groups\": " << c.backbone.norm.groups << ",\n"
    << "    \"fpn\": {\"upsample\": " << quoted(upsample_name(c.fpn.upsample))
    << ", \"p6_from\": " << quoted(p6_name(c.fpn.p6_from)) << "},\n"
    << "    \"head\": {\"separate_step1_predictors\": " << boolean(c.head.separate_step1_predictors)
    << ", \"prior\": " << number(c.head.prior) << "}\n"
    << "  },\n"
    << "  \"anchors\": {\"scales\": " << number_list(c.anchors.scales) << ", \"ratio\": " << number(c.anchors.ratio)
    << ", \"plus_one_corners\": " << boolean(c.anchors.plus_one_corners) << "},\n"
    << "  \"match\": {\"step1\": {\"neg\": " << number(t.match.step1.negative_below)
    << ", \"pos\": " << number(t.match.step1.positive_at_least) << "}, \"step2\": {\"neg\": "
    << number(t.match.step2.negative_below) << ", \"pos\": " << number(t.match.step2.positive_at_least)
    << "}, \"best_anchor_rule\": " << boolean(t.match.best_anchor_rule) << "},\n"
    << "  \"stc\": {\"theta\": " << number(t.stc_theta) << "},\n"
    << "  \"loss\": {\"alpha\": " << number(c.loss.focal_alpha) << ", \"gamma\": " << number(c.loss.focal_gamma)
    << ", \"smooth_l1_beta\": " << number(c.loss.smooth_l1_beta) << "},\n"
    << "  \"infer\": {\"theta\": " << number(c.infer.stc_theta) << ", \"score_threshold\": "
    << number(c.infer.score_threshold) << ", \"top_k\": " << c.infer.pre_nms_top_n
    << ", \"nms\": " << number(c.infer.nms_iou) << ", \"keep\": " << c.infer.keep_top_n << "},\n"
    << "  \"ablation\": {\"se\": " << boolean(c.ablation.se) << ", \"se_reduction\": " << c.ablation.se_reduction
    << ", \"seg_branch\": " << boolean(c.ablation.seg_branch) << ", \"seg_mode\": "
    << quoted(c.ablation.seg_mode == SegMode::multiply ? "multiply" : "residual")
    << ", \"seg_weight\": " << number(c.ablation.seg_weight) << "}\n"
    << "}\n";
  return s.str();
}

bool same_config(const DetectorConfig& a, const DetectorConfig& b) {
  const TwoStepConfig& ta = a.loss.targets;
  const TwoStepConfig& tb = b.loss.targets;
  return a.backbone.depth == b.backbone.depth && a.backbone.width_mult == b.backbone.width_mult &&
         a.backbone.stem == b.backbone.stem && a.backbone.norm.kind == b.backbone.norm.kind &&
         a.backbone.norm.groups == b.backbone.norm.groups && a.fpn.upsample == b.fpn.upsample &&
         a.fpn.p6_from == b.fpn.p6_from && a.head.separate_step1_predictors == b.head.separate_step1_predictors &&
         a.head.prior == b.head.prior && a.anchors.scales == b.anchors.scales && a.anchors.ratio == b.anchors.ratio &&
         a.anchors.plus_one_corners == b.anchors.plus_one_corners &&
         ta.match.step1.negative_below == tb.match.step1.negative_below &&
         ta.match.step1.positive_at_least == tb.match.step1.positive_at_least &&
         ta.match.step2.negative_below == tb.match.step2.negative_below &&
         ta.match.step2.positive_at_least == tb.match.step2.positive_at_least &&
         ta.match.best_anchor_rule == tb.match.best_anchor_rule && ta.stc_theta == tb.stc_theta &&
         a.loss.focal_alpha == b.loss.focal_alpha && a.loss.focal_gamma == b.loss.focal_gamma &&
         a.loss.smooth_l1_beta == b.loss.smooth_l1_beta && a.infer.stc_theta == b.infer.stc_theta &&
         a.infer.score_threshold == b.infer.score_threshold && a.infer.pre_nms_top_n == b.infer.pre_nms_top_n &&
         a.infer.nms_iou == b.infer.nms_iou && a.infer.keep_top_n == b.infer.keep_top_n &&
         a.ablation.se == b.ablation.se && a.ablation.se_reduction == b.ablation.se_reduction &&
         a.ablation.seg_branch == b.ablation.seg_branch && a.ablation.seg_mode == b.ablation.seg_mode &&
         a.ablation.seg_weight == b.ablation.seg_weight;
}

Detector::Detector(const DetectorConfig& config, Generator& gen) : config_(config.resolved()) {
  ISRN_CHECK(config_.anchors.strides.size() == 6, "[detector] the backbone yields 6 levels (strides 4..128), the "
             "anchor config has ", config_.anchors.strides.size());
  backbone = register_module("backbone", std::make_shared<ResNet>(config_.backbone, gen));
  first_step = register_module("first_step",
                               std::make_shared<FirstStepFeatures>(backbone->out_channels(), config_.fpn, gen));
  fpn = register_module("fpn", std::make_shared<FPN>(backbone->out_channels(), config_.fpn, gen));
  head = register_module("head", std::make_shared<Head>(config_.head, gen));
  const int64_t channels = config_.fpn.channels();
  const DType dtype = config_.backbone.dtype;
  if (config_.ablation.se) {
    se_step1 = register_module("se_step1", std::make_shared<nn::Sequential>());
    se_step2 = register_module("se_step2", std::make_shared<nn::Sequential>());
    for (size_t l = 0; l < config_.anchors.strides.size(); ++l) {
      se_step1->push_back(std::make_shared<SEBlock>(channels, config_.ablation.se_reduction, dtype, gen));
      se_step2->push_back(std::make_shared<SEBlock>(channels, config_.ablation.se_reduction, dtype, gen));
    }
  }
  if (config_.ablation.seg_branch) {
    seg = register_module("seg", std::make_shared<SegBranch>(channels, config_.backbone.norm,
                                                             config_.ablation.seg_mode, dtype, gen));
  }
}

const AnchorSet& Detector::anchors_for(int64_t image_h, int64_t image_w, Device device) {
  const auto key = std::make_tuple(image_h, image_w, static_cast<int>(device.type), device.index);
  auto it = anchor_cache_.find(key);
  if (it == anchor_cache_.end()) {
    const TensorOptions options = TensorOptions(config_.backbone.dtype).device(device);
    it = anchor_cache_.emplace(key, generate_anchors(image_h, image_w, config_.anchors, options)).first;
  }
  return it->second;
}

DetectorOutput Detector::forward(const Tensor& images) {
  ISRN_CHECK(images.defined() && images.dim() == 4 && images.size(1) == 3,
             "[detector] expects images [B, 3, H, W], got shape ",
             images.defined() ? shape_str(images.shape()) : std::string("undefined"));
  const AnchorSet& anchors = anchors_for(images.size(2), images.size(3), images.device());
  const std::vector<Tensor> maps = backbone->forward(images);
  std::vector<Tensor> first = first_step->forward(maps);
  for (size_t l = 0; l < first.size(); ++l) {
    // The anchor layout assumes the halving of feature_map_sizes; a backbone that rounds otherwise
    // would silently pair predictions with the wrong anchors.
    ISRN_CHECK(first[l].size(2) == anchors.map_sizes[l].height && first[l].size(3) == anchors.map_sizes[l].width,
               "[detector] level ", l + 2, " map is ", first[l].size(2), "x", first[l].size(3), ", the anchors expect ",
               anchors.map_sizes[l].height, "x", anchors.map_sizes[l].width);
  }
  const int64_t a = config_.head.num_anchors;
  std::vector<Tensor> second = fpn->forward(maps);
  DetectorOutput out;
  if (seg) {
    out.seg_logits = seg->logits(second[0]);
    second[0] = seg->apply(second[0], out.seg_logits);
  }
  if (se_step1) {
    for (size_t l = 0; l < first.size(); ++l) {
      first[l] = (*se_step1)[l]->forward(first[l]);
      second[l] = (*se_step2)[l]->forward(second[l]);
    }
  }
  FlatPredictions step1 = flatten_predictions(head->forward(first, 1), a);
  FlatPredictions step2 = flatten_predictions(head->forward(second, 2), a);
  out.step1_logits = step1.logits;
  out.step1_deltas = step1.deltas;
  out.step2_logits = step2.logits;
  out.step2_deltas = step2.deltas;
  out.anchors = anchors;
  return out;
}

DetectionLoss Detector::loss(const Tensor& images, const std::vector<Tensor>& gt_boxes) {
  ISRN_CHECK(images.defined() && images.dim() == 4 && static_cast<int64_t>(gt_boxes.size()) == images.size(0),
             "[detector] loss needs one ground-truth tensor per image, got ", gt_boxes.size(), " for images ",
             images.defined() ? shape_str(images.shape()) : std::string("undefined"));
  const DetectorOutput out = forward(images);
  DetectionLoss loss = detection_loss(out.step1_logits, out.step1_deltas, out.step2_logits, out.step2_deltas,
                                      out.anchors, gt_boxes, config_.loss);
  if (out.seg_logits.defined()) {
    const Tensor target = box_mask_targets(gt_boxes, out.seg_logits.size(2), out.seg_logits.size(3),
                                           config_.anchors.strides.front(),
                                           TensorOptions(out.seg_logits.dtype()).device(out.seg_logits.device()));
    loss.seg = binary_cross_entropy_with_logits(out.seg_logits, target, Tensor(), Reduction::Mean);
    loss.total = add(loss.total, mul(loss.seg, config_.ablation.seg_weight));
  }
  return loss;
}

std::vector<Detections> Detector::detect(const Tensor& images, double scale) {
  const bool was_training = is_training();
  eval();
  struct RestoreMode {
    Detector& d;
    bool training;
    ~RestoreMode() { d.train(training); }
  } restore{*this, was_training};
  NoGradGuard no_grad;
  const DetectorOutput out = forward(images);
  std::vector<Detections> result;
  for (int64_t i = 0; i < images.size(0); ++i) {
    result.push_back(detect_single_scale(out.step1_logits.select(0, i), out.step1_deltas.select(0, i),
                                         out.step2_logits.select(0, i), out.step2_deltas.select(0, i), out.anchors,
                                         config_.infer, scale));
  }
  return result;
}

void save_checkpoint(const std::string& path, const Detector& detector) {
  io::Metadata meta{{"format", kCheckpointFormat},
                    {"format_version", kCheckpointFormatVersion},
                    {"config", detector.config().to_json()}};
  io::save_safetensors(path, detector.state_dict(), meta);
}

namespace {

io::SafetensorsFile read_checkpoint(const std::string& path) {
  io::SafetensorsFile file = io::load_safetensors(path);
  const auto field = [&](const char* key) {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? std::string("<absent>") : it->second;
  };
  ISRN_CHECK(field("format") == kCheckpointFormat, "[checkpoint] ", path, ": format is '", field("format"),
             "', expected '", kCheckpointFormat, "'");
  ISRN_CHECK(field("format_version") == kCheckpointFormatVersion, "[checkpoint] ", path, ": format_version is '",
             field("format_version"), "', this build reads '", kCheckpointFormatVersion, "'");
  ISRN_CHECK(file.metadata.count("config"), "[checkpoint] ", path, ": the metadata has no 'config'");
  return file;
}

}  // namespace

std::unique_ptr<Detector> load_detector(const std::string& path) {
  const io::SafetensorsFile file = read_checkpoint(path);
  const DetectorConfig config =
      DetectorConfig::from_json(io::JsonConfig::parse(file.metadata.at("config"), path + " (config)"));
  auto detector = std::make_unique<Detector>(config);
  io::load_into(detector->state_dict(), file.tensors, /*strict=*/true);
  return detector;
}

io::LoadReport load_weights(const std::string& path, Detector& detector, bool strict) {
  const io::SafetensorsFile file = read_checkpoint(path);
  return io::load_into(detector.state_dict(), file.tensors, strict);
}

}  // namespace isrn::models
