#pragma once
// ISRN_HOST_DEVICE marks the small functions that CPU loops and CUDA kernels share.
#if defined(__CUDACC__)
#define ISRN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ISRN_HOST_DEVICE inline
#endif
