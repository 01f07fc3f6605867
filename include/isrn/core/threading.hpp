#pragma once

namespace isrn {

// Threads used by the CPU kernels (OpenMP and Eigen). Defaults to the OpenMP default
// (OMP_NUM_THREADS or the number of cores).
void set_num_threads(int threads);
int get_num_threads();

}  // namespace isrn
