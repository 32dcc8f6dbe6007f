#include "process_group.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
// Declared here too: without the Gloo headers nothing else brings it in.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#if defined(LLAMAPRO_WITH_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(LLAMAPRO_WITH_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "async_work.h"
#include "js_convert.h"
#include "js_unwrap.h"

namespace llamapro {

// LibTorch 2.x split the process group into a front (ProcessGroup) and backends (Backend); the backends keep
// the 1.13 collective signatures, so the backend object is what this file holds.
#if TORCH_VERSION_MAJOR >= 2
using PgBackend = c10d::Backend;
#else
using PgBackend = c10d::ProcessGroup;
#endif

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<PgBackend> group;
  torch::Device device{torch::kCPU};  // where small tensors (extras, numbers) live for this backend
};

std::vector<std::string> AvailableBackends() {
  std::vector<std::string> out;
#if defined(LLAMAPRO_WITH_GLOO)
  out.push_back("gloo");
#endif
#if defined(LLAMAPRO_WITH_NCCL)
  out.push_back("nccl");
#endif
  return out;
}

namespace {

std::string Describe(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// Gloo reports a collective that waited too long as "Timed out …" or "Application timeout caused pair closure".
std::string DescribeCollective(const std::exception& e, std::chrono::milliseconds timeout) {
  std::string text = Describe(e);
  if (text.find("imeout") != std::string::npos || text.find("imed out") != std::string::npos) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", static_cast<double>(timeout.count()) / 1000.0);
    text += std::string(" (no answer within ddp_timeout, ") + seconds + " s)";
  }
  return text;
}

#if defined(LLAMAPRO_WITH_GLOO)
// GLOO_SOCKET_IFNAME (as in PyTorch) picks the interface; on loopback rendezvous everything stays on 127.0.0.1;
// otherwise Gloo's default: the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> GlooDevice(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    std::string first(ifname);
    first = first.substr(0, first.find(','));
    return c10d::ProcessGroupGloo::createDeviceForInterface(first);
  }
  if (master_addr == "localhost" || master_addr.rfind("127.", 0) == 0) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

void WaitFor(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(); }

std::string HeartbeatKey(int rank) { return "llamapro/heartbeat/" + std::to_string(rank); }
std::string CollectiveKey(int rank) { return "llamapro/collectives/" + std::to_string(rank); }

}  // namespace

Communicator::Communicator(const ProcessGroupConfig& config) : config_(config), impl_(std::make_unique<Impl>()) {
  if (config.world_size < 1 || config.rank < 0 || config.rank >= config.world_size) {
    throw CodedError("distributed: rank " + std::to_string(config.rank) + " is outside world size " +
                         std::to_string(config.world_size),
                     "LLAMAPRO_DISTRIBUTED");
  }
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(config.master_port);
    options.isServer = config.rank == 0;
    options.numWorkers = static_cast<std::size_t>(config.world_size);
    options.waitWorkers = true;
    options.timeout = config.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(config.master_addr, options);
  } catch (const std::exception& e) {
    Fail("the rendezvous at " + config.master_addr + ":" + std::to_string(config.master_port), Describe(e));
  }
  try {
    if (config.backend == "gloo") {
#if defined(LLAMAPRO_WITH_GLOO)
      auto options = c10d::ProcessGroupGloo::Options::create(config.timeout);
      options->devices.push_back(GlooDevice(config.master_addr));
      options->threads = 2;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, config.rank, config.world_size, options);
#else
      throw std::runtime_error(
          "this build of llamapro has no Gloo backend (the LibTorch it was built against lacks the gloo headers)");
#endif
    } else if (config.backend == "nccl") {
#if defined(LLAMAPRO_WITH_NCCL)
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = config.timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, config.rank, config.world_size, options);
      impl_->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(config.local_rank));
#else
      throw std::runtime_error(
          "this build of llamapro has no NCCL backend (it needs a LibTorch with CUDA and the NCCL headers)");
#endif
    } else {
      throw std::invalid_argument("unknown backend '" + config.backend + "' (valid: gloo, nccl)");
    }
  } catch (const std::exception& e) {
    Fail("creating the " + config.backend + " process group", Describe(e));
  }
  heartbeat_ = std::make_shared<Heartbeat>();
  heartbeat_thread_ = std::thread([beat = heartbeat_, store = impl_->store, key = HeartbeatKey(config_.rank)] {
    std::unique_lock<std::mutex> lock(beat->mutex);
    while (!beat->stopping) {
      lock.unlock();  // the store call may block (up to ddp_timeout); stopping must not wait for it
      bool alive = true;
      try {
        store->add(key, 1);
      } catch (...) {
        alive = false;  // the store (on rank 0) is gone: nothing to beat into
      }
      lock.lock();
      if (!alive) break;
      beat->cv.wait_for(lock, std::chrono::milliseconds(500), [&beat] { return beat->stopping; });
    }
    beat->exited = true;
    beat->cv.notify_all();
  });
}

