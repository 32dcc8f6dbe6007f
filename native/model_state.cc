#include "model_state.h"

#include "kernel_options.h"
#include "op_profile.h"
#include "process_group.h"

#include <ATen/record_function.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
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
// The decoder is spared rows too (RowPlan, llama_modules.h): the positions after each sequence's last counted
// prediction (its padding) where they are at least 1/32 of the batch, and in the last layer every row but the
// counted ones. `labels` is on the host: the rows are chosen there, so a GPU never waits for them.
// plan_rows false (the kernel option rowPlan, LLAMAPRO_ROW_PLAN=0) computes every row.
torch::Tensor ShiftedCrossEntropy(CausalLM& module, const torch::Tensor& ids, const torch::Tensor& labels,
                                  int64_t counted_tokens, const torch::Device& device, c10::ScalarType dtype,
                                  bool plan_rows) {
  const int64_t batch = ids.size(0);
  const int64_t seq = ids.size(1);
  // The plan below reads the labels by raw offset: their shape is checked here again (the binding already did).
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == batch && labels.size(1) == seq,
              "labels must be shaped like the ids [", batch, ", ", seq, "], got ", labels.sizes());
  const auto host_labels = labels.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* label = host_labels.data_ptr<int64_t>();
  // keep[b]: sequence b's positions [0, keep[b]) are read by the loss (the last counted prediction is keep[b] - 1).
  std::vector<int64_t> keep(static_cast<size_t>(batch), 0);
  int64_t kept = 0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = seq - 1; t >= 1; --t) {
      if (label[b * seq + t] != -100) {
        keep[static_cast<size_t>(b)] = t;
        break;
      }
    }
    kept += keep[static_cast<size_t>(b)];
  }
  const int64_t grid = batch * seq;
  const bool pack = kept > 0 && (grid - kept) * 32 >= grid;
  std::vector<int64_t> rows, pad_rows, query, targets;
  int64_t next = 0;
  for (int64_t b = 0; b < batch; ++b) {
    if (pack) {
      for (int64_t t = keep[static_cast<size_t>(b)]; t < seq; ++t) pad_rows.push_back(b * seq + t);
    }
    for (int64_t t = 0; t < keep[static_cast<size_t>(b)]; ++t) {
      const int64_t at = pack ? next++ : b * seq + t;
      if (pack) rows.push_back(b * seq + t);
      const int64_t target = label[b * seq + t + 1];
      if (target != -100) {
        query.push_back(at);
        targets.push_back(target);
      }
    }
  }
  const int64_t rows_in = pack ? kept : grid;
  const bool subset = !query.empty() && static_cast<int64_t>(query.size()) * 16 <= rows_in * 15;
  const auto index = torch::TensorOptions().dtype(torch::kInt64);
  if (plan_rows && (pack || subset)) {
    RowPlan plan;
    if (pack) {
      plan.rows = torch::tensor(rows, index).to(device);
      plan.pad_rows = torch::tensor(pad_rows, index).to(device);
    }
    const auto query_rows = torch::tensor(query, index).to(device);
    if (subset) plan.query_rows = query_rows;
    const auto hidden = module->Hidden(ids.to(device), dtype, plan);
    const auto counted_rows = subset ? hidden : hidden.index_select(0, query_rows);
    const auto logits = module->Logits(counted_rows).to(torch::kFloat32);
    return at::cross_entropy_loss(logits, torch::tensor(targets, index).to(device), {}, at::Reduction::Mean, -100);
  }
  const auto hidden = module->Hidden(ids.to(device), dtype);
  auto hidden_rows = hidden.narrow(1, 0, seq - 1).reshape({-1, hidden.size(-1)});
  auto shifted = labels.narrow(1, 1, seq - 1).reshape({-1});
  if (counted_tokens < shifted.numel()) {
    const auto counted = shifted.ne(-100).nonzero().squeeze(1);
    hidden_rows = hidden_rows.index_select(0, counted.to(device));
    shifted = shifted.index_select(0, counted);
  }
  const auto logits = module->Logits(hidden_rows).to(torch::kFloat32);
  return at::cross_entropy_loss(logits, shifted.to(device), {}, at::Reduction::Mean, -100);
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
    throw std::invalid_argument("the model has no parameter \"" + name +
                                "\" (names look like model.layers.0.self_attn.q_proj.weight)");
  }
  return params_[found->second].tensor;
}

