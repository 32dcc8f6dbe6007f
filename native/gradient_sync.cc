#include "gradient_sync.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "model_state.h"
#include "process_group.h"
#include "zero_optimizer.h"

namespace llamapro {

std::vector<double> StepNumbers::Pack() const {
  std::vector<double> packed{loss, stop_requested};
  packed.insert(packed.end(), nonfinite_loss.begin(), nonfinite_loss.end());
  return packed;
}

void StepNumbers::Unpack(const std::vector<double>& packed) {
  if (packed.size() != 2 + nonfinite_loss.size()) {
    throw std::logic_error("StepNumbers: the packed numbers have the wrong length");
  }
  loss = packed[0];
  stop_requested = packed[1];
  std::copy(packed.begin() + 2, packed.end(), nonfinite_loss.begin());
}

namespace {

double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The gradients live in the parameters' .grad: unscaling, measuring and stepping are the same with or without an
// all-reduce before them.
class ParameterGradients : public GradientSync {
 public:
  explicit ParameterGradients(const std::vector<NamedTensor>& trainable) : trainable_(trainable) {}

  void Unscale(double factor) override {
    if (factor == 1.0) return;
    for (const auto& p : trainable_) {
      if (p.tensor.grad().defined()) p.tensor.grad().mul_(factor);
    }
  }

  void Norms(StepNumbers&, bool per_param, TrainStepResult& result) override {
    const auto norms = ComputeGradNorms(trainable_);
    result.grad_norm = norms.total.item<double>();
    if (!per_param) return;
    const auto values = norms.per_param.to(torch::kCPU, torch::kFloat64).contiguous();
    const double* data = values.data_ptr<double>();
    for (size_t i = 0; i < trainable_.size(); ++i) result.param_grad_norms.emplace_back(trainable_[i].name, data[i]);
  }

  void Step(AdamW& optimizer, const AdamWHyper& hyper, float clip) override { optimizer.Step(trainable_, hyper, clip); }

  void Discard() override {
    for (const auto& p : trainable_) {
      if (p.tensor.grad().defined()) p.tensor.mutable_grad().reset();
    }
  }

 protected:
  const std::vector<NamedTensor>& trainable_;
};

// One process: nothing to exchange.
class LocalSync final : public ParameterGradients {
 public:
  using ParameterGradients::ParameterGradients;
  void Reduce(StepNumbers&, TrainStepResult&) override {}
};

// Plain data parallelism: every trainable gradient summed over the ranks, the step's numbers beside them.
class AllReduceSync final : public ParameterGradients {
 public:
  AllReduceSync(const std::vector<NamedTensor>& trainable, Communicator& communicator)
      : ParameterGradients(trainable), communicator_(communicator) {}

  void Reduce(StepNumbers& numbers, TrainStepResult& result) override {
    const auto start = std::chrono::steady_clock::now();
    auto packed = numbers.Pack();
    result.reduced_bytes = communicator_.AllReduceGradients(trainable_, packed);
    numbers.Unpack(packed);
    result.reduce_ms = MillisecondsSince(start);
  }

 private:
  Communicator& communicator_;
};

// ZeRO stage 1: this rank's shard of the summed gradients, its shard of AdamW, the weights gathered again.
class ZeroSync final : public GradientSync {
 public:
  ZeroSync(const std::vector<NamedTensor>& trainable, Communicator& communicator, ZeroOptimizer& zero)
      : trainable_(trainable), communicator_(communicator), zero_(zero) {}

  void Reduce(StepNumbers&, TrainStepResult& result) override {
    start_ = std::chrono::steady_clock::now();
    result.reduced_bytes = zero_.ReduceScatter(communicator_, trainable_);
  }

  void Unscale(double factor) override { zero_.Unscale(factor); }

  // The norm needs every rank's shard: its all-reduce is where the step's numbers travel.
  void Norms(StepNumbers& numbers, bool per_param, TrainStepResult& result) override {
    auto packed = numbers.Pack();
    const auto squares = zero_.SquaredNorms(communicator_, packed);
    numbers.Unpack(packed);
    result.reduce_ms = MillisecondsSince(start_);
    double total = 0.0;
    for (size_t i = 0; i < squares.size(); ++i) {
      total += squares[i];
      if (per_param) result.param_grad_norms.emplace_back(zero_.names()[i], std::sqrt(squares[i]));
    }
    result.grad_norm = static_cast<float>(std::sqrt(total));
  }

  void Step(AdamW& optimizer, const AdamWHyper& hyper, float clip) override {
    zero_.Step(communicator_, trainable_, optimizer, hyper, clip);
  }

  void Discard() override { zero_.Discard(); }

 private:
  const std::vector<NamedTensor>& trainable_;
  Communicator& communicator_;
  ZeroOptimizer& zero_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

std::unique_ptr<GradientSync> MakeGradientSync(const std::vector<NamedTensor>& trainable, Communicator* communicator,
                                               ZeroOptimizer* zero) {
  if (communicator == nullptr) return std::make_unique<LocalSync>(trainable);
  if (zero != nullptr) return std::make_unique<ZeroSync>(trainable, *communicator, *zero);
  return std::make_unique<AllReduceSync>(trainable, *communicator);
}

}  // namespace llamapro
