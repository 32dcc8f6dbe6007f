#include "async_work.h"

#include <torch/torch.h>

#include <atomic>
#include <new>

namespace llamapro {
namespace {

// Codes of lib/error-codes.ts (test/error-codes.test.ts checks that every code in native/ is one of them).
constexpr const char* kNative = "LLAMAPRO_NATIVE";
constexpr const char* kOutOfMemory = "LLAMAPRO_OUT_OF_MEMORY";

std::atomic<int> g_intra_op_threads{0};

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Object owner, const char* name, WorkFn work, DoneFn done)
      : Napi::AsyncWorker(owner.Env(), name),
        owner_(Napi::Persistent(owner)),  // released when the worker is destroyed, after the Promise settles
        deferred_(Napi::Promise::Deferred::New(owner.Env())),
        work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      ApplyThreadSettings();
      work_();
    } catch (const CodedError& e) {
      Fail(e.what(), e.code());
    } catch (const c10::OutOfMemoryError& e) {  // thrown by LibTorch's CUDA caching allocator
      Fail(e.what_without_backtrace(), kOutOfMemory);
    } catch (const c10::Error& e) {
      Fail(e.what_without_backtrace(), kNative);
    } catch (const std::bad_alloc&) {
      Fail("out of memory: the allocation for this operation failed (std::bad_alloc)", kOutOfMemory);
    } catch (const std::exception& e) {
      Fail(e.what(), kNative);
    } catch (...) {
      Fail("unknown native error", kNative);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const CodedError& e) {
      deferred_.Reject(MakeError(env, e.what(), e.code()));
    } catch (const c10::OutOfMemoryError& e) {
      deferred_.Reject(MakeError(env, e.what_without_backtrace(), kOutOfMemory));
    } catch (const c10::Error& e) {
      deferred_.Reject(MakeError(env, e.what_without_backtrace(), kNative));
    } catch (const std::bad_alloc&) {
      deferred_.Reject(MakeError(env, "out of memory while building the result (std::bad_alloc)", kOutOfMemory));
    } catch (const std::exception& e) {
      deferred_.Reject(MakeError(env, e.what(), kNative));
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(MakeError(Env(), message_, code_)); }

 private:
  void Fail(const std::string& message, std::string code) {
    message_ = message;
    code_ = std::move(code);
    SetError(message);
  }

  static Napi::Value MakeError(Napi::Env env, const std::string& message, const std::string& code) {
    Napi::Error error = Napi::Error::New(env, message);
    error.Value().Set("code", Napi::String::New(env, code));
    return error.Value();
  }

  Napi::ObjectReference owner_;
  Napi::Promise::Deferred deferred_;
  WorkFn work_;
  DoneFn done_;
  std::string message_;
  std::string code_;
};

}  // namespace

Napi::Promise RunAsync(Napi::Object owner, const char* name, WorkFn work, DoneFn done) {
  auto* worker = new PromiseWorker(owner, name, std::move(work), std::move(done));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

void SetIntraOpThreads(int threads) {
  g_intra_op_threads = threads;
  ApplyThreadSettings();
}

int IntraOpThreads() { return g_intra_op_threads.load(); }

void ApplyThreadSettings() {
  const int wanted = g_intra_op_threads.load();
  if (wanted > 0 && at::get_num_threads() != wanted) at::set_num_threads(wanted);
}

void ThrowJs(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  throw error;
}

}  // namespace llamapro
