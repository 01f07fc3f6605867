#pragma once

namespace isrn {

// Threads used by the CPU kernels: isrn's own pool, whose workers plus the calling thread share each
// kernel's work. The default is ISRN_NUM_THREADS if set, else OMP_NUM_THREADS if set (the first
// number of its list), else the number of cores. A change takes effect at the next kernel that
// uses the pool; the workers are started, stopped and joined by the library (at exit too).
void set_num_threads(int threads);
int get_num_threads();

}  // namespace isrn
