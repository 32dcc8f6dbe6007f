#include "cpu_gemm.h"

#include <ATen/record_function.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernel_options.h"

namespace llamapro {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// oneDNN's C API, stable since DNNL 1.0: row-major C = alpha * op(A) * op(B) + beta * C, dnnl_dim_t = int64_t,
// returning dnnl_status_t (0 = success).
using SgemmFn = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
using OmpGetFn = int (*)();
using OmpSetFn = void (*)(int);
using BlasGetThreadsFn = int (*)();
using BlasSetThreadsFn = void (*)(int);
using GompParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);

struct Symbols {
  SgemmFn sgemm = nullptr;
  OmpGetFn omp_get_max_threads = nullptr;
  OmpSetFn omp_set_num_threads = nullptr;
  BlasGetThreadsFn openblas_get_num_threads = nullptr;
  BlasSetThreadsFn openblas_set_num_threads = nullptr;
  GompParallelFn gomp_parallel = nullptr;  // optional: for ParallelOnGemmThreads
  OmpGetFn omp_get_thread_num = nullptr;
  OmpGetFn omp_get_num_threads = nullptr;
  // oneDNN replaces OpenBLAS only: MKL's sgemm is as fast, and without OpenBLAS's thread count and OpenMP's
  // controls the products' threads could not be set.
  bool usable() const {
    return sgemm && omp_get_max_threads && omp_set_num_threads && openblas_get_num_threads && openblas_set_num_threads;
  }
};

// Looked up once in what the process has already loaded (Debian's libtorch_cpu.so links libdnnl.so.2, libgomp
// and OpenBLAS); nothing is opened, so a LibTorch without them simply keeps at::linear.
const Symbols& Library() {
  static const Symbols library = [] {
    Symbols found;
    found.sgemm = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
    found.omp_get_max_threads = reinterpret_cast<OmpGetFn>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    found.omp_set_num_threads = reinterpret_cast<OmpSetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    found.openblas_get_num_threads =
        reinterpret_cast<BlasGetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    found.openblas_set_num_threads =
        reinterpret_cast<BlasSetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    found.gomp_parallel = reinterpret_cast<GompParallelFn>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    found.omp_get_thread_num = reinterpret_cast<OmpGetFn>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    found.omp_get_num_threads = reinterpret_cast<OmpGetFn>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
    return found;
  }();
  return library;
}

bool OneDnnWanted() {
  if (!Library().usable()) return false;
  return CurrentKernelOptions().gemm == GemmChoice::kOneDnn;
}

// Two thread pools on the same cores. OpenBLAS's workers spin for a long while after each call (about 0.1 s,
// OPENBLAS_THREAD_TIMEOUT), and oneDNN's OpenMP workers spin too: when attention's batched products (still
// OpenBLAS's in LibTorch 1.x) wake OpenBLAS's pool between two projections, oneDNN's second thread shares a core
// with a spinning one, every product waits for it, and the step is ~10% slower than OpenBLAS alone instead of
// ~12% faster (bench/results/llamafactory-speed-profile.md, section 6). So while oneDNN runs the projections,
// OpenBLAS runs on the calling thread and its workers sleep; oneDNN gets the threads OpenBLAS had
// (OPENBLAS_NUM_THREADS, by default the cores). The gemm option 'blas' gives them back.
std::mutex g_pool_mutex;
std::atomic<int> g_gemm_threads{0};  // OpenBLAS's thread count when oneDNN took over; 0 while OpenBLAS has its own

int TakeBlasThreads() {
  if (const int taken = g_gemm_threads.load()) return taken;  // every product after the first: no lock
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_gemm_threads == 0) {
    g_gemm_threads = std::max(1, Library().openblas_get_num_threads());
    if (g_gemm_threads > 1) Library().openblas_set_num_threads(1);
  }
  return g_gemm_threads;
}

void ReturnBlasThreads() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_gemm_threads > 1) Library().openblas_set_num_threads(g_gemm_threads);
  g_gemm_threads = 0;
}

// oneDNN (built with OpenMP) takes its thread count from the calling thread's OpenMP setting, which llamapro keeps
// at the intra-op count (1: element-wise work runs serially beside the BLAS threads); a product gets the BLAS
// threads for its duration. A small product runs on the calling thread: waking a sleeping OpenMP worker costs more
// than it saves below ~8 M multiply-adds (a 64-wide model's products took 63 us each with two threads against 15 us
// with OpenBLAS's one; a 268x576x192 product gains 80 us from the second thread).
constexpr int64_t kParallelMultiplyAdds = int64_t{1} << 23;

class GemmThreads {
 public:
  explicit GemmThreads(int64_t multiply_adds) {
    const int taken = TakeBlasThreads();
    const int wanted = multiply_adds < kParallelMultiplyAdds ? 1 : taken;
    before_ = Library().omp_get_max_threads();
    if (wanted != before_) Library().omp_set_num_threads(wanted);
  }
  ~GemmThreads() {
    if (Library().omp_get_max_threads() != before_) Library().omp_set_num_threads(before_);
  }
  GemmThreads(const GemmThreads&) = delete;
  GemmThreads& operator=(const GemmThreads&) = delete;

 private:
  int before_ = 0;
};

void Check(int status, int64_t m, int64_t n, int64_t k) {
  if (status != 0) {
    throw std::runtime_error("oneDNN sgemm failed (dnnl_status_t " + std::to_string(status) + ") for a " +
                             std::to_string(m) + "x" + std::to_string(k) + " by " + std::to_string(k) + "x" +
                             std::to_string(n) + " product; LLAMAPRO_GEMM=blas runs it through at::linear instead");
  }
}

