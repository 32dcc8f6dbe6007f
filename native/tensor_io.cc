#include "tensor_io.h"

#include "posix_file.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>

namespace llamapro {
namespace {

std::string ShapeString(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

}  // namespace

c10::ScalarType ScalarTypeFromSafetensors(const std::string& dtype) {
  static const std::map<std::string, c10::ScalarType> kTypes = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
  };
  const auto found = kTypes.find(dtype);
  if (found == kTypes.end()) throw std::invalid_argument("unsupported safetensors dtype " + dtype);
  return found->second;
}

c10::ScalarType ScalarTypeFromName(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  throw std::invalid_argument("dtype must be float32, bfloat16 or float16, got " + name);
}

void ReadTensors(const std::vector<ReadItem>& items, const std::function<torch::Tensor(const std::string&)>& target) {
  torch::NoGradGuard no_grad;
  // Validate everything and resolve every target first (on this thread: target() may create optimizer state),
  // then read. A bad item fails the whole load before any byte is read.
  struct Task {
    const ReadItem* item;
    const PosixFile* file;
    torch::Tensor tensor;
    c10::ScalarType file_type;
  };
  std::map<std::string, std::unique_ptr<PosixFile>> files;
  std::vector<Task> tasks;
  tasks.reserve(items.size());
  for (const auto& item : items) {
    auto& file = files[item.file];
    if (!file) {
      file = std::make_unique<PosixFile>(item.file, O_RDONLY);
      file->Advise(POSIX_FADV_SEQUENTIAL);
    }
    const std::string what = "tensor \"" + item.name + "\"";
    torch::Tensor tensor = target(item.name);
    const auto file_type = ScalarTypeFromSafetensors(item.dtype);
    if (tensor.sizes() != c10::IntArrayRef(item.shape)) {
      throw std::invalid_argument(item.file + ": " + what + " has shape " + ShapeString(item.shape) +
                                  " but the model expects " + ShapeString(tensor.sizes()));
    }
    const int64_t expected = tensor.numel() * static_cast<int64_t>(c10::elementSize(file_type));
    if (item.nbytes != expected) {
      throw std::invalid_argument(item.file + ": " + what + " spans " + std::to_string(item.nbytes) + " bytes, " +
                                  item.dtype + " " + ShapeString(item.shape) + " needs " + std::to_string(expected));
    }
    const int64_t size = file->Size();
    if (item.offset < 0 || item.offset + item.nbytes > size) {
      throw std::invalid_argument(item.file + ": " + what + " lies outside the file (bytes " +
                                  std::to_string(item.offset) + ".." + std::to_string(item.offset + item.nbytes) +
                                  " of " + std::to_string(size) + ")");
    }
    tasks.push_back({&item, file.get(), tensor, file_type});
  }
  // Largest first, spread over a few threads: filling fresh memory (page faults) parallelises well.
  std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.item->nbytes > b.item->nbytes; });
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  auto worker = [&] {
    torch::NoGradGuard guard;
    for (size_t i = next++; i < tasks.size(); i = next++) {
      try {
        const Task& task = tasks[i];
        const std::string what = "tensor \"" + task.item->name + "\"";
        auto tensor = task.tensor;
        if (tensor.device().is_cpu() && tensor.is_contiguous() && tensor.scalar_type() == task.file_type) {
          task.file->ReadAt(tensor.data_ptr(), task.item->nbytes, task.item->offset, what);
        } else {
          auto staging = torch::empty(task.item->shape, torch::TensorOptions().dtype(task.file_type));
          task.file->ReadAt(staging.data_ptr(), task.item->nbytes, task.item->offset, what);
          tensor.copy_(staging);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = tasks.size();
      }
    }
  };
  const size_t threads =
      std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), std::min<size_t>(4, tasks.size()));
  std::vector<std::thread> pool;
  try {
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  } catch (const std::system_error&) {
    // No more threads to be had: the workers already started and this thread share the tasks between them.
  }
  worker();
  for (auto& thread : pool) thread.join();
  if (error) std::rethrow_exception(error);
}

void WriteSafetensors(const std::string& path, const std::vector<uint8_t>& header, const std::vector<WriteItem>& items,
                      const std::function<torch::Tensor(const std::string&)>& source) {
  torch::NoGradGuard no_grad;
  PosixFile file(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  try {
    file.WriteAt(header.data(), static_cast<int64_t>(header.size()), 0, "the header");
    const int64_t data_start = static_cast<int64_t>(header.size());
    int64_t cursor = 0;
    for (const auto& item : items) {
      const std::string what = "tensor \"" + item.name + "\"";
      if (item.begin != cursor || item.end < item.begin) {
        throw std::invalid_argument(path + ": " + what + " would be written at " + std::to_string(item.begin) +
                                    " but the data so far ends at " + std::to_string(cursor));
      }
      const auto type = ScalarTypeFromSafetensors(item.dtype);
      const auto bytes = source(item.name).detach().to(torch::kCPU, type).contiguous();
      const int64_t nbytes = bytes.numel() * static_cast<int64_t>(bytes.element_size());
      if (nbytes != item.end - item.begin) {
        throw std::invalid_argument(path + ": " + what + " has " + std::to_string(nbytes) + " bytes as " + item.dtype +
                                    ", the header says " + std::to_string(item.end - item.begin));
      }
      file.WriteAt(bytes.data_ptr(), nbytes, data_start + item.begin, what);
      cursor = item.end;
    }
    file.Close();
  } catch (...) {
    ::unlink(path.c_str());  // never leave a partial file that could be mistaken for a finished one
    throw;
  }
}

}  // namespace llamapro
