#!/usr/bin/env bash
# The CUDA backend on a GPU machine: builds it, runs its tests against the
# CPU reference, then prints the kernel benchmark table (cuda/bench_kernels.cpp)
# — paste that into docs/PERFORMANCE.md with the device and date it prints.
#   bench/gpu.sh            # build in build-gpu/
#   BUILD=dir bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build-gpu}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTIDAL_CUDA=ON
cmake --build "$build" -j"$(nproc)" --target tidal_cuda_tests tidal_cuda_bench
"$build/bin/tidal_cuda_tests"
"$build/bin/tidal_cuda_bench"
