// ZeRO stage 1 (DeepSpeed's optimizer-state partitioning) over a process group: the trainable parameters are laid
// out as flat buckets (consecutive parameters of one dtype and device, up to bucket_bytes, as the all-reduce of
// plain data parallelism groups them); each bucket is padded to world_size equal chunks and rank r owns chunk r
// of every bucket. A rank keeps AdamW's moments for its chunks only. One update: gradients reduce-scattered, the
// squared norms of the chunks summed over the ranks (clipping by the global norm), AdamW on the rank's chunks of
// the parameters, then the updated chunks all-gathered so that every rank holds the full weights again.
//
// The trainable parameters are the float32 master weights themselves and every rank's forward needs all of them,
// so they stay whole on every rank; only the moments (8 bytes per trainable parameter in float32) are sharded.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "adamw.h"

namespace llamapro {

class Communicator;

class ZeroOptimizer {
 public:
  ZeroOptimizer(const std::vector<NamedTensor>& trainable, int rank, int world_size, int64_t bucket_bytes);

  // Whether this layout was made for exactly these parameters (names, sizes, dtypes, in order).
  bool Matches(const std::vector<NamedTensor>& trainable) const;

  // The phases of an update, after backward, in this order (ZeroSync in gradient_sync.cc calls them):
  // 1. each bucket's gradients reduce-scattered into this rank's chunk (the parameters' .grad freed as it goes);
  // returns the gradient bytes this rank sent.
  int64_t ReduceScatter(Communicator& communicator, const std::vector<NamedTensor>& trainable);
  // 2. the chunks divided by `factor` (the loss scale).
  void Unscale(double factor);
  // 3. per-parameter sums of squares over this rank's chunks, summed over the ranks in one all-reduce together
  // with `extras`; returns the per-parameter sums of squares (global), `extras` summed in place.
  std::vector<double> SquaredNorms(Communicator& communicator, std::vector<double>& extras);
  // 4. AdamW on this rank's chunks (`optimizer` supplies the step count and no_decay set; its per-parameter state
  // is not used), then every rank's updated chunks all-gathered into the whole parameters.
  void Step(Communicator& communicator, const std::vector<NamedTensor>& trainable, AdamW& optimizer,
            const AdamWHyper& hyper, float clip);
  // The reduced chunks of a skipped step, dropped.
  void Discard() { grads_.clear(); }
  const std::vector<std::string>& names() const { return names_; }

  // Checkpoints: a collective. Every rank's moments are all-gathered; rank 0 (only) puts them, whole per
  // parameter, into `optimizer`'s per-parameter state, where the checkpoint writer reads them.
  void Gather(Communicator& communicator, const std::vector<NamedTensor>& trainable, AdamW& optimizer);
  // Takes this rank's chunks from whole per-parameter state in `optimizer` (a resumed checkpoint, or what Gather
  // put there) and drops that state. Parameters without state there keep their chunks. Not a collective.
  void Scatter(const std::vector<NamedTensor>& trainable, AdamW& optimizer);

  int64_t StateBytes() const;

 private:
  // The part of one parameter that lies in this rank's chunk of its bucket.
  struct Piece {
    size_t param;          // index into the trainable list
    int64_t param_offset;  // first element (of the flattened parameter) in the chunk
    int64_t chunk_offset;  // where it lies in the chunk
    int64_t length;
  };
  struct Bucket {
    size_t first = 0, end = 0;  // trainable parameters [first, end)
    int64_t numel = 0;          // their elements; padded to chunk × world_size
    int64_t chunk = 0;
    std::vector<Piece> pieces;
    torch::Tensor exp_avg, exp_avg_sq;  // [chunk]
  };
  std::vector<Bucket> buckets_;
  std::vector<torch::Tensor> grads_;  // per bucket: this rank's chunk of the summed gradients, between phases 1 and 4
  std::vector<std::string> names_;
  std::vector<int64_t> numels_;
  std::vector<c10::ScalarType> dtypes_;
  int rank_;
  int world_;
};

}  // namespace llamapro
