// The library in a few lines: load a trained detector, find the faces in an image, print and draw them.
//   detect_faces CHECKPOINT IMAGE [OUTPUT.jpg]
#include <cstdio>

#include "isrn/isrn.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT IMAGE [OUTPUT.jpg]\n", argv[0]);
    return 2;
  }
  try {
    auto detector = isrn::models::load_detector(argv[1]);  // weights and configuration
    isrn::data::Image image = isrn::data::read_image(argv[2]);
    const isrn::models::Detections found = detector->detect(isrn::data::to_tensor(image).unsqueeze(0)).front();
    const std::vector<isrn::data::Box> boxes = isrn::data::boxes_from_tensor(found.boxes);
    const std::vector<float> scores = found.scores.to_vector<float>();  // in descending order
    for (size_t i = 0; i < scores.size() && scores[i] >= 0.5f; ++i)
      std::printf("face %.1f %.1f %.1f %.1f score %.3f\n", boxes[i].x1, boxes[i].y1, boxes[i].x2, boxes[i].y2,
                  scores[i]);
    isrn::data::draw_detections(image, boxes, scores, 0.5f);
    isrn::data::write_image(argc > 3 ? argv[3] : "faces.jpg", image);
    return 0;
  } catch (const isrn::Error& e) {
    std::fprintf(stderr, "detect_faces: %s\n", e.what());
    return 1;
  }
}
