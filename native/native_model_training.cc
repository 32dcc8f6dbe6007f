// NativeModel's compute on token batches and the training state around it: forward, loss, trainStep, and what
// configures a run (trainable parameters, optimizer, loss scaling, process group, gradient checkpointing).
#include "native_model.h"

#include <cstring>
#include <optional>
#include <unordered_set>

#include "async_work.h"
#include "js_convert.h"
#include "native_model_shared.h"
#include "process_group.h"
#include "tensor_io.h"

namespace llamapro {
namespace {

// Token ids or labels from JS, checked against the vocabulary before they index an embedding table.
struct Batch {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // empty: no labels
};

Batch BatchFromJs(const Napi::CallbackInfo& info, bool with_labels) {
  Batch b;
  const size_t shape_at = with_labels ? 2 : 1;
  b.batch = js::Integer(info[shape_at], "batch");
  b.seq = js::Integer(info[shape_at + 1], "seq");
  if (b.batch <= 0) js::RangeError(info.Env(), "batch must be positive (got " + std::to_string(b.batch) + ")");
  if (b.seq <= 0) js::RangeError(info.Env(), "seq must be positive (got " + std::to_string(b.seq) + ")");
  // Checked before the length comparison: a wrapped product could match a short array and reach from_blob.
  const size_t count = static_cast<size_t>(js::CheckedProduct(info.Env(), b.batch, b.seq, "batch * seq"));
  b.ids = js::Int32s(info[0], count, "ids");
  if (with_labels) b.labels = js::Int32s(info[1], count, "labels");
  return b;
}

void CheckIds(const Batch& b, int64_t vocab) {
  for (size_t i = 0; i < b.ids.size(); ++i) {
    if (b.ids[i] < 0 || b.ids[i] >= vocab) {
      throw std::invalid_argument("token id " + std::to_string(b.ids[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
    }
  }
  for (size_t i = 0; i < b.labels.size(); ++i) {
    if (b.labels[i] != -100 && (b.labels[i] < 0 || b.labels[i] >= vocab)) {
      throw std::invalid_argument("label " + std::to_string(b.labels[i]) + " at position " + std::to_string(i) +
                                  " is neither -100 nor a token id (0.." + std::to_string(vocab - 1) + ")");
    }
  }
}

torch::Tensor ToTensor(std::vector<int32_t>& values, int64_t batch, int64_t seq) {
  return torch::from_blob(values.data(), {batch, seq}, torch::kInt32).to(torch::kInt64);
}

int64_t CountedTargets(const Batch& b) {
  int64_t counted = 0;
  for (int64_t row = 0; row < b.batch; ++row) {
    for (int64_t t = 1; t < b.seq; ++t) counted += b.labels[static_cast<size_t>(row * b.seq + t)] != -100;
  }
  return counted;
}

}  // namespace

// forward(ids: Int32Array, batch, seq) -> Float32Array [batch, seq, vocab]
Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, false));
  auto logits = std::make_shared<torch::Tensor>();
  return RunAsync(
      Value(), "llamapro.forward",
      [state, batch, logits] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        *logits = state->Logits(ToTensor(batch->ids, batch->batch, batch->seq)).to(torch::kCPU).contiguous();
      },
      [logits](Napi::Env env) -> Napi::Value {
        // A copy, not an external buffer: Electron's V8 sandbox refuses external ArrayBuffers.
        auto out = Napi::Float32Array::New(env, static_cast<size_t>(logits->numel()));
        std::memcpy(out.Data(), logits->data_ptr<float>(), static_cast<size_t>(logits->numel()) * sizeof(float));
        logits->reset();
        return out;
      });
}

// loss(ids, labels, batch, seq) -> { loss, tokens }
Napi::Value NativeModel::Loss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, true));
  auto result = std::make_shared<std::pair<double, int64_t>>();
  return RunAsync(
      Value(), "llamapro.loss",
      [state, batch, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        const auto loss = state->Loss(ToTensor(batch->ids, batch->batch, batch->seq),
                                      ToTensor(batch->labels, batch->batch, batch->seq), CountedTargets(*batch));
        *result = {loss.loss.item<double>(), loss.tokens};
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", result->first);
        out.Set("tokens", static_cast<double>(result->second));
        return out;
      });
}

