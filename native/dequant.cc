#include "dequant.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include "posix_file.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>

#include "async_work.h"
#include "js_convert.h"

// The arithmetic below is written operation for operation as ggml's reference dequantizers (and the numpy ones of
// the `gguf` package) do it, in float32; CMakeLists.txt compiles this file with -ffp-contract=off so that no
// multiply-add is fused and every result is bit-identical to theirs.

namespace llamapro {
namespace {

constexpr int64_t kChunkValues = int64_t{4} << 20;  // floats converted per step: 16 MB of float32

struct TypeInfo {
  int64_t block;  // values per block
  int64_t bytes;  // bytes per block
};

bool LookupType(int type, TypeInfo* out) {
  switch (type) {
    case kGgmlF32: *out = {1, 4}; return true;
    case kGgmlF16: *out = {1, 2}; return true;
    case kGgmlBF16: *out = {1, 2}; return true;
    case kGgmlQ4_0: *out = {32, 18}; return true;
    case kGgmlQ4_1: *out = {32, 20}; return true;
    case kGgmlQ5_0: *out = {32, 22}; return true;
    case kGgmlQ5_1: *out = {32, 24}; return true;
    case kGgmlQ8_0: *out = {32, 34}; return true;
    case kGgmlQ4_K: *out = {256, 144}; return true;
    case kGgmlQ5_K: *out = {256, 176}; return true;
    case kGgmlQ6_K: *out = {256, 210}; return true;
    default: return false;
  }
}

inline float F16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

inline float BF16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The 6-bit scales and mins of the 8 sub-blocks of a Q4_K/Q5_K super-block.
inline void KScaleMin(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[j + 4] & 0x3F;
    sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30);
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
  }
}

// Dequantizes `nblocks` consecutive blocks of `type` into `y`.
void DequantizeBlocks(int type, const uint8_t* x, int64_t nblocks, float* y) {
  switch (type) {
    case kGgmlF32: std::memcpy(y, x, static_cast<size_t>(nblocks) * 4); return;
    case kGgmlF16:
      for (int64_t i = 0; i < nblocks; ++i) y[i] = F16(x + 2 * i);
      return;
    case kGgmlBF16:
      for (int64_t i = 0; i < nblocks; ++i) y[i] = BF16(x + 2 * i);
      return;
    case kGgmlQ8_0:
      for (int64_t b = 0; b < nblocks; ++b, x += 34, y += 32) {
        const float d = F16(x);
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(x[2 + j])) * d;
      }
      return;
    case kGgmlQ4_0:
      for (int64_t b = 0; b < nblocks; ++b, x += 18, y += 32) {
        const float d = F16(x);
        const uint8_t* qs = x + 2;
        for (int j = 0; j < 16; ++j) {
          y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
          y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
        }
      }
      return;
    case kGgmlQ4_1:
      for (int64_t b = 0; b < nblocks; ++b, x += 20, y += 32) {
        const float d = F16(x);
        const float m = F16(x + 2);
        const uint8_t* qs = x + 4;
        for (int j = 0; j < 16; ++j) {
          y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
          y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
        }
      }
      return;
    case kGgmlQ5_0:
      for (int64_t b = 0; b < nblocks; ++b, x += 22, y += 32) {
        const float d = F16(x);
        uint32_t qh;
        std::memcpy(&qh, x + 2, 4);
        const uint8_t* qs = x + 6;
        for (int j = 0; j < 16; ++j) {
          const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
          const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
          y[j] = d * static_cast<float>(lo - 16);
          y[j + 16] = d * static_cast<float>(hi - 16);
        }
      }
      return;
    case kGgmlQ5_1:
      for (int64_t b = 0; b < nblocks; ++b, x += 24, y += 32) {
        const float d = F16(x);
        const float m = F16(x + 2);
        uint32_t qh;
        std::memcpy(&qh, x + 4, 4);
        const uint8_t* qs = x + 8;
        for (int j = 0; j < 16; ++j) {
          const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
          const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
          y[j] = d * static_cast<float>(lo) + m;
          y[j + 16] = d * static_cast<float>(hi) + m;
        }
      }
      return;
    case kGgmlQ4_K:
    case kGgmlQ5_K: {
      const bool five = type == kGgmlQ5_K;
      const int64_t stride = five ? 176 : 144;
      for (int64_t b = 0; b < nblocks; ++b, x += stride, y += 256) {
        const float d = F16(x);
        const float dmin = F16(x + 2);
        uint8_t sc[8], mn[8];
        KScaleMin(x + 4, sc, mn);
        const uint8_t* qh = x + 16;  // Q5_K only
        const uint8_t* qs = x + (five ? 48 : 16);
        for (int s = 0; s < 8; ++s) {
          const float ds = d * static_cast<float>(sc[s]);
          const float ms = dmin * static_cast<float>(mn[s]);
          const uint8_t* q = qs + (s / 2) * 32;
          const int shift = (s % 2) * 4;
          for (int i = 0; i < 32; ++i) {
            int v = (q[i] >> shift) & 0x0F;
            if (five) v |= ((qh[i] >> s) & 1) << 4;
            y[s * 32 + i] = ds * static_cast<float>(v) - ms;
          }
        }
      }
      return;
    }
    case kGgmlQ6_K:
      for (int64_t b = 0; b < nblocks; ++b, x += 210, y += 256) {
        const uint8_t* ql = x;
        const uint8_t* qh = x + 128;
        const auto* scales = reinterpret_cast<const int8_t*>(x + 192);
        const float d = F16(x + 208);
        float dd[16];
        for (int k = 0; k < 16; ++k) dd[k] = d * static_cast<float>(scales[k]);
        for (int p = 0; p < 256; ++p) {
          const int half = p / 128, within = p % 128;
          const int lo = (ql[half * 64 + within % 64] >> ((within / 64) * 4)) & 0x0F;
          const int hi = (qh[half * 32 + within % 32] >> ((within / 32) * 2)) & 0x03;
          const int q = static_cast<int8_t>(static_cast<uint8_t>(lo | (hi << 4))) - 32;
          y[p] = dd[p / 16] * static_cast<float>(q);
        }
      }
      return;
    default: throw std::invalid_argument("ggml type " + std::to_string(type) + " cannot be dequantized");
  }
}

