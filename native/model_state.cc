#include "model_state.h"

#include "op_profile.h"
#include "process_group.h"

#include <ATen/record_function.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace llamapro {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Mean cross-entropy of position t predicting token t+1; labels of -100 are not counted. The last position
// predicts nothing, and neither does a position whose next label is -100 (an sft prompt, padding): the output
// projection runs only on the rows that are counted, which for chat data is often under half of them. The vocabulary
// is the widest matrix of a small model, so this is the largest saving there is in an sft step; the counted rows
// get exactly the logits, loss terms and gradients they would get among all rows (the others' are zero anyway).
// `labels` is on the host: the rows are chosen there, so a GPU never waits for them.
torch::Tensor ShiftedCrossEntropy(CausalLM& module, const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                                  const torch::Device& device, c10::ScalarType dtype) {
  const int64_t seq = ids.size(1);
  const auto hidden = module->Hidden(ids.to(device), dtype);
  auto rows = hidden.narrow(1, 0, seq - 1).reshape({-1, hidden.size(-1)});
  auto targets = labels.narrow(1, 1, seq - 1).reshape({-1});
  if (counted_tokens < targets.numel()) {
    const auto counted = targets.ne(-100).nonzero().squeeze(1);
    rows = rows.index_select(0, counted.to(device));
    targets = targets.index_select(0, counted);
  }
  const auto logits = module->Logits(rows).to(torch::kFloat32);
  return at::cross_entropy_loss(logits, targets.to(device), {}, at::Reduction::Mean, -100);
}

}  // namespace

ModelState::ModelState(const ModelSpec& spec, const torch::Device& device_, c10::ScalarType dtype_)
    : device(device_), dtype(dtype_) {
  module = CausalLM(spec, torch::TensorOptions().dtype(dtype).device(device));
  RebuildIndex();
  for (auto& p : params_) p.tensor.set_requires_grad(false);  // nothing trains until SetTrainable says so
}

void ModelState::RebuildIndex() {
  params_.clear();
  index_.clear();
  for (const auto& item : module->named_parameters(/*recurse=*/true)) {
    index_[item.key()] = params_.size();
    params_.push_back({item.key(), item.value()});
  }
}

torch::Tensor ModelState::Param(const std::string& name) const {
  const auto found = index_.find(name);
  if (found == index_.end()) {
    throw std::invalid_argument("the model has no parameter \"" + name + "\" (names look like model.layers.0.self_attn.q_proj.weight)");
  }
  return params_[found->second].tensor;
}

torch::Tensor ModelState::StateTensor(const std::string& name, bool create) {
  if (name.rfind("grad:", 0) == 0) {  // read-only: a parameter's gradient, for tests and diagnostics
    const auto grad = Param(name.substr(5)).grad();
    if (!grad.defined() || create) throw std::invalid_argument("no gradient " + name + " (it is frozen, or no backward has run since the last update)");
    return grad;
  }
  for (const bool squared : {false, true}) {
    const std::string prefix = squared ? "exp_avg_sq:" : "exp_avg:";
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string param_name = name.substr(prefix.size());
    const auto param = Param(param_name);
    if (create) return squared ? optimizer.ExpAvgSq(param_name, param) : optimizer.ExpAvg(param_name, param);
    const auto* state = optimizer.Find(param_name, squared);
    if (state == nullptr) throw std::invalid_argument("no optimizer state " + name + " (has the parameter been trained?)");
    return *state;
  }
  return Param(name);
}

std::vector<NamedTensor> ModelState::TrainableParams() const {
  std::vector<NamedTensor> out;
  for (const auto& p : params_) {
    if (p.tensor.requires_grad()) out.push_back(p);
  }
  return out;
}

int64_t ModelState::ParameterBytes() const {
  int64_t bytes = 0;
  for (const auto& p : params_) bytes += p.tensor.numel() * static_cast<int64_t>(p.tensor.element_size());
  return bytes;
}

ZeroOptimizer& ModelState::Zero() {
  if (!Sharded()) throw std::logic_error("ZeRO: no process group attached with zero_stage 1");
  const auto trainable = TrainableParams();
  if (!zero_ || !zero_->Matches(trainable)) {
    const auto& config = communicator->config();
    zero_ = std::make_unique<ZeroOptimizer>(trainable, config.rank, config.world_size, config.bucket_bytes);
  }
  return *zero_;
}

int64_t ModelState::OptimizerBytes() const { return optimizer.StateBytes() + (zero_ ? zero_->StateBytes() : 0); }

void ModelState::InitRandom(uint64_t seed, double std) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : params_) {
    if (EndsWith(p.name, "norm.weight")) {
      p.tensor.fill_(1.0);
    } else if (EndsWith(p.name, ".bias")) {
      p.tensor.zero_();
    } else {
      p.tensor.normal_(0.0, std);
    }
  }
}

void ModelState::SetTrainable(const std::unordered_set<std::string>& names, std::optional<c10::ScalarType> master_dtype) {
  torch::NoGradGuard no_grad;
  for (const auto& name : names) Param(name);  // throws for an unknown name before anything changes
  for (auto& p : params_) {
    auto& tensor = p.tensor;
    if (names.count(p.name)) {
      if (master_dtype && tensor.scalar_type() != *master_dtype) tensor.set_data(tensor.detach().to(*master_dtype));
      tensor.set_requires_grad(true);
    } else {
      tensor.set_requires_grad(false);
      tensor.mutable_grad().reset();
      if (tensor.scalar_type() != dtype) tensor.set_data(tensor.detach().to(dtype));
      optimizer.Drop(p.name);
    }
  }
  zero_.reset();  // a new trainable set gets a new layout (and fresh ZeRO-1 state)
}

