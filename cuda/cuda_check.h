// Turns CUDA runtime and cuBLAS status codes into tidal::Error, so device
// failures travel the same path as every other error in the engine.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "core/error.h"

namespace tidal::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* what) {
  const ErrorCode code = status == cudaErrorMemoryAllocation ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  throw Error(code, std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw_cuda_error(status, what);
}

inline void check(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const ErrorCode code = status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  throw Error(code, std::string(what) + ": " + cublasGetStatusString(status));
}

// Kernel launches report configuration errors only through the next query.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

}  // namespace tidal::cuda