// Encodes `n` values (whole blocks) as `type`. Q8_0 is ggml's reference quantizer (quantize_row_q8_0_ref).
void EncodeValues(int type, const float* v, int64_t n, uint8_t* out) {
  switch (type) {
    case kGgmlF32: std::memcpy(out, v, static_cast<size_t>(n) * 4); return;
    case kGgmlF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = c10::detail::fp16_ieee_from_fp32_value(v[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case kGgmlBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = c10::BFloat16(v[i]).x;  // round to nearest even, as torch's .to(bfloat16)
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case kGgmlQ8_0:
      for (int64_t b = 0; b < n / 32; ++b, v += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = c10::detail::fp16_ieee_from_fp32_value(d);
        std::memcpy(out, &h, 2);
        for (int j = 0; j < 32; ++j) {
          out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(std::round(v[j] * id))));
        }
      }
      return;
    default: throw std::invalid_argument("ggml type " + std::to_string(type) + " cannot be written");
  }
}

int64_t CheckedMul(int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) throw std::invalid_argument(what + ": size overflows");
  return r;
}

void ReorderHeads(const float* in, float* out, int64_t rows, int64_t cols, int64_t heads, RowOrder order) {
  const int64_t per_head = rows / heads, half = per_head / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t d = 0; d < half; ++d) {
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t gguf_row = h * per_head + 2 * d + s;
        const int64_t hf_row = h * per_head + s * half + d;
        const int64_t from = order == RowOrder::kToHf ? gguf_row : hf_row;
        const int64_t to = order == RowOrder::kToHf ? hf_row : gguf_row;
        std::memcpy(out + to * cols, in + from * cols, static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
}

}  // namespace

int64_t GgmlRowBytes(int type, int64_t cols) {
  TypeInfo t{};
  if (!LookupType(type, &t)) throw std::invalid_argument("unsupported ggml type " + std::to_string(type));
  if (cols <= 0 || cols % t.block != 0) {
    throw std::invalid_argument("a row of " + std::to_string(cols) + " values is not a whole number of " +
                                std::to_string(t.block) + "-value blocks");
  }
  return CheckedMul(cols / t.block, t.bytes, "row");
}

