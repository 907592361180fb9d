// Bit-exact conversions between float32 and the two 16-bit float formats (IEEE binary16
// and bfloat16), shared by cast.cpp and quantize.cpp. Each is straight-line integer and
// float arithmetic with selects instead of branches, so that a loop over them vectorizes.
// Finite values round to nearest, ties to even, with correct subnormals and overflow to
// inf; NaNs are encoded as the caller asks, because torch and MLX disagree on them.
#pragma once

#include <bit>
#include <cstdint>

namespace torch2mlx::detail {

/// `condition ? chosen : other` with bit masks. A `?:` may become a branch, and the compiler
/// may not move float arithmetic (which could trap) out of a branch again: a loop with a
/// branch in it does not vectorize.
inline std::uint32_t select(bool condition, std::uint32_t chosen, std::uint32_t other) {
  const std::uint32_t mask = 0U - static_cast<std::uint32_t>(condition);
  return (chosen & mask) | (other & ~mask);
}

/// How float32 -> float16 encodes a NaN.
enum class HalfNaN : std::uint8_t {
  /// Sign, quiet bit and the top 9 payload bits, as x86 F16C (and so torch on CPU) writes.
  kKeepPayload,
  /// Sign and the fixed payload 0x7D00, as MLX's software float16 writes.
  kMLX,
};

/// float32 -> float16 bits, rounding to nearest even.
template <HalfNaN kNaN>
inline std::uint16_t float_to_half_bits(float value) {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000U;
  const std::uint32_t magnitude = bits & 0x7FFFFFFFU;
  // Normal results, |value| in [2^-14, 65520): rebias the exponent (127 -> 15, so subtract
  // 112 << 23) and drop the 13 low mantissa bits, rounding to nearest even by adding 0xFFF
  // plus the lowest kept bit: a remainder above half carries, exactly half carries only
  // into an odd kept part. A carry out of the mantissa bumps the exponent, which is right
  // (1.11...1 rounds up to 10.0). Outside that range the value is unused (and wraps).
  const std::uint32_t normal = (magnitude - 0x38000000U + 0x0FFFU + ((magnitude >> 13) & 1U)) >> 13;
  // Subnormal results, |value| < 2^-14, are k * 2^-24. Adding 0.5f moves the value into
  // [0.5, 1), where float32's spacing is exactly 2^-24, so the FPU's own round-to-nearest-
  // even picks k and leaves it in the low mantissa bits (k = 1024 is the smallest normal,
  // also the right bits). A float32 subnormal is below 2^-25 and gives 0, even where the
  // FPU treats it as 0 (denormals-are-zero).
  const float shifted = std::bit_cast<float>(magnitude) + 0.5F;
  const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(shifted) - 0x3F000000U;
  std::uint32_t nan = 0x7D00U;
  if constexpr (kNaN == HalfNaN::kKeepPayload) nan = 0x7E00U | ((magnitude >> 13) & 0x3FFU);
  std::uint32_t result = select(magnitude < 0x38800000U, subnormal, normal);
  // From 65520 (halfway between 65504, the largest float16, and 65536) up, inf included.
  result = select(magnitude >= 0x477FF000U, 0x7C00U, result);
  result = select(magnitude > 0x7F800000U, nan, result);
  return static_cast<std::uint16_t>(sign | result);
}

/// float16 bits -> float32 (exact); a NaN keeps sign and payload and comes out quiet, as F16C.
inline float half_bits_to_float(std::uint16_t half) {
  const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000U) << 16;
  const std::uint32_t rest = half & 0x7FFFU;
  // Normal: move exponent and mantissa up by 13 bits and rebias the exponent (15 -> 127).
  const std::uint32_t normal = (rest << 13) + 0x38000000U;
  // Zero and subnormals are rest * 2^-24, exact in float32.
  const auto subnormal =
      std::bit_cast<std::uint32_t>(static_cast<float>(static_cast<std::int32_t>(rest)) * 0x1p-24F);
  // Inf and NaN: all-ones exponent, payload moved up, quiet bit set on a NaN.
  const std::uint32_t special =
      0x7F800000U | ((rest & 0x3FFU) << 13) | select(rest > 0x7C00U, 0x00400000U, 0U);
  std::uint32_t result = select(rest < 0x0400U, subnormal, normal);
  result = select(rest >= 0x7C00U, special, result);
  return std::bit_cast<float>(sign | result);
}

/// float32 -> bfloat16 bits, rounding to nearest even; every NaN becomes `nan_bits`.
inline std::uint16_t float_to_bfloat16_bits(float value, std::uint16_t nan_bits) {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  // Keep the top 16 bits, rounding to nearest even: add 0x7FFF plus the lowest kept bit (see
  // float_to_half_bits). Carries ripple into the exponent, so values from halfway above the
  // largest bfloat16 up round to inf, and float32 subnormals round like any other value.
  const std::uint32_t rounded = (bits + 0x7FFFU + ((bits >> 16) & 1U)) >> 16;
  return static_cast<std::uint16_t>(select((bits & 0x7FFFFFFFU) > 0x7F800000U, nan_bits, rounded));
}

/// bfloat16 bits -> float32 (exact, NaN payloads included).
inline float bfloat16_bits_to_float(std::uint16_t bfloat) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bfloat) << 16);
}

}  // namespace torch2mlx::detail