// trainStep(ids, labels, batch, seq, { lossMultiplier, update, lr, beta1, beta2, eps, weightDecay, maxGradNorm,
//                                      reportParamNorms, dropoutSeed?, stopRequested? })
// -> { loss, tokens, updated, skipped: 'nonfinite-loss' | 'nonfinite-grad' | null, gradNorm, updateMs, lossScale,
//      paramGradNorms?, and on the update: stepLoss, stopRequested, nonfiniteLossRanks (+ reducedBytes, reduceMs
//      with a process group) }
Napi::Value NativeModel::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, true));
  const auto o = js::Object(info[4], "options");
  TrainStepOptions options;
  options.loss_multiplier = js::Number(o.Get("lossMultiplier"), "options.lossMultiplier");
  options.update = js::Bool(o.Get("update"), "options.update");
  options.hyper.lr = js::Number(o.Get("lr"), "options.lr");
  options.hyper.beta1 = js::Number(o.Get("beta1"), "options.beta1");
  options.hyper.beta2 = js::Number(o.Get("beta2"), "options.beta2");
  options.hyper.eps = js::Number(o.Get("eps"), "options.eps");
  options.hyper.weight_decay = js::Number(o.Get("weightDecay"), "options.weightDecay");
  options.max_grad_norm = js::Number(o.Get("maxGradNorm"), "options.maxGradNorm");
  options.report_param_norms = js::Bool(o.Get("reportParamNorms"), "options.reportParamNorms");
  if (o.Has("dropoutSeed") && !o.Get("dropoutSeed").IsUndefined()) {
    const int64_t seed = js::Integer(o.Get("dropoutSeed"), "options.dropoutSeed");
    if (seed < 0) js::TypeError(env, "options.dropoutSeed must be non-negative");
    options.dropout_seed = static_cast<uint64_t>(seed);
  }
  if (o.Has("stopRequested") && !o.Get("stopRequested").IsUndefined()) {
    options.stop_requested = js::Bool(o.Get("stopRequested"), "options.stopRequested");
  }
  auto result = std::make_shared<TrainStepResult>();
  return RunAsync(
      Value(), "llamapro.trainStep",
      [state, batch, options, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        *result = state->TrainStep(ToTensor(batch->ids, batch->batch, batch->seq),
                                   ToTensor(batch->labels, batch->batch, batch->seq), CountedTargets(*batch), options);
      },
      [result, update = options.update, attached = state->communicator != nullptr](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", result->loss);
        out.Set("tokens", static_cast<double>(result->tokens));
        out.Set("updated", result->updated);
        const char* skipped = SkipReasonName(result->skipped);
        out.Set("skipped", skipped ? Napi::Value(Napi::String::New(env, skipped)) : env.Null());
        out.Set("gradNorm", result->grad_norm);
        out.Set("updateMs", result->update_ms);
        out.Set("lossScale", result->loss_scale);
        if (update) {
          out.Set("stepLoss", result->step_loss);
          out.Set("stopRequested", result->stop_requested);
          out.Set("nonfiniteLossRanks", NumbersToJs(env, result->nonfinite_loss_ranks));
          if (attached) {
            out.Set("reducedBytes", static_cast<double>(result->reduced_bytes));
            out.Set("reduceMs", result->reduce_ms);
          }
        }
        if (!result->param_grad_norms.empty()) {
          Napi::Object norms = Napi::Object::New(env);
          for (const auto& [name, norm] : result->param_grad_norms) norms.Set(name, norm);
          out.Set("paramGradNorms", norms);
        }
        return out;
      });
}

// setTrainable(names: string[], masterDtype: string | null)
Napi::Value NativeModel::SetTrainable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto list = js::StringArray(info[0], "names");
  auto names = std::make_shared<std::unordered_set<std::string>>(list.begin(), list.end());
  std::optional<c10::ScalarType> master;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    try {
      master = ScalarTypeFromName(js::String(info[1], "masterDtype"));
    } catch (const std::invalid_argument& e) {
      js::TypeError(env, e.what());
    }
  }
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.setTrainable",
      [state, names, master, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->SetTrainable(*names, master);
        *bytes = state->ParameterBytes() + state->optimizer.StateBytes();
      },
      [this, bytes](Napi::Env env) { return ReportMemory(env, state_ ? *bytes : 0); });
}

