#include "cuda/weight_upload.h"

#include <cstring>
#include <string>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"
#include "cuda/device_layout.h"

namespace tidal::cuda {

namespace {

// The int8/int4 variants multiply int8 activations with CPU kernels; the
// device kernels know only the GGUF and float formats.
void require_device_format(const Weight& w) {
  if (dtype_is_int(w.type)) {
    throw Error(ErrorCode::kUnsupported, "cannot upload a " + std::string(dtype_name(w.type)) +
                                             " matrix: int8/int4 variants run on the CPU backend only");
  }
}

}  // namespace

void repack_for_device(const Weight& w, uint8_t* out) {
  if (!is_quantized(w.type)) {
    std::memcpy(out, w.data, w.bytes());
    return;
  }
  // GGUF block: f16 d, [f16 m,] codes. Scatter each field to its plane.
  const int64_t nb = w.cols / kQuantBlock;
  const int block_bytes = dtype_block_bytes(w.type), codes = code_bytes(w.type);
  const int header = block_bytes - codes;
  uint8_t* code_plane = out;
  uint8_t* d_plane = out + w.rows * nb * codes;
  uint8_t* m_plane = d_plane + w.rows * nb * 2;
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* src = w.row(r) + b * block_bytes;
      const int64_t i = r * nb + b;
      std::memcpy(d_plane + 2 * i, src, 2);
      if (w.type == DType::Q4_1) std::memcpy(m_plane + 2 * i, src + 2, 2);
      std::memcpy(code_plane + i * codes, src + header, size_t(codes));
    }
  }
}

float device_layout_element(const Weight& w, int64_t r, int64_t k) {
  const auto u16 = [](const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  };
  switch (w.type) {
    case DType::F32: {
      float v;
      std::memcpy(&v, w.data + (r * w.cols + k) * 4, 4);
      return v;
    }
    case DType::F16: return fp16_to_fp32(u16(w.data + (r * w.cols + k) * 2));
    case DType::BF16: return bf16_to_fp32(u16(w.data + (r * w.cols + k) * 2));
    default: break;
  }
  // Scales through memcpy: the host buffer is bytes, not uint16_t objects.
  const QuantPlanes p = quant_planes(w.type, w.data, w.rows, w.cols);
  const int64_t i = r * p.nb + k / kQuantBlock;
  const uint8_t* d_plane = w.data + w.rows * p.nb * code_bytes(w.type);
  const float d = fp16_to_fp32(u16(d_plane + 2 * i));
  const float q = float(quant_code(w.type, p, r, k));
  return w.type == DType::Q4_1 ? d * q + fp16_to_fp32(u16(d_plane + 2 * (w.rows * p.nb + i))) : d * q;
}

Weight upload_weight_to(const Weight& host, void* device) {
  require_device_format(host);
  std::vector<uint8_t> staged(host.bytes());
  repack_for_device(host, staged.data());
  check(cudaMemcpy(device, staged.data(), staged.size(), cudaMemcpyHostToDevice), "upload weight");
  Weight view = host;
  view.data = static_cast<const uint8_t*>(device);
  return view;
}

DeviceWeight upload_weight(const Weight& host) {
  require_device_format(host);
  DeviceWeight w;
  w.storage = DeviceBuffer(host.bytes());
  w.view = upload_weight_to(host, w.storage.data());
  return w;
}

}  // namespace tidal::cuda