Communicator::~Communicator() {
  if (!heartbeat_thread_.joinable()) return;
  std::unique_lock<std::mutex> lock(heartbeat_->mutex);
  heartbeat_->stopping = true;
  heartbeat_->cv.notify_all();
  const bool exited = heartbeat_->cv.wait_for(lock, kHeartbeatStopWait, [this] { return heartbeat_->exited; });
  lock.unlock();
  // A thread still inside a store call holds the store and its state itself; it ends when that call returns or
  // times out. Joining it here could hold the caller (a libuv worker, or the JS thread when a model drops the
  // last reference) for the whole ddp_timeout.
  if (exited) {
    heartbeat_thread_.join();
  } else {
    heartbeat_thread_.detach();
  }
}

void Communicator::CountCollective() {
  ++collectives_;
  try {
    impl_->store->add(CollectiveKey(config_.rank), 1);
  } catch (...) {
    // the collective itself will fail and be diagnosed
  }
}

std::string Communicator::Diagnose() {
  const int world = config_.world_size;
  try {
    std::vector<int64_t> before(world), after(world), reached(world);
    for (int r = 0; r < world; ++r) before[r] = impl_->store->add(HeartbeatKey(r), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));
    std::string dead, hung;
    for (int r = 0; r < world; ++r) {
      if (r == config_.rank) continue;
      after[r] = impl_->store->add(HeartbeatKey(r), 0);
      reached[r] = impl_->store->add(CollectiveKey(r), 0);
      if (after[r] == before[r]) {
        dead += (dead.empty() ? "" : ", ") + std::to_string(r);
      } else if (reached[r] < collectives_) {
        hung += (hung.empty() ? "" : ", ") + std::to_string(r) + " (at collective " + std::to_string(reached[r]) +
                ", this rank at " + std::to_string(collectives_) + ")";
      }
    }
    std::string out;
    if (!dead.empty()) {
      out += "; rank " + dead + " stopped: its heartbeat ended (it exited, was killed, or its machine is down)";
    }
    if (!hung.empty()) {
      out += "; rank " + hung +
             " is alive but did not reach this collective within ddp_timeout (it hangs or is far slower)";
    }
    if (out.empty()) out = "; every rank still beats: the connection between ranks failed";
    return out;
  } catch (const std::exception&) {
    if (config_.rank == 0) return "";
    return "; rank 0, which hosts the rendezvous store at " + config_.master_addr + ":" +
           std::to_string(config_.master_port) + ", is unreachable: it has exited or its machine is down";
  }
}

void Communicator::Fail(const std::string& what, const std::string& detail) const {
  throw CodedError("distributed: rank " + std::to_string(config_.rank) + " of " + std::to_string(config_.world_size) +
                       ": " + what + " failed: " + detail,
                   "LLAMAPRO_DISTRIBUTED");
}

