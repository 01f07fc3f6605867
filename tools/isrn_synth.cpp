// isrn-synth: writes procedurally generated face scenes (isrn/data/synthetic.hpp) in the official WIDER
// FACE layout, so that every tool written for WIDER (the data set reader, the evaluator) runs on them.
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "isrn/core/error.hpp"
#include "isrn/data/synthetic.hpp"

int main(int argc, char** argv) {
  isrn::data::WiderExport options;
  isrn::data::SyntheticConfig& config = options.config;
  options.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  CLI::App app{"isrn-synth: write generated face scenes in the WIDER FACE layout "
               "(WIDER_{train,val}/images/<event>/<name>.jpg, wider_face_split/wider_face_{train,val}_bbx_gt.txt)"};
  app.add_option("--out", options.out_dir, "output folder (created)")->required();
  // Counts are read as signed numbers so that "-5" is refused rather than wrapped to 2^64 − 5.
  int64_t train = 0, val = 0;
  const auto count_range = CLI::Range(int64_t{0}, int64_t{100'000'000});
  app.add_option("--train", train, "number of training images")->check(count_range)->capture_default_str();
  app.add_option("--val", val, "number of validation images")->check(count_range)->capture_default_str();
  app.add_option("--seed", options.seed, "data set seed: the same seed writes the same files")->capture_default_str();
  app.add_option("--min-size", config.min_face_size, "smallest face, sqrt(w*h) in pixels")->capture_default_str();
  app.add_option("--max-size", config.max_face_size, "largest face, sqrt(w*h) in pixels")->capture_default_str();
  app.add_option("--min-image", config.min_image_size, "smallest image side in pixels")->capture_default_str();
  app.add_option("--max-image", config.max_image_size, "largest image side in pixels")->capture_default_str();
  app.add_option("--min-faces", config.min_faces, "fewest faces per image")->capture_default_str();
  app.add_option("--max-faces", config.max_faces, "most faces per image")->capture_default_str();
  app.add_option("--quality", options.jpeg_quality, "JPEG quality, 1..100")->capture_default_str();
  app.add_option("--threads", options.threads, "worker threads (the output does not depend on them)")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "isrn-synth: %s (see --help)\n", e.what());
    return 2;
  }

  options.train = static_cast<size_t>(train);
  options.val = static_cast<size_t>(val);
  try {
    const auto start = std::chrono::steady_clock::now();
    const isrn::data::WiderExportCounts counts = isrn::data::write_synthetic_wider(options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const size_t images = counts.train_images + counts.val_images;
    std::printf("isrn-synth: wrote %zu training images (%zu faces) and %zu validation images (%zu faces) to %s "
                "in %.1f s (%.1f ms per image on %d threads)\n",
                counts.train_images, counts.train_faces, counts.val_images, counts.val_faces, options.out_dir.c_str(),
                seconds, images ? 1000.0 * seconds / static_cast<double>(images) : 0.0, options.threads);
  } catch (const isrn::Error& e) {
    std::fprintf(stderr, "isrn-synth: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // filesystem errors (a folder that cannot be created)
    std::fprintf(stderr, "isrn-synth: %s\n", e.what());
    return 1;
  }
  return 0;
}
