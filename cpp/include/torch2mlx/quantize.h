// Floor 1: MLX's quantization, bit for bit what `mx.quantize(w, group_size, bits, mode=...)`
// computes on the CPU in each of its four modes, and `mx.dequantize` for mode "affine".
//
// Affine (group size 32, 64 or 128; bits 2, 3, 4, 5, 6 or 8). A float tensor [..., K] is cut into
// groups of `group_size` consecutive elements of the last dim. In float32, per group, with n =
// 2^bits - 1:
//   scale = max((max - min) / n, 1e-7); the edge is min if |min| > |max|, else max, and
//   then the scale is negated; q0 = rint(edge / scale); if q0 != 0 the scale becomes
//   edge / q0 and the bias the edge, else the bias is 0;
//   q = clamp(rint((w - bias) / scale), 0, n), rounding half to even (a NaN gives q = 0).
// Scales and biases are stored in the input dtype (a NaN as MLX writes it: 0x7D00 with the
// sign for float16, 0x7FC0 for bfloat16). The q values of a row form one little-endian
// bit stream, value i at bits [i * bits, (i + 1) * bits), read as uint32 words: a 3-, 5- or
// 6-bit value may straddle two words. Dequantizing computes q * scale, then + bias, each
// rounded to the scales' dtype (two roundings, as MLX's separate multiply and add).
//
// Floating-point modes: "mxfp4" (group 32, 4 bits), "mxfp8" (group 32, 8 bits), "nvfp4"
// (group 16, 4 bits), without a global scale. MLX computes them with ordinary ops (the
// `fp_quantize` fallback in mlx/ops.cpp), most of them rounding to the input dtype T (the
// rules below were checked bit for bit against mlx 0.32.4's CPU backend):
//   s = T(max |w| / m), m = 6 for 4 bits, 448 for 8 bits; max propagates a NaN.
//   mx modes (scale e8m0): n = s == 0 ? 0 : ceil(log2 s), log2 in float32 (not T), so the
//     scaled values never exceed m; x = T(w / T(2^n)); scale byte (n + 127) mod 256, no
//     clamping (tiny scales wrap). An infinite or NaN s gives n = INT32_MIN (x86's
//     conversion), so the divisor 0, and the scale byte 0x80 for float32 input, 0 for
//     float16 and bfloat16.
//   nvfp4 (scale e4m3): c = fp8(s); x = T(w / e4m3(c)) (0/0 is NaN); scale byte c.
//   4 bits: the code is the index k of the first minimum of |x - lut[k]| over the e2m1
//     table lut = +0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, ..., -6 (so ties go to the smaller
//     index, and a NaN or infinite x, whose distances are all NaN or inf, gives 0); the
//     difference is rounded to T in the mx modes and is float32 in nvfp4. Eight codes
//     per uint32, value i at bits [4i, 4i + 4).
//   8 bits: the code is fp8(x); four per uint32, value i in byte i (little-endian).
// fp8(v) is MLX's float32-to-e4m3 conversion: round to nearest even, subnormals below
// 2^-6, 448 (0x7E) for anything larger, infinities and NaNs included, sign kept (x86's
// 0/0 is a NaN with the sign set: 0xFE). e4m3(c) is its inverse. Scales are uint8
// [..., K / group_size]; there are no biases.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// MLX's quantization modes, by their names in mx.quantize.
enum class QuantMode : std::uint8_t { Affine, Mxfp4, Mxfp8, Nvfp4 };

/// One quantization setting, as mlx-lm records it per layer.
struct QuantSpec {
  int bits = 4;
  int group_size = 64;
  QuantMode mode = QuantMode::Affine;
};

/// "affine", "mxfp4", "mxfp8", "nvfp4".
[[nodiscard]] std::string_view quant_mode_name(QuantMode mode);
/// The mode of that name, or nullopt.
[[nodiscard]] std::optional<QuantMode> parse_quant_mode(std::string_view name);

/// What mx.quantize returns: packed weights and one scale (and, for affine, one bias) per group.
struct QuantizedTensor {
  Tensor weights;  ///< uint32 [..., K * bits / 32]
  Tensor scales;   ///< affine: input dtype; fp modes: uint8; [..., K / group_size]
  Tensor biases;   ///< affine: input dtype [..., K / group_size]; fp modes: no storage
};

/// True when MLX supports the pair in `mode`: affine takes bits 2, 3, 4, 5, 6, 8 and group
/// sizes 32, 64, 128; mxfp4 only 4 and 32, mxfp8 8 and 32, nvfp4 4 and 16.
[[nodiscard]] bool is_quantizable(int bits, int group_size, QuantMode mode = QuantMode::Affine);

/// mx.quantize(tensor, group_size, bits, mode) for a float32/float16/bfloat16 tensor
/// [..., K]; `name` labels errors.
[[nodiscard]] QuantizedTensor quantize(const Tensor& tensor, int bits, int group_size,
                                       std::string_view name, QuantMode mode = QuantMode::Affine);

/// mx.dequantize (affine only): a tensor [..., K] of the scales' dtype; `name` labels errors.
[[nodiscard]] Tensor dequantize(const QuantizedTensor& quantized, int bits, int group_size,
                                std::string_view name);

}  // namespace torch2mlx
