#include "zero_optimizer.h"

#include <cmath>
#include <stdexcept>

#include "process_group.h"

namespace llamapro {
namespace {

torch::Tensor Flat(const torch::Tensor& t) { return t.view({-1}); }

}  // namespace

ZeroOptimizer::ZeroOptimizer(const std::vector<NamedTensor>& trainable, int rank, int world_size, int64_t bucket_bytes)
    : rank_(rank), world_(world_size) {
  torch::NoGradGuard no_grad;
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("ZeRO: rank outside the world size");
  }
  int64_t bytes = 0;
  for (size_t i = 0; i < trainable.size(); ++i) {
    const auto& t = trainable[i].tensor;
    if (!t.is_contiguous()) throw std::logic_error("ZeRO: parameter " + trainable[i].name + " is not contiguous");
    names_.push_back(trainable[i].name);
    numels_.push_back(t.numel());
    dtypes_.push_back(t.scalar_type());
    const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    const bool fits = !buckets_.empty() && dtypes_[buckets_.back().first] == t.scalar_type() &&
                      trainable[buckets_.back().first].tensor.device() == t.device() && bytes + b <= bucket_bytes;
    if (!fits) {
      buckets_.emplace_back();
      buckets_.back().first = i;
      bytes = 0;
    }
    buckets_.back().end = i + 1;
    buckets_.back().numel += t.numel();
    bytes += b;
  }
  for (auto& bucket : buckets_) {
    bucket.chunk = (bucket.numel + world_ - 1) / world_;
    const int64_t lo = rank_ * bucket.chunk;
    const int64_t hi = lo + bucket.chunk;
    int64_t offset = 0;
    for (size_t i = bucket.first; i < bucket.end; ++i) {
      const int64_t begin = std::max(offset, lo);
      const int64_t end = std::min(offset + numels_[i], hi);
      if (begin < end) bucket.pieces.push_back({i, begin - offset, begin - lo, end - begin});
      offset += numels_[i];
    }
    const auto& like = trainable[bucket.first].tensor;
    const auto options = torch::TensorOptions().dtype(like.scalar_type()).device(like.device());
    bucket.exp_avg = torch::zeros({bucket.chunk}, options);
    bucket.exp_avg_sq = torch::zeros({bucket.chunk}, options);
  }
}

bool ZeroOptimizer::Matches(const std::vector<NamedTensor>& trainable) const {
  if (trainable.size() != names_.size()) return false;
  for (size_t i = 0; i < trainable.size(); ++i) {
    const auto& t = trainable[i].tensor;
    if (trainable[i].name != names_[i] || t.numel() != numels_[i] || t.scalar_type() != dtypes_[i]) return false;
  }
  return true;
}

int64_t ZeroOptimizer::StateBytes() const {
  int64_t bytes = 0;
  for (const auto& b : buckets_) {
    bytes += (b.exp_avg.numel() + b.exp_avg_sq.numel()) * static_cast<int64_t>(b.exp_avg.element_size());
  }
  return bytes;
}

int64_t ZeroOptimizer::ReduceScatter(Communicator& communicator, const std::vector<NamedTensor>& trainable) {
  torch::NoGradGuard no_grad;
  if (!Matches(trainable)) {
    throw std::logic_error("ZeRO: the trainable parameters changed since the optimizer state was laid out");
  }
  // Bucket by bucket: each gradient is freed once it is packed, so at most one bucket of flat copies exists beside
  // the gradients that are left.
  int64_t bytes = 0;
  grads_.assign(buckets_.size(), torch::Tensor());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& bucket = buckets_[b];
    const auto& like = trainable[bucket.first].tensor;
    auto flat =
        torch::zeros({bucket.chunk * world_}, torch::TensorOptions().dtype(like.scalar_type()).device(like.device()));
    int64_t offset = 0;
    for (size_t i = bucket.first; i < bucket.end; ++i) {
      auto& grad = trainable[i].tensor.mutable_grad();
      if (grad.defined()) flat.narrow(0, offset, numels_[i]).copy_(grad.reshape({-1}));
      grad.reset();
      offset += numels_[i];
    }
    grads_[b] = torch::empty({bucket.chunk}, flat.options());
    communicator.ReduceScatter(flat, grads_[b], "the reduce-scatter of the trainable gradients (zero_stage 1)");
    bytes += bucket.numel * static_cast<int64_t>(flat.element_size());
  }
  return bytes;
}

void ZeroOptimizer::Unscale(double factor) {
  torch::NoGradGuard no_grad;
  if (factor == 1.0) return;
  for (auto& grad : grads_) grad.mul_(factor);
}

std::vector<double> ZeroOptimizer::SquaredNorms(Communicator& communicator, std::vector<double>& extras) {
  torch::NoGradGuard no_grad;
  if (grads_.size() != buckets_.size()) throw std::logic_error("ZeRO: SquaredNorms before ReduceScatter");
  const size_t count = names_.size();
  std::vector<double> numbers(count, 0.0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (const auto& piece : buckets_[b].pieces) {
      numbers[piece.param] += SumOfSquares(grads_[b].narrow(0, piece.chunk_offset, piece.length));
    }
  }
  numbers.insert(numbers.end(), extras.begin(), extras.end());
  communicator.AllReduceNumbers(numbers);
  extras.assign(numbers.begin() + static_cast<std::ptrdiff_t>(count), numbers.end());
  numbers.resize(count);
  return numbers;
}

