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
// Freed CPU blocks of 64 KiB and more are cached for reuse (the kernel option cpuCache, LLAMAPRO_CPU_CACHE=0, turns
// that off): the bytes held, and a release of them all (when a model is disposed, when the option is turned off, and
// before an allocation is given up as failed).
int64_t CpuCachedBytes();
void ReleaseCpuCache();
void ResetCpuPeak();

// Returns false when LibTorch has no CUDA or no device is present.
bool CudaMemory(int device, MemoryCounters* out);
void ResetCudaPeak(int device);

}  // namespace llamapro
