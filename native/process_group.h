// Data-parallel communication on PyTorch's own engine, c10d: a TCPStore for the rendezvous and a
// ProcessGroupGloo (CPU) — or ProcessGroupNCCL where LibTorch has CUDA and NCCL — for the collectives.
// The JS side sees one object per process (`NativeProcessGroup`); a model it is attached to all-reduces its
// trainable gradients inside trainStep, before clipping and the optimizer, so the trainer never talks to sockets.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "adamw.h"

namespace llamapro {

struct ProcessGroupConfig {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // the CUDA device index for NCCL
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{1800 * 1000};
  std::string backend = "gloo";     // "gloo" or "nccl"
  int64_t bucket_bytes = 25 << 20;  // DDP's bucket_cap_mb default
};

// Owns the c10d objects of one rank. Every method is a collective: all ranks call it in the same order.
class Communicator {
 public:
  explicit Communicator(const ProcessGroupConfig& config);
  ~Communicator();

  const ProcessGroupConfig& config() const { return config_; }
  // Sums the gradients of `trainable` over the ranks in place (undefined gradients count as zeros), in flat
  // buckets of up to bucket_bytes, and `extras` (float64) with them. Returns the gradient bytes each rank sent.
  int64_t AllReduceGradients(const std::vector<NamedTensor>& trainable, std::vector<double>& extras);
  void AllReduceNumbers(std::vector<double>& values);
  void Barrier();
  // ZeRO stage 1 (native/zero_optimizer.cc). `flat` holds world_size equal chunks; afterwards `shard` holds this
  // rank's chunk summed over the ranks. NCCL reduce-scatters; Gloo has no reduce_scatter in LibTorch 1.13
  // ("ProcessGroupGloo does not support reduce_scatter"), so there the whole buffer is all-reduced (the same
  // traffic as without ZeRO) and the rank keeps its chunk.
  void ReduceScatter(torch::Tensor& flat, torch::Tensor& shard, const std::string& what);
  // Every rank's `shard` concatenated in rank order into `flat` (world_size × shard.numel() elements).
  void AllGather(const torch::Tensor& shard, torch::Tensor& flat, const std::string& what);

 private:
  struct Impl;
  [[noreturn]] void Fail(const std::string& what, const std::string& detail) const;
  // Which rank is at fault, from the store: a rank whose heartbeat stopped has died; one that beats but has not
  // reached this collective hangs. Called after a collective failed.
  std::string Diagnose();
  void CountCollective();
  ProcessGroupConfig config_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
  int64_t collectives_ = 0;
  // A thread that counts up a key in the store twice a second while this rank lives. It owns its own references
  // (the store, this state), never `this`: a store call to a rank that stopped answering waits up to ddp_timeout,
  // so the destructor waits only kHeartbeatStopWait for it and then leaves it to finish on its own (detached).
  struct Heartbeat {
    std::mutex mutex;
    std::condition_variable cv;
    bool stopping = false;
    bool exited = false;
  };
  static constexpr std::chrono::milliseconds kHeartbeatStopWait{250};
  std::shared_ptr<Heartbeat> heartbeat_;
  std::thread heartbeat_thread_;
};

// The Communicator behind a JS NativeProcessGroup (connected), or an exception naming `what`.
std::shared_ptr<Communicator> CommunicatorFromJs(const Napi::Value& value, const char* what);

class NativeProcessGroup : public Napi::ObjectWrap<NativeProcessGroup> {
 public:
  // Tags every NativeProcessGroup object; js::Unwrap<NativeProcessGroup> (js_unwrap.h) checks it before unwrapping.
  static const napi_type_tag kTypeTag;
  static constexpr const char* kClassName = "NativeProcessGroup";
  static Napi::Function Define(Napi::Env env);
  explicit NativeProcessGroup(const Napi::CallbackInfo& info);
  std::shared_ptr<Communicator> communicator() const { return communicator_; }

 private:
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value AllReduce(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  std::shared_ptr<Communicator> Require(Napi::Env env) const;
  std::shared_ptr<Communicator> communicator_;
};

// Which backends this build can create ("gloo", "nccl").
std::vector<std::string> AvailableBackends();

}  // namespace llamapro
