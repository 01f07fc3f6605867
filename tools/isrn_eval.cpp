// isrn-eval: scores face detections written in the WIDER FACE prediction layout against the official validation
// ground truth with the official protocol (src/eval/wider_eval.cpp, design/WIDER_EVAL.md). The last line of
// standard output is `easy <AP> medium <AP> hard <AP>`; warnings go to standard error.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "isrn/core/error.hpp"
#include "isrn/eval/wider_eval.hpp"
#include "wider_mat.hpp"

namespace {

std::vector<std::string> split_events(const std::string& list) {
  std::vector<std::string> events;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string event = list.substr(start, comma - start);
    ISRN_CHECK(!event.empty(), "--events: empty event name in '", list, "'");
    events.push_back(event);
    start = comma + 1;
  }
  return events;
}

// --pr-curve out/pr, out/pr.csv and out/pr.svg all mean: out/pr.csv and out/pr.svg.
std::string curve_stem(std::string path) {
  for (const char* ext : {".csv", ".svg"}) {
    const std::string e(ext);
    if (path.size() > e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0)
      return path.substr(0, path.size() - e.size());
  }
  return path;
}

int run(const std::string& pred_dir, const std::string& gt_dir, const std::string& events_list,
        const std::string& json_path, const std::string& pr_path, bool all_images) {
  using namespace isrn::eval;
  GroundTruth truth = read_wider_ground_truth(gt_dir);
  std::set<std::string> events;
  if (!events_list.empty()) {
    const std::vector<std::string> wanted = split_events(events_list);
    truth = restrict_to_events(truth, wanted);
    events.insert(wanted.begin(), wanted.end());
  }
  const size_t truth_images = truth.images.size();

  PredictionFolder folder = read_prediction_folder(pred_dir);
  for (const std::string& w : folder.warnings) std::cerr << "warning: " << w << "\n";
  if (!events.empty())
    std::erase_if(folder.predictions,
                  [&](const auto& entry) { return !events.count(entry.first.substr(0, entry.first.find('/'))); });

  EvalOptions options;
  options.all_images = all_images;
  const EvalResult result = evaluate(truth, folder.predictions, options);
  ISRN_CHECK(result.images > 0, "no prediction file under ", pred_dir, " names an image of the ground truth",
             events.empty() ? "" : " in the chosen events", " (expected <event>/<image name>.txt)");
  for (const std::string& w : result.warnings) std::cerr << "warning: " << w << "\n";

  std::printf("scored %lld of the %zu validation images%s (%lld detections)%s\n",
              static_cast<long long>(result.images), truth_images, events.empty() ? "" : " of the chosen events",
              static_cast<long long>(result.detections),
              all_images ? "; images without a prediction file count as having no detections" : "");
  for (const SettingResult& s : result.settings)
    std::printf("%s: %lld images, %lld faces\n", s.name.c_str(), static_cast<long long>(s.images),
                static_cast<long long>(s.faces));
  if (!json_path.empty()) write_summary_json(result, options, json_path);
  if (!pr_path.empty()) {
    const std::string stem = curve_stem(pr_path);
    write_pr_curve_csv(result, stem + ".csv");
    write_pr_curve_svg(result, stem + ".svg",
                       "WIDER FACE val, " + std::to_string(result.images) + " images");
    std::printf("PR curves: %s.csv, %s.svg\n", stem.c_str(), stem.c_str());
  }
  std::printf("%s\n", summary_line(result).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Scores WIDER FACE predictions (<event>/<name>.txt files) against the official validation ground "
               "truth with the official evaluation protocol. Only images with a prediction file are scored unless "
               "--all-images is given. The last line printed is `easy <AP> medium <AP> hard <AP>`.",
               "isrn-eval"};
  std::string pred_dir, gt_dir, events, json_path, pr_path;
  bool all_images = false;
  app.add_option("--pred", pred_dir, "folder in the WIDER prediction layout: <event>/<image name>.txt")
      ->type_name("DIR")
      ->required();
  app.add_option("--gt", gt_dir,
                 "the official ground_truth folder (wider_face_val.mat, wider_{easy,medium,hard}_val.mat)")
      ->type_name("DIR")
      ->required();
  app.add_option("--events", events, "comma-separated events to score, e.g. 0--Parade,19--Couple (default: all)")
      ->type_name("a,b,...");
  app.add_option("--json", json_path, "write a JSON summary (APs, images and faces per setting, warnings) to FILE")
      ->type_name("FILE");
  app.add_option("--pr-curve", pr_path,
                 "write the PR curves to FILE.csv and FILE.svg (a .csv or .svg suffix on FILE is dropped first)")
      ->type_name("FILE");
  app.add_flag("--all-images", all_images,
               "the official behaviour: every validation image is scored, one without a prediction file as having no "
               "detections");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "isrn-eval: " << e.what() << " (see --help)\n";
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  }
  try {
    return run(pred_dir, gt_dir, events, json_path, pr_path, all_images);
  } catch (const std::exception& e) {
    std::cerr << "isrn-eval: " << e.what() << "\n";
    return 1;
  }
}
