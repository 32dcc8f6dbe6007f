// Per-decoder-layer activation checkpointing (LibTorch C++ has no torch.utils.checkpoint).
//
// A checkpointed layer runs its forward without recording a graph and keeps only its input; in backward it
// recomputes the layer with gradients enabled from a detached copy of that input and back-propagates through the
// recomputed graph (reentrantly, as PyTorch's use_reentrant=True). Unlike PyTorch's reentrant variant the layer's
// trainable parameters are inputs of the autograd node, so a layer whose input needs no gradient (the lowest
// trainable layer above frozen embeddings) still trains; frozen parameters are not inputs and never get .grad.
// The layers have no dropout or other randomness and compute in the dtype of their input, so the recomputation
// is the same computation as the forward it replaces.
#pragma once
#include <torch/torch.h>

#include "llama_modules.h"

namespace llamapro {

// True when autograd would record this layer: grad mode is on and its input or one of its parameters needs a
// gradient. Layers below the lowest trainable one are not recorded at all, so they need no checkpoint.
bool LayerRecordsGraph(DecoderLayerImpl& layer, const torch::Tensor& x);

// True when one of the layer's parameters trains. LLaMA-Factory checkpoints only such layers: recomputing a frozen
// layer costs a forward of it in every backward and saves only what its input gradient needs, so by default the
// frozen layers between trainable ones (most of a LLaMA-Pro model) keep their activations instead.
bool LayerTrains(DecoderLayerImpl& layer);

// layer->forward(x, context), keeping only x for backward.
torch::Tensor CheckpointedLayerForward(DecoderLayerImpl& layer, const torch::Tensor& x, const AttentionContext& context,
                                       const torch::Tensor& query_rows = {});

}  // namespace llamapro
