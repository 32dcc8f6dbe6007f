// Every call that touches tensor data runs here: off the main thread, settling a Promise.
//
// The pattern (after sharp's workers): the caller copies its JS arguments into plain C++ values on the main
// thread and captures them in `work`; `work` runs on the libuv pool and makes no N-API calls; `done` builds the
// JS result on the main thread. Errors thrown by `work` (CodedError, c10::Error, std::exception, std::bad_alloc)
// reject the Promise with the LibTorch message (no C++ backtrace) and a `code` property chosen by their type.
#pragma once
#include <napi.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace llamapro {

using WorkFn = std::function<void()>;
using DoneFn = std::function<Napi::Value(Napi::Env)>;

// `owner` (the JS object whose native state `work` uses) is kept alive until the Promise settles, so that
// garbage collection cannot finalise it under a running worker.
Napi::Promise RunAsync(Napi::Object owner, const char* name, WorkFn work, DoneFn done);

// Thread count for LibTorch's intra-op pool. OpenMP keeps it per calling thread, so each worker applies it
// again before it computes (ApplyThreadSettings); 0 means "leave LibTorch's default".
void SetIntraOpThreads(int threads);
int IntraOpThreads();
void ApplyThreadSettings();

// A failure that carries its own `code` for the JS error (e.g. LLAMAPRO_NO_CUDA, LLAMAPRO_DISTRIBUTED). Other
// failures get theirs from their C++ type: c10::OutOfMemoryError and std::bad_alloc are LLAMAPRO_OUT_OF_MEMORY,
// everything else LLAMAPRO_NATIVE. No code is chosen from the text of a message.
class CodedError : public std::runtime_error {
 public:
  CodedError(const std::string& message, std::string code) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Throws a JS Error (with code) from a synchronous method.
[[noreturn]] void ThrowJs(Napi::Env env, const std::string& message, const char* code = "LLAMAPRO_NATIVE");

}  // namespace llamapro
