#include "activation_checkpoint.h"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

namespace llamapro {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The layer's parameters that train, in a fixed order: the forward and the backward must agree on it.
std::vector<torch::Tensor> TrainableParameters(DecoderLayerImpl& layer) {
  std::vector<torch::Tensor> out;
  for (const auto& p : layer.parameters(/*recurse=*/true)) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  // Function::apply runs this with grad mode off: nothing inside the layer is recorded or kept.
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::TensorList params, DecoderLayerImpl* layer,
                               const AttentionContext* context, const torch::Tensor* query_rows) {
    ctx->save_for_backward({x});
    // The layer outlives the graph: both belong to one training step, which holds the model's mutex.
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["parameters"] = static_cast<int64_t>(params.size());
    ctx->saved_data["input_grad"] = x.requires_grad();
    // The context is a stack object of the forward pass: keep the tensors this layer's attention reads.
    ctx->saved_data["cos"] = context->cos;
    ctx->saved_data["sin"] = context->sin;
    const auto& mask = context->masks.at(layer->self_attn->sliding_window);
    ctx->saved_data["has_mask"] = mask.defined();
    if (mask.defined()) ctx->saved_data["mask"] = mask;
    ctx->saved_data["packed"] = context->rows.defined();
    if (context->rows.defined()) {
      ctx->saved_data["rows"] = context->rows;
      ctx->saved_data["pad_rows"] = context->pad_rows;
      ctx->saved_data["batch"] = context->batch;
      ctx->saved_data["seq"] = context->seq;
    }
    ctx->saved_data["subset"] = query_rows->defined();
    if (query_rows->defined()) ctx->saved_data["query_rows"] = *query_rows;
    return layer->forward(x, *context, *query_rows);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    AttentionContext context;
    context.cos = ctx->saved_data["cos"].toTensor();
    context.sin = ctx->saved_data["sin"].toTensor();
    context.masks[layer->self_attn->sliding_window] =
        ctx->saved_data["has_mask"].toBool() ? ctx->saved_data["mask"].toTensor() : torch::Tensor();
    if (ctx->saved_data["packed"].toBool()) {
      context.rows = ctx->saved_data["rows"].toTensor();
      context.pad_rows = ctx->saved_data["pad_rows"].toTensor();
      context.batch = ctx->saved_data["batch"].toInt();
      context.seq = ctx->saved_data["seq"].toInt();
    }
    const torch::Tensor query_rows =
        ctx->saved_data["subset"].toBool() ? ctx->saved_data["query_rows"].toTensor() : torch::Tensor();
    const bool input_grad = ctx->saved_data["input_grad"].toBool();
    const auto params = TrainableParameters(*layer);
    const auto expected = ctx->saved_data["parameters"].toInt();
    TORCH_CHECK(static_cast<int64_t>(params.size()) == expected,
                "activation checkpointing: the layer's trainable parameters changed between forward and backward");

    auto x = ctx->get_saved_variables()[0].detach();
    x.set_requires_grad(input_grad);
    torch::Tensor out;
    {
      RECORD_USER_SCOPE("llamapro::checkpoint_recompute");
      torch::AutoGradMode enable_grad(true);
      out = layer->forward(x, context, query_rows);
    }
    std::vector<torch::Tensor> inputs;
    if (input_grad) inputs.push_back(x);
    inputs.insert(inputs.end(), params.begin(), params.end());
    variable_list result;
    result.reserve(1 + params.size() + 3);
    if (inputs.empty()) {
      result.resize(1 + params.size() + 3);
      return result;
    }
    auto grads = torch::autograd::grad({out}, inputs, {grad_outputs[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    size_t next = 0;
    result.push_back(input_grad ? grads[next++] : torch::Tensor());
    for (size_t i = 0; i < params.size(); ++i) result.push_back(grads[next++]);
    result.emplace_back();  // layer: not a tensor
    result.emplace_back();  // context: not a tensor
    result.emplace_back();  // query rows: not an input of the graph
    return result;
  }
};

}  // namespace

bool LayerRecordsGraph(DecoderLayerImpl& layer, const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return false;
  return x.requires_grad() || LayerTrains(layer);
}

bool LayerTrains(DecoderLayerImpl& layer) {
  for (const auto& p : layer.parameters(/*recurse=*/true)) {
    if (p.requires_grad()) return true;
  }
  return false;
}

torch::Tensor CheckpointedLayerForward(DecoderLayerImpl& layer, const torch::Tensor& x, const AttentionContext& context,
                                       const torch::Tensor& query_rows) {
  const auto params = TrainableParameters(layer);
  return CheckpointedLayer::apply(x, torch::TensorList(params), &layer, &context, &query_rows);
}

}  // namespace llamapro
