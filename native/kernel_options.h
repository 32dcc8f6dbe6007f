// The kernel switches, set from JS (lib/native/kernel-options.ts reads LLAMAPRO_GEMM, LLAMAPRO_FUSED_ATTENTION,
// LLAMAPRO_ROW_PLAN, LLAMAPRO_CPU_CACHE and LLAMAPRO_PROFILE_OPS once, validates them, and passes them here when
// the addon loads and whenever setKernelOptions() changes them). Nothing in native/ reads the environment for them.
//
// The kernels take a snapshot: a training step reads the options once when it starts and hands the row plan and the
// profile down as arguments; a projection or attention call reads them when it runs, so that one process can switch
// them between two calls (bench/profile/ab-env.mjs alternates them step by step). The fields are atomics because
// the JS thread sets them while a libuv worker may be inside a step.
#pragma once

namespace llamapro {

enum class GemmChoice { kOneDnn, kBlas };              // oneDNN's sgemm where the process has it, else at::linear
enum class OpProfileMode { kOff, kThreadCpu, kWall };  // native/op_profile.h

struct KernelOptions {
  GemmChoice gemm = GemmChoice::kOneDnn;
  bool fused_attention = true;  // native/causal_attention.h
  bool row_plan = true;         // model_state.cc: rows the loss does not read are not computed
  bool cpu_cache = true;        // memory_stats.cc: freed CPU blocks kept for reuse
  OpProfileMode profile_ops = OpProfileMode::kOff;
};

// The options in effect now (the defaults above until JS sets them).
KernelOptions CurrentKernelOptions();

// In effect for every later call. Turning cpu_cache off releases what the cache holds.
void SetKernelOptions(const KernelOptions& options);

const char* GemmChoiceName(GemmChoice gemm);        // "onednn" | "blas", as lib/native/kernel-options.ts spells them
const char* OpProfileModeName(OpProfileMode mode);  // "off" | "cpu" | "wall"

}  // namespace llamapro