std::vector<int64_t> ModelState::InsertBlocks(const std::vector<int64_t>& positions) {
  if (optimizer.step > 0 || !optimizer.StateNames().empty()) {
    throw std::invalid_argument("insertBlocks must come before training: this model already has optimizer state");
  }
  if (has_lora_) throw std::invalid_argument("insertBlocks must come before addLora: the copied blocks would have no adapters");
  auto inserted = module->InsertIdentityBlocks(positions);
  RebuildIndex();
  return inserted;
}

std::vector<std::string> ModelState::AddLora(const LoraOptions& options) {
  if (optimizer.step > 0 || !optimizer.StateNames().empty()) {
    throw std::invalid_argument("addLora must come before training: this model already has optimizer state");
  }
  auto names = AddLoraAdapters(*module, options);
  has_lora_ = true;
  RebuildIndex();
  zero_.reset();
  return names;
}

torch::Tensor ModelState::Logits(const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  const auto hidden = module->Hidden(ids.to(device), dtype);
  return module->Logits(hidden).to(torch::kFloat32);
}

LossResult ModelState::Loss(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens) {
  torch::NoGradGuard no_grad;
  LossResult result;
  result.tokens = counted_tokens;
  if (counted_tokens == 0) {
    result.loss = torch::zeros({}, torch::kFloat32);
    return result;
  }
  result.loss = ShiftedCrossEntropy(module, ids, labels, counted_tokens, device, dtype);
  return result;
}

void ModelState::ZeroGradients() {
  for (auto& p : params_) {
    if (p.tensor.grad().defined()) p.tensor.mutable_grad().reset();
  }
}

TrainStepResult ModelState::TrainStep(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                                      const TrainStepOptions& options) {
  const auto trainable = TrainableParams();
  if (trainable.empty()) throw std::invalid_argument("no parameter is trainable: call setTrainable() with the names to train");
  const auto profile = StepOpProfile::StartIfRequested();  // LLAMAPRO_PROFILE_OPS=1 (see op_profile.h)
  TrainStepResult result;
  result.tokens = counted_tokens;
  // LoRA dropout draws one mask per layer and pass; checkpointing's recompute in backward reuses it.
  struct LoraPass {
    CausalLMImpl& model;
    explicit LoraPass(CausalLMImpl& m) : model(m) {
      model.lora_runtime->training = true;
      ++model.lora_runtime->pass;
    }
    ~LoraPass() {
      model.lora_runtime->training = false;
      ClearLoraDropoutMasks(model);
    }
  };
  std::optional<LoraPass> lora_pass;
  if (has_lora_) {
    if (options.dropout_seed) torch::manual_seed(*options.dropout_seed);
    lora_pass.emplace(*module);
  }
  if (counted_tokens > 0) {
    torch::Tensor loss;
    {
      RECORD_USER_SCOPE("llamapro::forward_and_loss");
      loss = ShiftedCrossEntropy(module, ids, labels, counted_tokens, device, dtype);
    }
    const double multiplier = options.loss_multiplier * (scaler.enabled ? scaler.scale : 1.0);
    {
      RECORD_USER_SCOPE("llamapro::backward");
      (loss * multiplier).backward();
    }
    result.loss = loss.item<double>();  // read after backward is queued, so a GPU never waits on the host here
    if (!std::isfinite(result.loss)) {
      ZeroGradients();
      result.skipped = true;
      result.skip_reason = "the loss is not finite";
      result.loss_scale = scaler.scale;
      return result;
    }
  }
  if (options.update) {
    const auto update_start = std::chrono::steady_clock::now();
    RECORD_USER_SCOPE("llamapro::update");
    torch::NoGradGuard no_grad;
    if (communicator) {
      result.reduced_extras = options.reduce_extras;
      if (result.reduced_extras.empty()) result.reduced_extras.push_back(0.0);
      result.reduced_extras[0] += result.loss * options.loss_multiplier;
      if (Sharded()) {
        Zero().Update(*communicator, trainable, optimizer, scaler, options, result);
        ZeroGradients();
        result.loss_scale = scaler.scale;
        result.update_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - update_start).count();
        return result;
      }
      result.reduced_bytes = communicator->AllReduceGradients(trainable, result.reduced_extras);
      result.reduce_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - update_start).count();
    }
    if (scaler.enabled) {
      for (const auto& p : trainable) {
        if (p.tensor.grad().defined()) p.tensor.grad().mul_(1.0 / scaler.scale);
      }
    }
    const auto norms = ComputeGradNorms(trainable);
    result.grad_norm = norms.total.item<double>();
    if (options.report_param_norms) {
      const auto values = norms.per_param.to(torch::kCPU, torch::kFloat64).contiguous();
      const double* data = values.data_ptr<double>();
      for (size_t i = 0; i < trainable.size(); ++i) result.param_grad_norms.emplace_back(trainable[i].name, data[i]);
    }
    if (!std::isfinite(result.grad_norm)) {
      ZeroGradients();
      result.skipped = true;
      result.skip_reason = "the gradients are not finite";
      if (scaler.enabled) {
        scaler.scale *= 0.5;
        scaler.good_steps = 0;
      }
      result.loss_scale = scaler.scale;
      return result;
    }
    optimizer.Step(trainable, options.hyper, ClipCoefficient(result.grad_norm, options.max_grad_norm));
    if (scaler.enabled && ++scaler.good_steps >= scaler.growth_interval) {
      scaler.scale *= 2.0;
      scaler.good_steps = 0;
    }
    ZeroGradients();
    result.updated = true;
    result.update_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - update_start).count();
  }
  result.loss_scale = scaler.scale;
  return result;
}

}  // namespace llamapro