int64_t Communicator::AllReduceGradients(const std::vector<NamedTensor>& trainable, std::vector<double>& extras) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  // Consecutive gradients of one dtype and device share a flat bucket of up to bucket_bytes (DDP's scheme).
  struct Bucket {
    std::vector<torch::Tensor> grads;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  int64_t bucket_bytes = 0;
  int64_t total_bytes = 0;
  for (const auto& p : trainable) {
    auto& grad = p.tensor.mutable_grad();
    if (!grad.defined()) grad = torch::zeros_like(p.tensor);  // a rank whose batch reached no parameter sends zeros
    const int64_t bytes = grad.numel() * static_cast<int64_t>(grad.element_size());
    const bool fits = !buckets.empty() && buckets.back().grads.front().scalar_type() == grad.scalar_type() &&
                      buckets.back().grads.front().device() == grad.device() &&
                      bucket_bytes + bytes <= config_.bucket_bytes;
    if (!fits) {
      buckets.emplace_back();
      bucket_bytes = 0;
    }
    buckets.back().grads.push_back(grad);
    bucket_bytes += bytes;
    total_bytes += bytes;
  }
  torch::Tensor extra = torch::tensor(extras, torch::TensorOptions().dtype(torch::kFloat64)).to(impl_->device);
  try {
    CountCollective();
    // At most two buckets are in flight: one being summed while the next is packed, so the flat copies cost two
    // buckets of memory, not a second copy of every trainable gradient.
    auto finish = [](Bucket& bucket) {
      WaitFor(bucket.work);
      int64_t offset = 0;
      for (auto& g : bucket.grads) {
        g.copy_(bucket.flat.narrow(0, offset, g.numel()).view_as(g));
        offset += g.numel();
      }
      bucket.flat = torch::Tensor();
      bucket.work.reset();
    };
    size_t finished = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      auto& bucket = buckets[i];
      std::vector<torch::Tensor> views;
      views.reserve(bucket.grads.size());
      for (const auto& g : bucket.grads) views.push_back(g.reshape({-1}));
      bucket.flat = torch::cat(views);
      std::vector<torch::Tensor> tensors{bucket.flat};
      bucket.work = impl_->group->allreduce(tensors);
      if (i - finished >= 1) finish(buckets[finished++]);
    }
    std::vector<torch::Tensor> extra_list{extra};
    auto extra_work = impl_->group->allreduce(extra_list);
    while (finished < buckets.size()) finish(buckets[finished++]);
    WaitFor(extra_work);
  } catch (const std::exception& e) {
    Fail("the all-reduce of the trainable gradients", DescribeCollective(e, config_.timeout) + Diagnose());
  }
  const auto summed = extra.to(torch::kCPU).contiguous();
  for (size_t i = 0; i < extras.size(); ++i) extras[i] = summed.data_ptr<double>()[i];
  return total_bytes;
}

void Communicator::AllReduceNumbers(std::vector<double>& values) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::Tensor t = torch::tensor(values, torch::TensorOptions().dtype(torch::kFloat64)).to(impl_->device);
  try {
    std::vector<torch::Tensor> list{t};
    CountCollective();
    WaitFor(impl_->group->allreduce(list));
  } catch (const std::exception& e) {
    Fail("an all-reduce", DescribeCollective(e, config_.timeout) + Diagnose());
  }
  const auto summed = t.to(torch::kCPU).contiguous();
  for (size_t i = 0; i < values.size(); ++i) values[i] = summed.data_ptr<double>()[i];
}

void Communicator::ReduceScatter(torch::Tensor& flat, torch::Tensor& shard, const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t chunk = shard.numel();
  if (flat.numel() != chunk * config_.world_size) {
    throw std::logic_error("ReduceScatter: the flat buffer is not world_size chunks");
  }
  try {
    CountCollective();
    if (config_.backend == "nccl") {
      std::vector<torch::Tensor> outputs{shard};
      std::vector<std::vector<torch::Tensor>> inputs(1);
      for (int r = 0; r < config_.world_size; ++r) inputs[0].push_back(flat.narrow(0, r * chunk, chunk));
      WaitFor(impl_->group->reduce_scatter(outputs, inputs));
    } else {
      std::vector<torch::Tensor> tensors{flat};
      WaitFor(impl_->group->allreduce(tensors));
      shard.copy_(flat.narrow(0, config_.rank * chunk, chunk));
    }
  } catch (const std::exception& e) {
    Fail(what, DescribeCollective(e, config_.timeout) + Diagnose());
  }
}

void Communicator::AllGather(const torch::Tensor& shard, torch::Tensor& flat, const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t chunk = shard.numel();
  if (flat.numel() != chunk * config_.world_size) {
    throw std::logic_error("AllGather: the flat buffer is not world_size chunks");
  }
  try {
    CountCollective();
    std::vector<torch::Tensor> inputs{shard};
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int r = 0; r < config_.world_size; ++r) outputs[0].push_back(flat.narrow(0, r * chunk, chunk));
    WaitFor(impl_->group->allgather(outputs, inputs));
  } catch (const std::exception& e) {
    Fail(what, DescribeCollective(e, config_.timeout) + Diagnose());
  }
}

void Communicator::Barrier() {
  std::vector<double> one{1.0};
  AllReduceNumbers(one);
}

// ---- JS wrapper ----

const napi_type_tag NativeProcessGroup::kTypeTag = {0x6c6c616d6170726fULL, 0x70726f6367727570ULL};

Napi::Function NativeProcessGroup::Define(Napi::Env env) {
  return DefineClass(env, "NativeProcessGroup",
                     {
                         InstanceMethod("connect", &NativeProcessGroup::Connect),
                         InstanceMethod("allReduce", &NativeProcessGroup::AllReduce),
                         InstanceMethod("barrier", &NativeProcessGroup::Barrier),
                         InstanceMethod("destroy", &NativeProcessGroup::Destroy),
                     });
}

