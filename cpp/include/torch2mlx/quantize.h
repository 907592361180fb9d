// Floor 1: MLX's affine quantization, bit for bit what `mx.quantize(w, group_size, bits)`
// (mode "affine") and `mx.dequantize` compute on the CPU.
//
// A float tensor [..., K] is cut into groups of `group_size` consecutive elements of the
// last dim. In float32, per group, with n = 2^bits - 1:
//   scale = max((max - min) / n, 1e-7); the edge is min if |min| > |max|, else max, and
//   then the scale is negated; q0 = rint(edge / scale); if q0 != 0 the scale becomes
//   edge / q0 and the bias the edge, else the bias is 0;
//   q = clamp(rint((w - bias) / scale), 0, n), rounding half to even (a NaN gives q = 0).
// Scales and biases are stored in the input dtype (a NaN as MLX writes it: 0x7D00 with the
// sign for float16, 0x7FC0 for bfloat16). The q values of a row form one little-endian
// bit stream, value i at bits [i * bits, (i + 1) * bits), read as uint32 words: a 3-, 5- or
// 6-bit value may straddle two words. Dequantizing computes q * scale, then + bias, each
// rounded to the scales' dtype (two roundings, as MLX's separate multiply and add).
#pragma once

#include <string_view>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// What mx.quantize returns: packed weights and one scale and bias per group.
struct QuantizedTensor {
  Tensor weights;  ///< uint32 [..., K * bits / 32]
  Tensor scales;   ///< input dtype [..., K / group_size]
  Tensor biases;   ///< input dtype [..., K / group_size]
};

/// True when MLX's affine mode supports the pair: bits 2, 3, 4, 5, 6, 8; group size 32, 64, 128.
[[nodiscard]] bool is_quantizable(int bits, int group_size);

/// mx.quantize(tensor, group_size, bits) for a float32/float16/bfloat16 tensor [..., K];
/// `name` labels errors.
[[nodiscard]] QuantizedTensor quantize(const Tensor& tensor, int bits, int group_size,
                                       std::string_view name);

/// mx.dequantize: a tensor [..., K] of the scales' dtype; `name` labels errors.
[[nodiscard]] Tensor dequantize(const QuantizedTensor& quantized, int bits, int group_size,
                                std::string_view name);

}  // namespace torch2mlx
