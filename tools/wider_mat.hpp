#pragma once
// The official WIDER FACE evaluation ground truth (eval_tools/ground_truth/*.mat, MATLAB v5), read with libmatio.
// Kept out of the isrn library so that it builds where matio is missing; isrn-eval and the tests link it.
#include <string>
#include <vector>

#include "isrn/eval/wider_eval.hpp"

namespace isrn::eval {

// One file: wider_face_val.mat (no keep lists) or wider_{easy,medium,hard}_val.mat (with gt_list).
struct WiderMat {
  std::vector<std::string> events;                          // event_list, e.g. "0--Parade"
  std::vector<std::vector<std::string>> files;              // file_list: per event, image names without ".jpg"
  std::vector<std::vector<std::vector<FaceBox>>> faces;     // face_bbx_list: per event, per image, x y w h
  bool has_keep_lists = false;
  std::vector<std::vector<std::vector<int64_t>>> keep;      // gt_list: per event, per image, 0-based indices
};

// Errors name the file and the variable/cell at fault: a missing variable, a cell of the wrong class or shape,
// a keep index that is not an integer in 1..faces. Keep lists may be stored as any integer width (the official
// files: uint8, or uint16 for images with more than 255 faces, inside double-class arrays) or as doubles.
WiderMat read_wider_mat(const std::string& path);

// <dir>/wider_face_val.mat plus the three keep-list files, as GroundTruth with settings easy, medium, hard and
// ids "<event>/<name>". The four files must agree on events, images and boxes.
GroundTruth read_wider_ground_truth(const std::string& dir);

}  // namespace isrn::eval