// Row-major c[m, n] = op(a) op(b), op = transpose where asked, packed operands. Shapes and strides were checked by
// the callers (contiguous float32 of exactly these sizes); a failing status is an error, never a silent zero.
void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c) {
  RECORD_USER_SCOPE("llamapro::onednn_sgemm");  // a row of LLAMAPRO_PROFILE_OPS
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  GemmThreads threads(m * n * k);
  Check(Library().sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n), m, n, k);
}

// y[M, N] = x[M, K] w[N, K]^T.
torch::Tensor Forward(const torch::Tensor& x2d, const torch::Tensor& w) {
  const int64_t m = x2d.size(0), k = x2d.size(1), n = w.size(0);
  auto y = torch::empty({m, n}, x2d.options());
  Sgemm(false, true, m, n, k, x2d.data_ptr<float>(), w.data_ptr<float>(), y.data_ptr<float>());
  return y;
}

class ProjectFunction : public torch::autograd::Function<ProjectFunction> {
 public:
  // x2d [M, K] and weight [N, K], contiguous float32. (The bias is added outside: LibTorch 1.13's Function::apply
  // cannot take an undefined tensor as an input.)
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x2d, const torch::Tensor& weight) {
    // Only what backward reads: x for the weight's gradient, the weight for the input's.
    ctx->save_for_backward(
        {weight.requires_grad() ? x2d : torch::Tensor(), x2d.requires_grad() ? weight : torch::Tensor()});
    return Forward(x2d, weight);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto dy = grads[0].contiguous();
    const int64_t m = dy.size(0), n = dy.size(1);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      const auto& w = saved[1];
      const int64_t k = w.size(1);
      dx = torch::empty({m, k}, dy.options());
      Sgemm(false, false, m, k, n, dy.data_ptr<float>(), w.data_ptr<float>(), dx.data_ptr<float>());
    }
    if (ctx->needs_input_grad(1)) {
      const auto& x = saved[0];
      const int64_t k = x.size(1);
      dw = torch::empty({n, k}, dy.options());
      Sgemm(true, false, n, k, m, dy.data_ptr<float>(), x.data_ptr<float>(), dw.data_ptr<float>());
    }
    return {dx, dw};
  }
};

bool Applies(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto is_cpu_float = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && !t.is_sparse();
  };
  if (!is_cpu_float(x) || !is_cpu_float(weight) || (bias.defined() && !is_cpu_float(bias))) return false;
  if (x.dim() < 1 || weight.dim() != 2 || x.size(-1) != weight.size(1)) return false;  // at::linear reports it
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0))) return false;
  if (x.numel() == 0 || weight.numel() == 0) return false;
  return OneDnnWanted();
}

}  // namespace

torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!Applies(x, weight, bias)) {
    if (g_gemm_threads.load() != 0 && !OneDnnWanted()) ReturnBlasThreads();
    return at::linear(x, weight, bias);
  }
  const int64_t k = x.size(-1);
  const auto x2d = x.reshape({-1, k}).contiguous();
  const auto w = weight.contiguous();
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = weight.size(0);
  const bool records_graph = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  auto y = records_graph ? ProjectFunction::apply(x2d, w) : Forward(x2d, w);
  if (bias.defined()) y = records_graph || bias.requires_grad() ? y + bias : y.add_(bias);
  return y.view(out_sizes);
}

std::string CpuGemmBackend() { return OneDnnWanted() ? "onednn" : "blas"; }

bool OneDnnProducts() { return OneDnnWanted(); }

void OneDnnSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Check(Library().sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), m, n,
        k);
}

namespace {

struct ParallelJob {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n;
  std::mutex mutex;
  std::exception_ptr error;
};

// One member of the OpenMP team: its share of [0, n), with its own products kept on it (an OpenMP setting of 1
// for this thread while it runs). Nothing may unwind through libgomp's C frames, so an exception is kept for the
// caller.
void RunShare(void* data) {
  auto* job = static_cast<ParallelJob*>(data);
  const auto& lib = Library();
  const int64_t members = std::max(1, lib.omp_get_num_threads());
  const int64_t share = (job->n + members - 1) / members;
  const int64_t begin = lib.omp_get_thread_num() * share;
  const int64_t end = std::min(job->n, begin + share);
  if (begin >= end) return;
  const int before = lib.omp_get_max_threads();
  lib.omp_set_num_threads(1);
  try {
    (*job->fn)(begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->error) job->error = std::current_exception();
  }
  lib.omp_set_num_threads(before);
}

}  // namespace

void ParallelOnGemmThreads(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  // The team oneDNN's products use, through libgomp's GOMP_parallel (what `#pragma omp parallel` compiles to; the
  // process has libgomp when it has these products). Not at::parallel_for: in LibTorch 1.x its OpenMP loop is a
  // header template compiled into the caller, and llamapro builds without -fopenmp, so it runs serially.
  const auto& lib = Library();
  const int threads = static_cast<int>(std::min<int64_t>(n, TakeBlasThreads()));
  if (threads <= 1 || lib.gomp_parallel == nullptr || lib.omp_get_thread_num == nullptr ||
      lib.omp_get_num_threads == nullptr) {
    GemmThreads single(0);  // products inside on this thread
    fn(0, n);
    return;
  }
  ParallelJob job{&fn, n, {}, nullptr};
  lib.gomp_parallel(RunShare, &job, static_cast<unsigned>(threads), 0);
  if (job.error) std::rethrow_exception(job.error);
}

int CpuGemmThreads() {
  if (!OneDnnWanted()) return Library().openblas_get_num_threads ? Library().openblas_get_num_threads() : 0;
  const int taken = g_gemm_threads.load();
  return taken != 0 ? taken : std::max(1, Library().openblas_get_num_threads());
}

}  // namespace llamapro
