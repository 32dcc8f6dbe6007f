// Everything native that one loaded model owns: the module, its named parameters, which of them train (and in
// which dtype), the optimizer and the loss scaler. Shared by the JS wrapper and the workers running on it:
// `mutex` makes their tensor work take turns.
#pragma once
#include <torch/torch.h>

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adamw.h"
#include "gradient_sync.h"
#include "llama_modules.h"
#include "lora.h"
#include "model_spec.h"
#include "zero_optimizer.h"

namespace llamapro {

class Communicator;  // process_group.h

struct LossResult {
  torch::Tensor loss;  // scalar float32: mean cross-entropy over counted tokens (0 when there are none)
  int64_t tokens = 0;  // targets that are not -100
};

struct TrainStepOptions {
  double loss_multiplier = 1.0;  // 1 / gradient_accumulation_steps
  bool update = false;           // last micro-step of an accumulation: clip, step, zero the gradients
  AdamWHyper hyper;
  double max_grad_norm = 0.0;  // 0: no clipping
  bool report_param_norms = false;
  // On the update: this rank was asked to stop. With a process group every rank learns whether any rank was
  // (TrainStepResult::stop_requested), so that they stop after the same step.
  bool stop_requested = false;
  // LoRA dropout: seeds the default generators before this step, so that its masks depend on the run's seed and
  // the step only (an exact resume draws the same masks). Unset: the generators continue where they are.
  std::optional<uint64_t> dropout_seed;
};

// Why an optimizer step was skipped (on every rank alike).
enum class SkipReason { kNone, kNonfiniteLoss, kNonfiniteGrad };
const char* SkipReasonName(SkipReason reason);  // "nonfinite-loss", "nonfinite-grad"; nullptr for kNone

struct TrainStepResult {
  double loss = 0.0;   // this micro-batch's mean loss over its counted tokens (NaN or ±inf when not finite)
  int64_t tokens = 0;  // this micro-batch's counted tokens
  bool updated = false;
  SkipReason skipped = SkipReason::kNone;  // set on the update micro-step only
  double grad_norm = std::nan("");
  // Wall time of the update phase (norms, clipping, AdamW) on the host; on a GPU the kernels may still run after.
  double update_ms = 0.0;
  double loss_scale = 1.0;
  std::vector<std::pair<std::string, double>> param_grad_norms;
  // On the update micro-step: the optimizer step's loss (Σ loss × loss_multiplier over its micro-batches, summed
  // over the ranks), whether any rank asked to stop, and the ranks whose loss was not finite.
  double step_loss = 0.0;
  bool stop_requested = false;
  std::vector<int> nonfinite_loss_ranks;
  int64_t reduced_bytes = 0;  // gradient bytes this rank all-reduced in this update (with a process group)
  double reduce_ms = 0.0;
};

// Dynamic loss scaling for float16 (as torch.cuda.amp.GradScaler): skip steps whose gradients overflow.
struct LossScaler {
  bool enabled = false;
  double scale = 65536.0;
  int64_t good_steps = 0;
  int64_t growth_interval = 2000;

  double UnscaleFactor() const { return enabled ? 1.0 / scale : 1.0; }
  void Backoff() {  // after a skipped step
    if (!enabled) return;
    scale *= 0.5;
    good_steps = 0;
  }
  void Grow() {  // after a step that updated
    if (enabled && ++good_steps >= growth_interval) {
      scale *= 2.0;
      good_steps = 0;
    }
  }
};

class ModelState {
 public:
  ModelState(const ModelSpec& spec, const torch::Device& device, c10::ScalarType dtype);

  std::mutex mutex;
  CausalLM module{nullptr};
  torch::Device device;
  c10::ScalarType dtype;  // activations are computed in this dtype; frozen parameters are stored in it
  AdamW optimizer;
  LossScaler scaler;
  // Data-parallel training: gradients are summed over the ranks before clipping and the update.
  std::shared_ptr<Communicator> communicator;
  // 1: ZeRO stage 1 over `communicator` (optimizer state sharded, see zero_optimizer.h); 0: every rank keeps it all.
  int zero_stage = 0;
  bool Sharded() const { return communicator && zero_stage == 1; }
  // The ZeRO-1 layout of the current trainable parameters, made on first use.
  ZeroOptimizer& Zero();
  // Optimizer state held by this rank: per-parameter state plus this rank's ZeRO-1 chunks.
  int64_t OptimizerBytes() const;

  const std::vector<NamedTensor>& Params() const { return params_; }
  torch::Tensor Param(const std::string& name) const;
  // Parameters and optimizer state ("exp_avg:<param>", "exp_avg_sq:<param>"), as saved in checkpoints, and
  // gradients ("grad:<param>", never created).
  // With `create`, missing optimizer state is created (zeros) so that a checkpoint can be loaded into it.
  torch::Tensor StateTensor(const std::string& name, bool create);
  std::vector<NamedTensor> TrainableParams() const;
  int64_t ParameterBytes() const;

  void InitRandom(uint64_t seed, double std);
  // Makes exactly `names` trainable. Trainable parameters are kept in `master_dtype` (float32 master weights
  // unless pure bf16 is asked for); the others return to `dtype` and lose gradients and optimizer state.
  void SetTrainable(const std::unordered_set<std::string>& names, std::optional<c10::ScalarType> master_dtype);
  std::vector<int64_t> InsertBlocks(const std::vector<int64_t>& positions);
  // LoRA adapters on `options.targets` (lora.h); they are frozen until SetTrainable names them.
  std::vector<std::string> AddLora(const LoraOptions& options);
  bool HasLora() const { return has_lora_; }

  torch::Tensor Logits(const torch::Tensor& ids);  // float32 [B, T, V], no autograd
  LossResult Loss(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens);
  // One micro-step; on options.update the optimizer step as well (model_state.cc shows the recipe).
  TrainStepResult TrainStep(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                            const TrainStepOptions& options);
  // Forgets the loss of micro-steps not yet followed by an update (a new training run starts).
  void ResetStepWindow() { window_ = StepWindow(); }

 private:
  // What the micro-steps since the last update add up to.
  struct StepWindow {
    double loss = 0.0;  // Σ loss × loss_multiplier
    bool nonfinite_loss = false;
  };
  void ForwardBackward(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                       const TrainStepOptions& options, bool plan_rows, TrainStepResult& result);
  // The step's numbers for the ranks to sum (this rank's window and stop request); the window starts again.
  StepNumbers TakeStepNumbers(const TrainStepOptions& options);
  void RebuildIndex();
  void ZeroGradients();
  StepWindow window_;
  std::vector<NamedTensor> params_;
  std::unique_ptr<ZeroOptimizer> zero_;
  std::unordered_map<std::string, size_t> index_;
  bool has_lora_ = false;
};

}  // namespace llamapro