void ZeroOptimizer::Step(Communicator& communicator, const std::vector<NamedTensor>& trainable, AdamW& optimizer,
                         const AdamWHyper& hyper, float clip) {
  torch::NoGradGuard no_grad;
  if (grads_.size() != buckets_.size()) throw std::logic_error("ZeRO: Step before ReduceScatter");
  // AdamW on this rank's chunks (the formula of AdamW::Step, element for element).
  ++optimizer.step;
  const double bias_correction1 = 1.0 - std::pow(hyper.beta1, static_cast<double>(optimizer.step));
  const double bias_correction2 = 1.0 - std::pow(hyper.beta2, static_cast<double>(optimizer.step));
  const double step_size = hyper.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    auto& bucket = buckets_[b];
    for (const auto& piece : bucket.pieces) {
      auto param = Flat(trainable[piece.param].tensor).narrow(0, piece.param_offset, piece.length);
      auto grad = grads_[b].narrow(0, piece.chunk_offset, piece.length);
      auto m = bucket.exp_avg.narrow(0, piece.chunk_offset, piece.length);
      auto v = bucket.exp_avg_sq.narrow(0, piece.chunk_offset, piece.length);
      const double decay = optimizer.no_decay.count(names_[piece.param]) ? 0.0 : hyper.weight_decay;
      AdamWUpdate(param, grad, m, v, hyper, decay, step_size, bias_correction2_sqrt, clip);
    }
    grads_[b] = torch::Tensor();
    // Every rank's updated chunk to every rank.
    const auto& like = trainable[bucket.first].tensor;
    auto own = torch::zeros({bucket.chunk}, like.options().requires_grad(false));
    for (const auto& piece : bucket.pieces) {
      own.narrow(0, piece.chunk_offset, piece.length)
          .copy_(Flat(trainable[piece.param].tensor).narrow(0, piece.param_offset, piece.length));
    }
    auto flat = torch::empty({bucket.chunk * world_}, own.options());
    communicator.AllGather(own, flat, "the all-gather of the updated parameters (zero_stage 1)");
    int64_t offset = 0;
    for (size_t i = bucket.first; i < bucket.end; ++i) {
      Flat(trainable[i].tensor).copy_(flat.narrow(0, offset, numels_[i]));
      offset += numels_[i];
    }
  }
  grads_.clear();
}

void ZeroOptimizer::Gather(Communicator& communicator, const std::vector<NamedTensor>& trainable, AdamW& optimizer) {
  torch::NoGradGuard no_grad;
  if (!Matches(trainable)) {
    throw std::logic_error("ZeRO: the trainable parameters changed since the optimizer state was laid out");
  }
  for (auto& bucket : buckets_) {
    for (const bool squared : {false, true}) {
      const auto& mine = squared ? bucket.exp_avg_sq : bucket.exp_avg;
      auto flat = torch::empty({bucket.chunk * world_}, mine.options());
      communicator.AllGather(mine, flat, "gathering the optimizer state for a checkpoint (zero_stage 1)");
      if (rank_ != 0) continue;
      int64_t offset = 0;
      for (size_t i = bucket.first; i < bucket.end; ++i) {
        const auto& param = trainable[i].tensor;
        auto& whole = squared ? optimizer.ExpAvgSq(names_[i], param) : optimizer.ExpAvg(names_[i], param);
        whole.copy_(flat.narrow(0, offset, numels_[i]).view_as(param));
        offset += numels_[i];
      }
    }
  }
}

void ZeroOptimizer::Scatter(const std::vector<NamedTensor>& trainable, AdamW& optimizer) {
  torch::NoGradGuard no_grad;
  if (!Matches(trainable)) {
    throw std::logic_error("ZeRO: the trainable parameters changed since the optimizer state was laid out");
  }
  for (auto& bucket : buckets_) {
    for (const auto& piece : bucket.pieces) {
      for (const bool squared : {false, true}) {
        const auto* whole = optimizer.Find(names_[piece.param], squared);
        if (whole == nullptr) continue;
        if (whole->numel() != numels_[piece.param]) {
          throw std::invalid_argument("optimizer state of " + names_[piece.param] + " has " +
                                      std::to_string(whole->numel()) + " elements, the parameter " +
                                      std::to_string(numels_[piece.param]));
        }
        auto& mine = squared ? bucket.exp_avg_sq : bucket.exp_avg;
        mine.narrow(0, piece.chunk_offset, piece.length)
            .copy_(whole->reshape({-1}).narrow(0, piece.param_offset, piece.length));
      }
    }
  }
  for (const auto& name : names_) optimizer.Drop(name);
}

}  // namespace llamapro
