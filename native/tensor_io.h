// Tensor bytes between files and tensors, without passing through JavaScript.
//
// lib/checkpoint validated every header and computed every offset; these functions check again what would
// make them read or write out of bounds (file size, byte counts, shapes) and throw instead.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llamapro {

// safetensors dtype names (F32, BF16, F16, ...) -> LibTorch scalar types.
c10::ScalarType ScalarTypeFromSafetensors(const std::string& dtype);
c10::ScalarType ScalarTypeFromName(const std::string& name);  // float32 | bfloat16 | float16

struct ReadItem {
  std::string name;  // for error messages and for the caller's lookup
  std::string file;
  int64_t offset = 0;  // absolute
  int64_t nbytes = 0;
  std::string dtype;  // safetensors dtype of the bytes in the file
  std::vector<int64_t> shape;
};

// Reads each item's bytes into the tensor `target(name)` returns (converting dtype and device as needed).
// Items are grouped by file; each file is opened once.
void ReadTensors(const std::vector<ReadItem>& items, const std::function<torch::Tensor(const std::string&)>& target);

struct WriteItem {
  std::string name;
  std::string dtype;  // safetensors dtype to write
  int64_t begin = 0;  // relative to the end of the header
  int64_t end = 0;
};

// Writes `header` (length prefix + JSON) then each tensor's bytes at its offsets into a new file at `path`.
void WriteSafetensors(const std::string& path, const std::vector<uint8_t>& header, const std::vector<WriteItem>& items,
                      const std::function<torch::Tensor(const std::string&)>& source);

}  // namespace llamapro
