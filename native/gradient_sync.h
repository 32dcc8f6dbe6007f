// How one optimizer step's gradients become the same on every rank, as one strategy object with one interface:
// no process group (LocalSync), plain data parallelism (AllReduceSync: every gradient summed over the ranks) and
// ZeRO stage 1 (ZeroSync: gradients reduce-scattered, AdamW on this rank's shard, weights all-gathered). The train
// step (model_state.cc) calls the same five methods in the same order whichever it is.
//
// The step's numbers (StepNumbers: the loss, whether a rank's loss was not finite, a stop request) are summed over
// the ranks inside a collective the strategy already makes — with the gradients for all-reduce, with the squared
// norms for ZeRO-1 — so agreeing on them costs no extra round trip, and every rank decides on the same totals.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "adamw.h"

namespace llamapro {

class Communicator;
class ZeroOptimizer;
struct TrainStepResult;

// What every rank must know about the step before deciding to update or skip it. Summed over the ranks.
struct StepNumbers {
  double loss = 0.0;                   // Σ loss × loss_multiplier over the micro-batches of this step
  double stop_requested = 0.0;         // how many ranks were asked to stop (the trainer's signal)
  std::vector<double> nonfinite_loss;  // [world_size]: 1 at each rank whose loss was not finite this step

  std::vector<double> Pack() const;
  void Unpack(const std::vector<double>& packed);  // the inverse of Pack, after the sum
};

class GradientSync {
 public:
  virtual ~GradientSync() = default;
  // Sums the gradients over the ranks (all of them, or this rank's shard). `numbers` may be summed here or in
  // Norms(); after Norms() they are the totals over the ranks on every rank.
  virtual void Reduce(StepNumbers& numbers, TrainStepResult& result) = 0;
  // Divides the reduced gradients by `factor` (the fp16 loss scale; 1: nothing to do).
  virtual void Unscale(double factor) = 0;
  // The global gradient norm (result.grad_norm) and, with per_param, each parameter's (result.param_grad_norms).
  virtual void Norms(StepNumbers& numbers, bool per_param, TrainStepResult& result) = 0;
  // One AdamW step with the gradients multiplied by `clip` (clip_grad_norm_'s coefficient).
  virtual void Step(AdamW& optimizer, const AdamWHyper& hyper, float clip) = 0;
  // Drops the step's gradients (after Step, or instead of it when the step is skipped).
  virtual void Discard() = 0;
};

// The strategy for `trainable`: LocalSync without a communicator, ZeroSync when `zero` is given, AllReduceSync
// otherwise. The references must outlive the returned object (one update).
std::unique_ptr<GradientSync> MakeGradientSync(const std::vector<NamedTensor>& trainable, Communicator* communicator,
                                               ZeroOptimizer* zero);

}  // namespace llamapro
