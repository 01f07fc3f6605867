#include "isrn/optim/state.hpp"

#include <limits>
#include <map>
#include <string>
#include <vector>

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
  struct Group {
    double lr;
    size_t params;
  };
  std::vector<Group> groups;
  try {
    const nlohmann::json doc = nlohmann::json::parse(meta("progress"));
    // nlohmann's get<> converts between number kinds silently (-1 to 2^64 - 1, 2.5 to 2): each value is
    // checked for the kind it must be.
    const auto non_negative_integer = [&](const nlohmann::json& object, const char* key) {
      const nlohmann::json& v = object.at(key);
      ISRN_CHECK(v.is_number_unsigned(), where, "progress '", key, "' is ", v.dump(), ", not a non-negative integer");
      const uint64_t value = v.get<uint64_t>();
      ISRN_CHECK(value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, "progress '", key,
                 "' is ", value, ", beyond int64");
      return static_cast<int64_t>(value);
    };
    progress.iteration = non_negative_integer(doc, "iteration");
    progress.epoch = non_negative_integer(doc, "epoch");
    progress.batches_in_epoch = non_negative_integer(doc, "batches_in_epoch");
    for (const auto& [name, g] : doc.at("generators").items()) {
      ISRN_CHECK(g.at("state").is_number_unsigned() && g.at("has_spare").is_boolean() &&
                     g.at("spare").is_number(),
                 where, "generator '", name, "' is ", g.dump(),
                 ", not {state: unsigned, has_spare: bool, spare: number}");
      progress.generators[name] = {g.at("state").get<uint64_t>(), g.at("has_spare").get<bool>(),
                                   g.at("spare").get<double>()};
    }
    progress.extra = doc.at("extra").get<std::map<std::string, std::string>>();
    const nlohmann::json& group_list = doc.at("groups");
    ISRN_CHECK(group_list.is_array(), where, "progress 'groups' is a JSON ", group_list.type_name(), ", not an array");
    for (const nlohmann::json& g : group_list) {
      const nlohmann::json& lr = g.at("lr");
      ISRN_CHECK(lr.is_number() && lr.get<double>() >= 0, where, "a group's lr is ", lr.dump(),
                 ", not a non-negative number");
      groups.push_back({lr.get<double>(), static_cast<size_t>(non_negative_integer(g, "params"))});
    }
  } catch (const nlohmann::json::exception& e) {
    ISRN_CHECK(false, where, "malformed progress record: ", e.what());
  }
  std::map<std::string, const Tensor*> buffers;
  for (const auto& [name, t] : file.tensors) buffers[name] = &t;
  ISRN_CHECK(groups.size() == optimizer.num_groups(), where, "holds ", groups.size(),
             " parameter groups, the optimizer has ", optimizer.num_groups());
  // Validate everything before changing the optimizer, so a mismatch leaves it as it was.
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    const size_t count = groups[g].params;
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
    optimizer.set_lr(g, groups[g].lr);
    for (size_t i = 0; i < optimizer.group(g).params.size(); ++i) {
      auto it = buffers.find(buffer_name(g, i));
      optimizer.set_momentum_buffer(
          g, i, it == buffers.end() ? Tensor() : it->second->to(optimizer.group(g).params[i].device()));
    }
  }
  return progress;
}

}  // namespace isrn::optim
