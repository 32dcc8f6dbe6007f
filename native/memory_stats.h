// Memory accounting: the CPU allocation high-water mark (exact, from a counting allocator installed in front of
// LibTorch's CPU allocator) and, on CUDA, the caching allocator's allocated/peak bytes.
#pragma once
#include <cstdint>

namespace llamapro {

struct MemoryCounters {
  int64_t current;
  int64_t peak;
};

// Installs the counting CPU allocator (once). Called when the addon loads.
void InstallCountingCpuAllocator();
MemoryCounters CpuMemory();
void ResetCpuPeak();

// Returns false when LibTorch has no CUDA or no device is present.
bool CudaMemory(int device, MemoryCounters* out);
void ResetCudaPeak(int device);

}  // namespace llamapro