NativeProcessGroup::NativeProcessGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeProcessGroup>(info) {
  js::TagAs<NativeProcessGroup>(info);
}

std::shared_ptr<Communicator> NativeProcessGroup::Require(Napi::Env env) const {
  if (!communicator_) {
    ThrowJs(env, "the process group is not connected (call connect() first, or it was destroyed)",
            "LLAMAPRO_DISTRIBUTED");
  }
  return communicator_;
}

// connect({ rank, worldSize, localRank, masterAddr, masterPort, timeoutMs, backend, bucketBytes }): the rendezvous;
// resolves when every rank has joined.
Napi::Value NativeProcessGroup::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (communicator_) ThrowJs(env, "the process group is already connected", "LLAMAPRO_DISTRIBUTED");
  const auto o = js::Object(info[0], "options");
  ProcessGroupConfig config;
  config.rank = static_cast<int>(js::Integer(o.Get("rank"), "options.rank"));
  config.world_size = static_cast<int>(js::Integer(o.Get("worldSize"), "options.worldSize"));
  config.local_rank = static_cast<int>(js::Integer(o.Get("localRank"), "options.localRank"));
  config.master_addr = js::String(o.Get("masterAddr"), "options.masterAddr");
  config.master_port = static_cast<int>(js::Integer(o.Get("masterPort"), "options.masterPort"));
  config.timeout = std::chrono::milliseconds(js::Integer(o.Get("timeoutMs"), "options.timeoutMs"));
  config.backend = js::String(o.Get("backend"), "options.backend");
  config.bucket_bytes = js::Integer(o.Get("bucketBytes"), "options.bucketBytes");
  if (config.world_size < 1 || config.rank < 0 || config.rank >= config.world_size) {
    js::TypeError(env, "options.rank must be in [0, worldSize)");
  }
  if (config.master_port < 1 || config.master_port > 65535) {
    js::TypeError(env, "options.masterPort must be in 1..65535");
  }
  if (config.timeout.count() < 1) js::TypeError(env, "options.timeoutMs must be positive");
  if (config.bucket_bytes < 1) js::TypeError(env, "options.bucketBytes must be positive");
  auto made = std::make_shared<std::shared_ptr<Communicator>>();
  return RunAsync(
      Value(), "llamapro.processGroup.connect", [config, made] { *made = std::make_shared<Communicator>(config); },
      [this, made](Napi::Env env) -> Napi::Value {
        communicator_ = *made;
        return env.Undefined();
      });
}

// allReduce(Float64Array) -> Float64Array: the element-wise sum over the ranks.
Napi::Value NativeProcessGroup::AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto communicator = Require(env);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    js::TypeError(env, "values must be a Float64Array");
  }
  auto array = info[0].As<Napi::Float64Array>();
  auto values = std::make_shared<std::vector<double>>(array.Data(), array.Data() + array.ElementLength());
  return RunAsync(
      Value(), "llamapro.processGroup.allReduce", [communicator, values] { communicator->AllReduceNumbers(*values); },
      [values](Napi::Env env) -> Napi::Value {
        auto out = Napi::Float64Array::New(env, values->size());
        std::copy(values->begin(), values->end(), out.Data());
        return out;
      });
}

Napi::Value NativeProcessGroup::Barrier(const Napi::CallbackInfo& info) {
  auto communicator = Require(info.Env());
  return RunAsync(
      Value(), "llamapro.processGroup.barrier", [communicator] { communicator->Barrier(); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// destroy() -> Promise: drops this object's hold on the c10d objects; they close when no model holds them either.
// The closing (the heartbeat thread, Gloo's pairs, the store's sockets) runs on the libuv pool: with a peer that
// stopped answering it is not instant, and the JS thread must not wait for it.
Napi::Value NativeProcessGroup::Destroy(const Napi::CallbackInfo& info) {
  // Moved, not copied, into the work: a copy left here could be the last reference (when the worker has already
  // dropped its own), and the closing would then run on the JS thread after all.
  return RunAsync(
      Value(), "llamapro.processGroup.destroy",
      [communicator = std::move(communicator_)]() mutable { communicator.reset(); },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

std::shared_ptr<Communicator> CommunicatorFromJs(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  auto* group = js::Unwrap<NativeProcessGroup>(value, what);
  if (!group->communicator()) ThrowJs(env, std::string(what) + " is not connected", "LLAMAPRO_DISTRIBUTED");
  return group->communicator();
}

}  // namespace llamapro
