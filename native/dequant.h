// GGUF tensor data <-> plain floats, streamed: used by `llamapro import` (GGUF -> safetensors) and `export`
// (safetensors -> GGUF). lib/gguf parsed and validated both files; this code checks again every offset and size
// that could make it read or write out of bounds, and throws instead.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llamapro {

// ggml type ids (ggml.h): the formats converted here.
enum GgmlType : int {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ4_1 = 3,
  kGgmlQ5_0 = 6,
  kGgmlQ5_1 = 7,
  kGgmlQ8_0 = 8,
  kGgmlQ4_K = 12,
  kGgmlQ5_K = 13,
  kGgmlQ6_K = 14,
  kGgmlBF16 = 30,
};

// Rows of a q/k projection are reordered per head: llama.cpp's converter interleaves the two rotary halves of
// each head (GGUF row h*2D + 2d + half holds HF row h*2D + half*D + d); import undoes it, export redoes it.
enum class RowOrder { kAsIs, kToHf, kToGguf };

struct ConvertItem {
  std::string name;
  std::string source;      // file path
  int64_t src_offset = 0;  // absolute
  int src_type = 0;
  int64_t rows = 0;
  int64_t cols = 0;        // elements per row (GGUF's innermost dimension)
  int64_t dst_offset = 0;  // absolute, in the target file
  int dst_type = 0;
  RowOrder order = RowOrder::kAsIs;
  int64_t heads = 0;  // for a reordered tensor: how many heads its rows hold
};

// Bytes one row of `cols` values takes in `type`; throws for an unknown type or a row that is not whole blocks.
int64_t GgmlRowBytes(int type, int64_t cols);

// Creates `target` (which must not exist), writes `header` at 0, then each item converted at its offset; the file
// is `file_size` bytes when done. Works in chunks of rows so memory stays bounded whatever the tensor size.
// On any failure the partial target is removed.
void ConvertTensors(const std::string& target, const std::vector<uint8_t>& header, int64_t file_size,
                    const std::vector<ConvertItem>& items);

// convertTensors(target, header: Uint8Array, fileSize, items) -> Promise<void>
Napi::Value ConvertTensorsJs(const Napi::CallbackInfo& info);

}  // namespace llamapro