torch::Tensor ModelState::StateTensor(const std::string& name, bool create) {
  if (name.rfind("grad:", 0) == 0) {  // read-only: a parameter's gradient, for tests and diagnostics
    const auto grad = Param(name.substr(5)).grad();
    if (!grad.defined() || create) {
      throw std::invalid_argument("no gradient " + name +
                                  " (it is frozen, or no backward has run since the last update)");
    }
    return grad;
  }
  for (const bool squared : {false, true}) {
    const std::string prefix = squared ? "exp_avg_sq:" : "exp_avg:";
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string param_name = name.substr(prefix.size());
    const auto param = Param(param_name);
    if (create) return squared ? optimizer.ExpAvgSq(param_name, param) : optimizer.ExpAvg(param_name, param);
    const auto* state = optimizer.Find(param_name, squared);
    if (state == nullptr) {
      throw std::invalid_argument("no optimizer state " + name + " (has the parameter been trained?)");
    }
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

void ModelState::SetTrainable(const std::unordered_set<std::string>& names,
                              std::optional<c10::ScalarType> master_dtype) {
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
  if (has_lora_) {
    throw std::invalid_argument("insertBlocks must come before addLora: the copied blocks would have no adapters");
  }
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
  const bool plan_rows = CurrentKernelOptions().row_plan;
  result.loss = ShiftedCrossEntropy(module, ids, labels, counted_tokens, device, dtype, plan_rows);
  return result;
}

void ModelState::ZeroGradients() {
  for (auto& p : params_) {
    if (p.tensor.grad().defined()) p.tensor.mutable_grad().reset();
  }
}

const char* SkipReasonName(SkipReason reason) {
  switch (reason) {
    case SkipReason::kNonfiniteLoss: return "nonfinite-loss";
    case SkipReason::kNonfiniteGrad: return "nonfinite-grad";
    case SkipReason::kNone: break;
  }
  return nullptr;
}

namespace {

// Skip the step when any rank's loss was not finite, or the summed gradients are not. Reads only numbers that are
// the same on every rank (summed over the ranks), so every rank returns the same verdict.
SkipReason Decide(const StepNumbers& numbers, TrainStepResult& result) {
  result.step_loss = numbers.loss;
  result.stop_requested = numbers.stop_requested > 0;
  for (size_t r = 0; r < numbers.nonfinite_loss.size(); ++r) {
    if (numbers.nonfinite_loss[r] > 0) result.nonfinite_loss_ranks.push_back(static_cast<int>(r));
  }
  if (!result.nonfinite_loss_ranks.empty()) return SkipReason::kNonfiniteLoss;
  if (!std::isfinite(result.grad_norm)) return SkipReason::kNonfiniteGrad;
  return SkipReason::kNone;
}

}  // namespace

// The recipe of one step. Every micro-step runs forward and backward; the last one (options.update) also syncs the
// gradients over the ranks, unscales and measures them, and then — on every rank alike, because the numbers it
// decides on were summed over the ranks — either skips the step or clips, steps AdamW and grows the loss scale.
TrainStepResult ModelState::TrainStep(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                                      const TrainStepOptions& options) {
  const auto trainable = TrainableParams();
  if (trainable.empty()) {
    throw std::invalid_argument("no parameter is trainable: call setTrainable() with the names to train");
  }
  const KernelOptions kernels = CurrentKernelOptions();  // one snapshot for the step: JS may change them meanwhile
  const auto profile = StepOpProfile::Start(kernels.profile_ops);  // null unless profileOps (op_profile.h)
  TrainStepResult result;
  ForwardBackward(ids, labels, counted_tokens, options, kernels.row_plan, result);
  result.loss_scale = scaler.scale;
  if (!options.update) return result;

  const auto update_start = std::chrono::steady_clock::now();
  RECORD_USER_SCOPE("llamapro::update");
  torch::NoGradGuard no_grad;
  auto numbers = TakeStepNumbers(options);
  const auto sync = MakeGradientSync(trainable, communicator.get(), Sharded() ? &Zero() : nullptr);
  sync->Reduce(numbers, result);                             // gradient sync: none / all-reduce / ZeRO-1
  sync->Unscale(scaler.UnscaleFactor());                     // undo the fp16 loss scale
  sync->Norms(numbers, options.report_param_norms, result);  // the global norm; `numbers` are summed by now
  result.skipped = Decide(numbers, result);                  // the same verdict on every rank
  if (result.skipped == SkipReason::kNone) {
    sync->Step(optimizer, options.hyper, ClipCoefficient(result.grad_norm, options.max_grad_norm));  // clip, AdamW
    scaler.Grow();  // fp16: a higher scale after enough good steps
    result.updated = true;
  } else {
    scaler.Backoff();  // fp16: a lower scale for the next step
  }
  sync->Discard();
  ZeroGradients();
  result.loss_scale = scaler.scale;
  result.update_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - update_start).count();
  return result;
}

// Forward and backward of one micro-batch; its gradients add to the parameters' .grad and its weighted loss to the
// step's. A non-finite loss is only noted here: the decision is the update's, taken alike on every rank.
void ModelState::ForwardBackward(const torch::Tensor& ids, const torch::Tensor& labels, int64_t counted_tokens,
                                 const TrainStepOptions& options, bool plan_rows, TrainStepResult& result) {
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
  if (counted_tokens == 0) return;
  torch::Tensor loss;
  {
    RECORD_USER_SCOPE("llamapro::forward_and_loss");  // named phases for the op profile (op_profile.h)
    loss = ShiftedCrossEntropy(module, ids, labels, counted_tokens, device, dtype, plan_rows);
  }
  const double multiplier = options.loss_multiplier * (scaler.enabled ? scaler.scale : 1.0);
  {
    RECORD_USER_SCOPE("llamapro::backward");
    (loss * multiplier).backward();
  }
  result.loss = loss.item<double>();  // read after backward is queued, so a GPU never waits on the host here
  window_.loss += result.loss * options.loss_multiplier;
  if (!std::isfinite(result.loss)) window_.nonfinite_loss = true;
}

StepNumbers ModelState::TakeStepNumbers(const TrainStepOptions& options) {
  const int world = communicator ? communicator->config().world_size : 1;
  const int rank = communicator ? communicator->config().rank : 0;
  StepNumbers numbers;
  numbers.loss = window_.loss;
  numbers.stop_requested = options.stop_requested ? 1.0 : 0.0;
  numbers.nonfinite_loss.assign(static_cast<size_t>(world), 0.0);
  numbers.nonfinite_loss[static_cast<size_t>(rank)] = window_.nonfinite_loss ? 1.0 : 0.0;
  window_ = StepWindow();
  return numbers;
}

}  // namespace llamapro