void ConvertTensors(const std::string& target, const std::vector<uint8_t>& header, int64_t file_size,
                    const std::vector<ConvertItem>& items) {
  // Validate everything before the target exists.
  struct Span {
    int64_t begin, end;
    const ConvertItem* item;
  };
  std::vector<Span> spans;
  std::map<std::string, std::unique_ptr<PosixFile>> sources;
  const int64_t header_size = static_cast<int64_t>(header.size());
  if (file_size < header_size) {
    throw std::invalid_argument(target + ": file size " + std::to_string(file_size) + " is smaller than its header");
  }
  for (const auto& item : items) {
    const std::string what = "tensor \"" + item.name + "\"";
    if (item.rows <= 0 || item.cols <= 0) throw std::invalid_argument(what + ": rows and cols must be positive");
    const int64_t src_bytes = CheckedMul(item.rows, GgmlRowBytes(item.src_type, item.cols), what);
    const int64_t dst_bytes = CheckedMul(item.rows, GgmlRowBytes(item.dst_type, item.cols), what);
    if (item.order != RowOrder::kAsIs) {
      if (item.heads <= 0 || item.rows % item.heads != 0 || (item.rows / item.heads) % 2 != 0) {
        throw std::invalid_argument(what + ": " + std::to_string(item.rows) + " rows cannot be split into " +
                                    std::to_string(item.heads) + " heads of two rotary halves");
      }
    }
    auto& file = sources[item.source];
    if (!file) file = std::make_unique<PosixFile>(item.source, O_RDONLY);
    const int64_t size = file->Size();
    if (item.src_offset < 0 || item.src_offset > size || src_bytes > size - item.src_offset) {
      throw std::invalid_argument(item.source + ": " + what + " lies outside the file (bytes " +
                                  std::to_string(item.src_offset) + ".." + std::to_string(item.src_offset + src_bytes) +
                                  " of " + std::to_string(size) + ")");
    }
    if (item.dst_offset < header_size || item.dst_offset > file_size || dst_bytes > file_size - item.dst_offset) {
      throw std::invalid_argument(target + ": " + what + " would be written outside the data section");
    }
    spans.push_back({item.dst_offset, item.dst_offset + dst_bytes, &item});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      throw std::invalid_argument(target + ": tensors \"" + spans[i - 1].item->name + "\" and \"" +
                                  spans[i].item->name + "\" would overlap");
    }
  }

  PosixFile out(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
  try {
    out.WriteAt(header.data(), header_size, 0, "the header");
    std::vector<uint8_t> src_buf, dst_buf;
    std::vector<float> values, reordered;
    for (const auto& item : items) {
      const std::string what = "tensor \"" + item.name + "\"";
      const PosixFile& in = *sources.at(item.source);
      // Rows stay whole only where heads are reordered; otherwise the tensor is a flat run of blocks, cut into
      // chunks of `group` values (a multiple of both block sizes), so even a huge 1-D tensor uses bounded memory.
      TypeInfo src_info{}, dst_info{};
      LookupType(item.src_type, &src_info);
      LookupType(item.dst_type, &dst_info);
      const bool as_is = item.order == RowOrder::kAsIs;
      // Block sizes are 1, 32 or 256: one divides the other.
      const int64_t group = std::max(src_info.block, dst_info.block);
      const int64_t rows = as_is ? item.rows * (item.cols / group) : item.rows;
      const int64_t cols = as_is ? group : item.cols;
      const int64_t src_row = GgmlRowBytes(item.src_type, cols);
      const int64_t dst_row = GgmlRowBytes(item.dst_type, cols);
      const int64_t unit = as_is ? 1 : item.rows / item.heads;
      const int64_t chunk_rows = std::max<int64_t>(unit, (kChunkValues / cols) / unit * unit);
      for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t n = std::min(chunk_rows, rows - r0);
        const int64_t nvalues = n * cols;
        src_buf.resize(static_cast<size_t>(n * src_row));
        dst_buf.resize(static_cast<size_t>(n * dst_row));
        values.resize(static_cast<size_t>(nvalues));
        in.ReadAt(src_buf.data(), n * src_row, item.src_offset + r0 * src_row, what);
        DequantizeBlocks(item.src_type, src_buf.data(), nvalues / src_info.block, values.data());
        const float* ready = values.data();
        if (item.order != RowOrder::kAsIs) {
          reordered.resize(values.size());
          ReorderHeads(values.data(), reordered.data(), n, cols, n / unit, item.order);
          ready = reordered.data();
        }
        EncodeValues(item.dst_type, ready, nvalues, dst_buf.data());
        out.WriteAt(dst_buf.data(), n * dst_row, item.dst_offset + r0 * dst_row, what);
      }
    }
    out.Truncate(file_size);  // alignment padding after the last tensor, if any, reads as zeros
    out.Close();
  } catch (...) {
    ::unlink(target.c_str());  // never leave a partial file that could be mistaken for a finished one
    throw;
  }
}

Napi::Value ConvertTensorsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4) js::TypeError(env, "convertTensors(target, header, fileSize, items) takes 4 arguments");
  auto target = js::String(info[0], "target");
  auto header = js::Bytes(info[1], "header");
  const int64_t file_size = js::Integer(info[2], "fileSize");
  const auto array = js::Array(info[3], "items");
  std::vector<ConvertItem> items(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string at = "items[" + std::to_string(i) + "]";
    const auto obj = js::Object(array.Get(i), at);
    auto& item = items[i];
    item.name = js::String(obj.Get("name"), at + ".name");
    item.source = js::String(obj.Get("source"), at + ".source");
    item.src_offset = js::Integer(obj.Get("srcOffset"), at + ".srcOffset");
    item.src_type = static_cast<int>(js::Integer(obj.Get("srcType"), at + ".srcType"));
    item.rows = js::Integer(obj.Get("rows"), at + ".rows");
    item.cols = js::Integer(obj.Get("cols"), at + ".cols");
    item.dst_offset = js::Integer(obj.Get("dstOffset"), at + ".dstOffset");
    item.dst_type = static_cast<int>(js::Integer(obj.Get("dstType"), at + ".dstType"));
    const auto order = js::String(obj.Get("order"), at + ".order");
    if (order == "as-is") item.order = RowOrder::kAsIs;
    else if (order == "to-hf") item.order = RowOrder::kToHf;
    else if (order == "to-gguf") item.order = RowOrder::kToGguf;
    else js::TypeError(env, at + ".order must be as-is, to-hf or to-gguf");
    item.heads = item.order == RowOrder::kAsIs ? 0 : js::Integer(obj.Get("heads"), at + ".heads");
  }
  auto owner = Napi::Object::New(env);
  return RunAsync(
      owner, "llamapro.convertTensors",
      [target, header = std::move(header), file_size, items = std::move(items)] {
        ConvertTensors(target, header, file_size, items);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

}  // namespace llamapro
