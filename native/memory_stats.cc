#include "memory_stats.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <atomic>
#include <cstring>

#ifdef LLAMAPRO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace llamapro {
namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

// Each block carries its size in a 64-byte header in front of the pointer handed out, so the deleter needs no
// lookup table, and data pointer == context (LibTorch's raw_allocate asserts that).
constexpr size_t kHeader = 64;

void CountingDelete(void* ptr) {
  if (ptr == nullptr) return;
  char* base = static_cast<char*>(ptr) - kHeader;
  int64_t size = 0;
  std::memcpy(&size, base, sizeof(size));
  g_current.fetch_sub(size, std::memory_order_relaxed);
  c10::free_cpu(base);
}

void Count(int64_t size) {
  const int64_t now = g_current.fetch_add(size, std::memory_order_relaxed) + size;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

class CountingCpuAllocator final : public c10::Allocator {
 public:
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return Allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return Allocate(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &CountingDelete; }

 private:
  static c10::DataPtr Allocate(size_t n) {
    char* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
    const int64_t size = static_cast<int64_t>(n);
    std::memcpy(base, &size, sizeof(size));
    Count(size);
    void* data = base + kHeader;
    return {data, data, &CountingDelete, c10::Device(c10::DeviceType::CPU)};
  }
};

CountingCpuAllocator g_allocator;
std::atomic<bool> g_installed{false};

}  // namespace

void InstallCountingCpuAllocator() {
  bool expected = false;
  if (g_installed.compare_exchange_strong(expected, true)) c10::SetCPUAllocator(&g_allocator, /*priority=*/10);
}

MemoryCounters CpuMemory() { return {g_current.load(), g_peak.load()}; }

void ResetCpuPeak() { g_peak.store(g_current.load()); }

bool CudaMemory(int device, MemoryCounters* out) {
#ifdef LLAMAPRO_WITH_CUDA
  if (!torch::cuda::is_available()) return false;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  out->current = stats.allocated_bytes[0].current;  // index 0: aggregate over pools
  out->peak = stats.allocated_bytes[0].peak;
  return true;
#else
  return false;
#endif
}

void ResetCudaPeak(int device) {
#ifdef LLAMAPRO_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#endif
}

}  // namespace llamapro
