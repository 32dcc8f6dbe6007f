#include "kernel_options.h"

#include <atomic>

#include "memory_stats.h"

namespace llamapro {
namespace {

std::atomic<GemmChoice> g_gemm{GemmChoice::kOneDnn};
std::atomic<bool> g_fused_attention{true};
std::atomic<bool> g_row_plan{true};
std::atomic<bool> g_cpu_cache{true};
std::atomic<OpProfileMode> g_profile_ops{OpProfileMode::kOff};

}  // namespace

KernelOptions CurrentKernelOptions() {
  KernelOptions options;
  options.gemm = g_gemm.load(std::memory_order_relaxed);
  options.fused_attention = g_fused_attention.load(std::memory_order_relaxed);
  options.row_plan = g_row_plan.load(std::memory_order_relaxed);
  options.cpu_cache = g_cpu_cache.load(std::memory_order_relaxed);
  options.profile_ops = g_profile_ops.load(std::memory_order_relaxed);
  return options;
}

void SetKernelOptions(const KernelOptions& options) {
  g_gemm = options.gemm;
  g_fused_attention = options.fused_attention;
  g_row_plan = options.row_plan;
  g_profile_ops = options.profile_ops;
  if (g_cpu_cache.exchange(options.cpu_cache) && !options.cpu_cache) ReleaseCpuCache();
}

const char* GemmChoiceName(GemmChoice gemm) { return gemm == GemmChoice::kBlas ? "blas" : "onednn"; }

const char* OpProfileModeName(OpProfileMode mode) {
  switch (mode) {
    case OpProfileMode::kThreadCpu: return "cpu";
    case OpProfileMode::kWall: return "wall";
    default: return "off";
  }
}

}  // namespace llamapro
