#include "memory_stats.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <map>
#include <new>
#include <unordered_map>

#include "kernel_options.h"

// CUDA statistics come from c10/cuda's caching allocator where the CUDA headers are there (a toolkit, or the
// CUDA 12 runtime wheel), and otherwise from c10's device-generic allocator interface (LibTorch >= 2.9), which
// needs no CUDA header: pip's CUDA 13 wheels ship cuda_runtime_api.h without the crt/ headers it includes.
#ifdef LLAMAPRO_WITH_CUDA
#if __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define LLAMAPRO_CUDA_STATS_FROM_C10_CUDA 1
#elif TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
#include <c10/core/CachingDeviceAllocator.h>
#define LLAMAPRO_CUDA_STATS_FROM_C10_CUDA 0
#else
#error "llamapro: CUDA LibTorch < 2.9 needs the CUDA runtime headers: a CUDA toolkit (CUDA_HOME) or nvidia-cuda-runtime"
#endif
#endif

namespace llamapro {
namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

// Small blocks carry their size in a 64-byte header in front of the pointer handed out, so the deleter needs no
// lookup, and data pointer == context (LibTorch's raw_allocate asserts that).
constexpr size_t kHeader = 64;

// Blocks of 64 KiB and more (activations, gradients, weights) are kept in a cache when freed and handed out again,
// as PyTorch's CUDA allocator does on the GPU. Without it a training step ran on fresh pages: the step runs on a
// libuv worker thread, whose glibc arena gives freed heap memory back to the kernel, so every activation was
// page-faulted and zeroed again (~48 k faults and ~15% of a SmolLM2 LLaMA-Pro step's CPU time, measured with
// `perf`). Sizes are rounded up to eighths of their power of two, so batches whose lengths differ by a few tokens
// reuse each other's blocks; a cached block serves a request up to a quarter smaller than itself.
// Large blocks (4 MiB and more) are 2 MiB aligned and marked for transparent huge pages: filling a freshly
// allocated gigabyte then takes 512x fewer page faults, which is most of the cost of loading a checkpoint.
constexpr size_t kCacheMin = size_t{64} << 10;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLargeBlock = size_t{4} << 20;
// The cache holds at most this much, or as much as is in use, whichever is more: a step's activations are about
// what the weights and optimizer state hold, and a model that is disposed leaves little in use.
constexpr int64_t kCacheFloor = int64_t{512} << 20;

struct Block {
  size_t capacity;    // what was allocated (the size class)
  int64_t requested;  // what the tensor asked for (what the counters count)
};

std::mutex g_cache_mutex;
std::unordered_map<void*, Block> g_live;  // cacheable blocks in use
std::multimap<size_t, void*> g_free;      // cached blocks by capacity
int64_t g_cached_bytes = 0;

void Count(int64_t size) {
  const int64_t now = g_current.fetch_add(size, std::memory_order_relaxed) + size;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

size_t SizeClass(size_t n) {
  if (n >= kLargeBlock) return (n + kHugePage - 1) / kHugePage * kHugePage;
  size_t top = size_t{1} << (63 - __builtin_clzll(n));
  const size_t step = top >> 3;
  return (n + step - 1) / step * step;
}

void* AllocateFresh(size_t capacity) {
  void* data = std::aligned_alloc(capacity >= kLargeBlock ? kHugePage : 64, capacity);
  if (data == nullptr) {
    ReleaseCpuCache();  // what the cache holds may be what the system lacks
    data = std::aligned_alloc(capacity >= kLargeBlock ? kHugePage : 64, capacity);
    if (data == nullptr) throw std::bad_alloc();
  }
#ifdef MADV_HUGEPAGE
  if (capacity >= kLargeBlock) ::madvise(data, capacity, MADV_HUGEPAGE);  // advisory: ignored where THP is off
#endif
  return data;
}

void* AllocateCached(size_t n) {
  const size_t capacity = SizeClass(n);
  void* data = nullptr;
  size_t got = capacity;
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    const auto found = g_free.lower_bound(capacity);
    if (found != g_free.end() && found->first <= capacity + capacity / 4) {
      data = found->second;
      got = found->first;
      g_cached_bytes -= static_cast<int64_t>(got);
      g_free.erase(found);
    }
  }
  if (data == nullptr) data = AllocateFresh(capacity);
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  g_live[data] = {got, static_cast<int64_t>(n)};
  return data;
}

void CountingDelete(void* ptr) {
  if (ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    const auto found = g_live.find(ptr);
    if (found != g_live.end()) {
      const Block block = found->second;
      g_live.erase(found);
      const int64_t in_use = g_current.fetch_sub(block.requested, std::memory_order_relaxed) - block.requested;
      const int64_t cap = std::max(kCacheFloor, in_use);
      if (CurrentKernelOptions().cpu_cache && g_cached_bytes + static_cast<int64_t>(block.capacity) <= cap) {
        g_free.emplace(block.capacity, ptr);
        g_cached_bytes += static_cast<int64_t>(block.capacity);
      } else {
        std::free(ptr);
      }
      return;
    }
  }
  char* base = static_cast<char*>(ptr) - kHeader;
  int64_t size = 0;
  std::memcpy(&size, base, sizeof(size));
  g_current.fetch_sub(size, std::memory_order_relaxed);
  c10::free_cpu(base);
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
    void* data;
    if (n >= kCacheMin) {
      data = AllocateCached(n);
    } else {
      char* base = nullptr;
      try {
        base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
      } catch (const c10::Error&) {
        // alloc_cpu reports a failed malloc as a plain c10::Error; as the cached path above, a failed allocation is
        // std::bad_alloc, which the worker reports as LLAMAPRO_OUT_OF_MEMORY.
        throw std::bad_alloc();
      }
      const int64_t size = static_cast<int64_t>(n);
      std::memcpy(base, &size, sizeof(size));
      data = base + kHeader;
    }
    Count(static_cast<int64_t>(n));
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

int64_t CpuCachedBytes() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return g_cached_bytes;
}

void ReleaseCpuCache() {
  std::multimap<size_t, void*> blocks;
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    blocks.swap(g_free);
    g_cached_bytes = 0;
  }
  for (const auto& block : blocks) std::free(block.second);
}

void ResetCpuPeak() { g_peak.store(g_current.load()); }

bool CudaMemory(int device, MemoryCounters* out) {
#ifdef LLAMAPRO_WITH_CUDA
  if (!torch::cuda::is_available() || device < 0 || device >= static_cast<int>(torch::cuda::device_count())) {
    return false;
  }
  try {
    // Before anything has touched CUDA the caching allocator may not be set up yet; it then throws, and there is
    // simply nothing to report.
#if LLAMAPRO_CUDA_STATS_FROM_C10_CUDA
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
#else
    auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    if (!allocator->initialized()) return false;
    const auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
#endif
    out->current = stats.allocated_bytes[0].current;  // index 0: aggregate over pools
    out->peak = stats.allocated_bytes[0].peak;
    return true;
  } catch (const c10::Error&) {
    return false;
  }
#else
  return false;
#endif
}

void ResetCudaPeak(int device) {
#ifdef LLAMAPRO_WITH_CUDA
  if (!torch::cuda::is_available() || device < 0 || device >= static_cast<int>(torch::cuda::device_count())) return;
  try {
#if LLAMAPRO_CUDA_STATS_FROM_C10_CUDA
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
#else
    auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    if (allocator->initialized()) allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
#endif
  } catch (const c10::Error&) {
    // not set up yet: no peak to reset
  }
#endif
}

}  // namespace llamapro
