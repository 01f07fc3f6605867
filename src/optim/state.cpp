#include "isrn/optim/state.hpp"

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "isrn/io/safetensors.hpp"

namespace isrn::optim {

namespace {

std::string buffer_name(size_t g, size_t i) { return "momentum.group" + std::to_string(g) + ".param" + std::to_string(i); }

}  // namespace

std::string training_state_path(const std::string& checkpoint_path) {
  const std::string ext = ".safetensors";
  if (checkpoint_path.size() > ext.size() && checkpoint_path.ends_with(ext))
    return checkpoint_path.substr(0, checkpoint_path.size() - ext.size()) + ".train" + ext;
  return checkpoint_path + ".train" + ext;
}

void save_training_state(const std::string& path, const SGD& optimizer, const TrainingProgress& progress) {
  io::NamedTensors tensors;
  nlohmann::json groups = nlohmann::json::array();
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    const ParamGroup& group = optimizer.group(g);
    groups.push_back({{"lr", group.lr}, {"params", group.params.size()}});
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& buffer = optimizer.momentum_buffer(g, i);
      if (buffer.defined()) tensors.emplace_back(buffer_name(g, i), buffer);
    }
  }
  nlohmann::json generators = nlohmann::json::object();
  for (const auto& [name, snap] : progress.generators)
    generators[name] = {{"state", snap.state}, {"has_spare", snap.has_spare}, {"spare", snap.spare}};
  const nlohmann::json doc = {{"iteration", progress.iteration},
                              {"epoch", progress.epoch},
                              {"batches_in_epoch", progress.batches_in_epoch},
                              {"generators", generators},
                              {"extra", progress.extra},
                              {"groups", groups}};
  // dump() writes doubles with enough digits to read back the same value: the learning rates and the
  // cached normal draw survive exactly.
  io::save_safetensors(path, tensors,
                       {{"format", kTrainingStateFormat},
                        {"format_version", kTrainingStateFormatVersion},
                        {"progress", doc.dump()}});
}

TrainingProgress load_training_state(const std::string& path, SGD& optimizer) {
  const std::string where = "[training_state] " + path + ": ";
  const io::SafetensorsFile file = io::load_safetensors(path);
  const auto meta = [&](const char* key) {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? std::string("<absent>") : it->second;
  };
  ISRN_CHECK(meta("format") == kTrainingStateFormat, where, "format is '", meta("format"), "', expected '",
             kTrainingStateFormat, "'");
  ISRN_CHECK(meta("format_version") == kTrainingStateFormatVersion, where, "format_version is '",
             meta("format_version"), "', this build reads '", kTrainingStateFormatVersion, "'");
  TrainingProgress progress;
  nlohmann::json groups;
  try {
    const nlohmann::json doc = nlohmann::json::parse(meta("progress"));
    progress.iteration = doc.at("iteration").get<int64_t>();
    progress.epoch = doc.at("epoch").get<int64_t>();
    progress.batches_in_epoch = doc.at("batches_in_epoch").get<int64_t>();
    for (const auto& [name, g] : doc.at("generators").items())
      progress.generators[name] = {g.at("state").get<uint64_t>(), g.at("has_spare").get<bool>(),
                                   g.at("spare").get<double>()};
    progress.extra = doc.at("extra").get<std::map<std::string, std::string>>();
    groups = doc.at("groups");
  } catch (const nlohmann::json::exception& e) {
    ISRN_CHECK(false, where, "malformed progress record: ", e.what());
  }
  std::map<std::string, const Tensor*> buffers;
  for (const auto& [name, t] : file.tensors) buffers[name] = &t;
  ISRN_CHECK(groups.is_array() && groups.size() == optimizer.num_groups(), where, "holds ", groups.size(),
             " parameter groups, the optimizer has ", optimizer.num_groups());
  // Validate everything before changing the optimizer, so a mismatch leaves it as it was.
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    const size_t count = groups[g].at("params").get<size_t>();
    ISRN_CHECK(count == optimizer.group(g).params.size(), where, "group ", g, " has ", count,
               " parameters, the optimizer's has ", optimizer.group(g).params.size());
    for (size_t i = 0; i < count; ++i) {
      auto it = buffers.find(buffer_name(g, i));
      if (it == buffers.end()) continue;
      const Tensor& t = *it->second;
      const Tensor& p = optimizer.group(g).params[i];
      ISRN_CHECK(t.shape() == p.shape() && t.dtype() == p.dtype(), where, "'", it->first, "' is ", t.dtype(), " ",
                 shape_str(t.shape()), ", the parameter is ", p.dtype(), " ", shape_str(p.shape()));
    }
  }
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    optimizer.set_lr(g, groups[g].at("lr").get<double>());
    for (size_t i = 0; i < optimizer.group(g).params.size(); ++i) {
      auto it = buffers.find(buffer_name(g, i));
      optimizer.set_momentum_buffer(
          g, i, it == buffers.end() ? Tensor() : it->second->to(optimizer.group(g).params[i].device()));
    }
  }
  return progress;
}

}  // namespace isrn::optim