// configureOptimizer({ noDecay: string[], step: number, lossScaling: boolean, lossScale?: number, goodSteps?: number })
Napi::Value NativeModel::ConfigureOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto options = js::Object(info[0], "options");
  const auto no_decay = js::StringArray(options.Get("noDecay"), "options.noDecay");
  const int64_t step = js::Integer(options.Get("step"), "options.step");
  const bool scaling = js::Bool(options.Get("lossScaling"), "options.lossScaling");
  const auto lock = LockOrBusy(env, *state, "configureOptimizer");
  state->optimizer.no_decay = std::unordered_set<std::string>(no_decay.begin(), no_decay.end());
  state->optimizer.step = step;
  state->scaler.enabled = scaling;
  if (options.Has("lossScale") && !options.Get("lossScale").IsUndefined()) {
    state->scaler.scale = js::Number(options.Get("lossScale"), "options.lossScale");
  }
  if (options.Has("goodSteps") && !options.Get("goodSteps").IsUndefined()) {
    state->scaler.good_steps = js::Integer(options.Get("goodSteps"), "options.goodSteps");
  }
  state->ResetStepWindow();  // a new run: no micro-step of an earlier one counts towards its first step
  state->optimizer.lr_scale.clear();
  if (options.Has("lrScale") && !options.Get("lrScale").IsUndefined()) {
    const auto scales = js::Object(options.Get("lrScale"), "options.lrScale");
    const auto keys = scales.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string name = keys.Get(i).As<Napi::String>().Utf8Value();
      const double factor = js::Number(scales.Get(name), "options.lrScale[" + name + "]");
      if (!(factor > 0.0)) js::TypeError(env, "options.lrScale[" + name + "] must be positive");
      state->optimizer.lr_scale[name] = factor;
    }
  }
  return env.Undefined();
}

Napi::Value NativeModel::OptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto lock = LockOrBusy(env, *state, "optimizerState");
  Napi::Object out = Napi::Object::New(env);
  out.Set("step", static_cast<double>(state->optimizer.step));
  out.Set("lossScale", state->scaler.scale);
  out.Set("goodSteps", static_cast<double>(state->scaler.good_steps));
  const auto names = state->optimizer.StateNames();
  Napi::Array list = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) list.Set(static_cast<uint32_t>(i), names[i]);
  out.Set("names", list);
  return out;
}

// attachProcessGroup(group: NativeProcessGroup | null): from now on each update sums the trainable gradients
// over the group's ranks first (null detaches).
Napi::Value NativeModel::AttachProcessGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  std::shared_ptr<Communicator> communicator;
  if (!info[0].IsNull() && !info[0].IsUndefined()) communicator = CommunicatorFromJs(info[0], "group");
  int64_t zero_stage = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    zero_stage = js::Integer(js::Object(info[1], "options").Get("zeroStage"), "options.zeroStage");
    if (zero_stage != 0 && zero_stage != 1) js::TypeError(env, "options.zeroStage must be 0 or 1");
  }
  const auto lock = LockOrBusy(env, *state, "attachProcessGroup");
  state->communicator = communicator;
  state->zero_stage = static_cast<int>(zero_stage);
  return env.Undefined();
}

// gatherOptimizerState(): with zero_stage 1 a collective (every rank calls it): rank 0 receives the whole AdamW
// state, per parameter, for a checkpoint to write; scatterOptimizerState() returns to the sharded state. Without
// ZeRO both do nothing.
Napi::Value NativeModel::GatherOptimizerState(const Napi::CallbackInfo& info) {
  auto state = State(info.Env());
  return RunAsync(
      Value(), "llamapro.gatherOptimizerState",
      [state] {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->Sharded()) state->Zero().Gather(*state->communicator, state->TrainableParams(), state->optimizer);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// scatterOptimizerState(): keeps this rank's chunks of whole per-parameter AdamW state (a loaded checkpoint, or
// what gatherOptimizerState put there) and frees the rest. Not a collective.
Napi::Value NativeModel::ScatterOptimizerState(const Napi::CallbackInfo& info) {
  auto state = State(info.Env());
  return RunAsync(
      Value(), "llamapro.scatterOptimizerState",
      [state] {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->Sharded()) state->Zero().Scatter(state->TrainableParams(), state->optimizer);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// setGradientCheckpointing(on: boolean, frozenLayers?: boolean): recompute the decoder layers that train (and with
// frozenLayers the frozen ones backward passes through too) in backward instead of keeping their activations
Napi::Value NativeModel::SetGradientCheckpointing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const bool on = js::Bool(info[0], "on");
  const bool frozen = info.Length() > 1 && !info[1].IsUndefined() ? js::Bool(info[1], "frozenLayers")
                                                                  : state->module->checkpoint_frozen_layers;
  const auto lock = LockOrBusy(env, *state, "setGradientCheckpointing");
  state->module->gradient_checkpointing = on;
  state->module->checkpoint_frozen_layers = frozen;
  return env.Undefined();
}

}  // namespace llamapro
