#include "torch2mlx/quantize.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "float_bits.h"
#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

constexpr std::size_t kMaxGroupSize = 128;
// Values are packed 32 at a time: 32 values of b bits fill exactly b uint32 words, and every
// supported group size is a multiple of 32.
constexpr std::size_t kBlock = 32;

// The element types, loaded to and stored from float32 as MLX's CPU kernels do. Stores
// round to nearest even and write NaNs as MLX's software float16/bfloat16 types do.
struct Float32 {
  static constexpr DType kDType = DType::F32;
  static constexpr std::size_t kSize = 4;
  static float load(const std::byte* in) {
    float value = 0;
    std::memcpy(&value, in, sizeof value);
    return value;
  }
  static void store(float value, std::byte* out) { std::memcpy(out, &value, sizeof value); }
};

struct Float16 {
  static constexpr DType kDType = DType::F16;
  static constexpr std::size_t kSize = 2;
  static float load(const std::byte* in) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, in, sizeof bits);
    return detail::half_bits_to_float(bits);
  }
  static void store(float value, std::byte* out) {
    const std::uint16_t bits = detail::float_to_half_bits<detail::HalfNaN::kMLX>(value);
    std::memcpy(out, &bits, sizeof bits);
  }
};

struct BFloat16 {
  static constexpr DType kDType = DType::BF16;
  static constexpr std::size_t kSize = 2;
  static constexpr std::uint16_t kNaN = 0x7FC0;
  static float load(const std::byte* in) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, in, sizeof bits);
    return detail::bfloat16_bits_to_float(bits);
  }
  static void store(float value, std::byte* out) {
    const std::uint16_t bits = detail::float_to_bfloat16_bits(value, kNaN);
    std::memcpy(out, &bits, sizeof bits);
  }
};

/// Rounds to the element type and back (identity for float32).
template <typename Element>
float round_to(float value) {
  if constexpr (Element::kDType == DType::F32) {
    return value;
  } else {
    std::array<std::byte, 2> bits{};
    Element::store(value, bits.data());
    return Element::load(bits.data());
  }
}

/// Scale and bias of one group, from its min and max (NaNs ignored), as MLX computes them.
struct Affine {
  float scale;
  float bias;
};

template <int kBits>
Affine affine_for(float low, float high) {
  constexpr auto kLevels = static_cast<float>((1 << kBits) - 1);
  constexpr float kEpsilon = 1e-7F;
  const float spread = (high - low) / kLevels;
  float scale = spread < kEpsilon ? kEpsilon : spread;  // a NaN spread stays NaN
  // The edge of larger magnitude is represented exactly: it becomes the bias, q = 0 maps to
  // it, and the scale points from it into the group (negative when the edge is the max).
  const bool low_edge = std::fabs(low) > std::fabs(high);
  if (!low_edge) scale = -scale;
  const float edge = low_edge ? low : high;
  const float steps = std::rint(edge / scale);
  if (steps == 0.0F) return {scale, 0.0F};
  return {edge / steps, edge};
}

/// float32 bits as an int32 that orders like the floats (with -0 below +0), so that min and
/// max run on integers: a float min/max loop vectorizes only when NaNs are ignorable.
std::int32_t order_key(std::uint32_t bits) {
  const auto negative = static_cast<std::uint32_t>(static_cast<std::int32_t>(bits) >> 31);
  return static_cast<std::int32_t>(bits ^ (negative & 0x7FFFFFFFU));
}

/// The inverse of order_key (which is its own inverse).
float from_order_key(std::int32_t key) {
  return std::bit_cast<float>(
      static_cast<std::uint32_t>(order_key(static_cast<std::uint32_t>(key))));
}

/// Quantizes `groups` groups of `group_size` elements: kBits * group_size / 32 words each.
template <typename Element, int kBits>
void quantize_groups(const std::byte* in, std::size_t groups, std::size_t group_size,
                     std::byte* words, std::byte* scales, std::byte* biases) {
  using detail::select;
  constexpr std::size_t kSize = Element::kSize;
  constexpr std::uint32_t kLevels = (1U << kBits) - 1;
  constexpr auto kTop = static_cast<float>(kLevels);
  constexpr float kMagic = 0x1.8p23F;  // 1.5 * 2^23: float spacing 1, room on both sides
  const std::int32_t plus_infinity = order_key(0x7F800000U);
  const std::int32_t minus_infinity = order_key(0xFF800000U);
  std::array<float, kMaxGroupSize> values{};
  std::array<std::uint32_t, kMaxGroupSize> levels{};
  for (std::size_t group = 0; group < groups; ++group) {
    for (std::size_t i = 0; i < group_size; ++i) values[i] = Element::load(in + i * kSize);
    in += group_size * kSize;

    // Min and max, NaNs ignored (MLX starts from +-inf and std::min/std::max never take a
    // NaN). Whether -0 or +0 wins a tie cannot change the scale, edge or bias.
    std::int32_t low = plus_infinity;
    std::int32_t high = minus_infinity;
    std::uint32_t any_nan = 0;
    for (std::size_t i = 0; i < group_size; ++i) {
      const auto bits = std::bit_cast<std::uint32_t>(values[i]);
      any_nan |= static_cast<std::uint32_t>((bits & 0x7FFFFFFFU) > 0x7F800000U);
      low = std::min(low, order_key(bits));
      high = std::max(high, order_key(bits));
    }
    if (any_nan != 0) {  // rare: again, with every NaN left out
      low = plus_infinity;
      high = minus_infinity;
      for (std::size_t i = 0; i < group_size; ++i) {
        if (std::isnan(values[i])) continue;
        low = std::min(low, order_key(std::bit_cast<std::uint32_t>(values[i])));
        high = std::max(high, order_key(std::bit_cast<std::uint32_t>(values[i])));
      }
    }
    const Affine affine = affine_for<kBits>(from_order_key(low), from_order_key(high));

    // q = clamp(rint((w - bias) / scale), 0, n), a NaN giving 0. Clamping x to [-0.5, n]
    // first changes no result (below -0.5 rint gives at most -0, above n at least n) and
    // bounds x, so that adding 1.5 * 2^23 (where float32's spacing is 1) rounds it with the
    // FPU's round-half-to-even and leaves the integer in the low mantissa bits. A NaN fails
    // `x > -0.5` and becomes -0.5, so 0. Selects, not `?:`, keep the loop branch-free.
    for (std::size_t block = 0; block < group_size; block += kBlock) {
      for (std::size_t i = block; i < block + kBlock; ++i) {
        const float x = (values[i] - affine.bias) / affine.scale;
        const std::uint32_t above =
            select(x > -0.5F, std::bit_cast<std::uint32_t>(x), std::bit_cast<std::uint32_t>(-0.5F));
        const std::uint32_t inside =
            select(std::bit_cast<float>(above) < kTop, above, std::bit_cast<std::uint32_t>(kTop));
        levels[i] = std::bit_cast<std::uint32_t>(std::bit_cast<float>(inside) + kMagic) -
                    std::bit_cast<std::uint32_t>(kMagic);
      }
    }

    // One little-endian bit stream: value i at bits [i * kBits, (i + 1) * kBits).
    for (std::size_t block = 0; block < group_size; block += kBlock) {
      std::uint64_t pending = 0;
      int filled = 0;
#pragma GCC unroll 32
      for (std::size_t i = 0; i < kBlock; ++i) {
        pending |= static_cast<std::uint64_t>(levels[block + i]) << filled;
        filled += kBits;
        if (filled >= 32) {
          const auto word = static_cast<std::uint32_t>(pending);
          std::memcpy(words, &word, sizeof word);
          words += sizeof word;
          pending >>= 32;
          filled -= 32;
        }
      }
    }
    Element::store(affine.scale, scales + group * kSize);
    Element::store(affine.bias, biases + group * kSize);
  }
}

/// The inverse: q * scale, rounded to the element type, then + bias, rounded again.
template <typename Element, int kBits>
void dequantize_groups(const std::byte* words, const std::byte* scales, const std::byte* biases,
                       std::size_t groups, std::size_t group_size, std::byte* out) {
  constexpr std::size_t kSize = Element::kSize;
  constexpr std::uint64_t kMask = (1U << kBits) - 1;
  std::array<float, kBlock> levels{};
  for (std::size_t group = 0; group < groups; ++group) {
    const float scale = Element::load(scales + group * kSize);
    const float bias = Element::load(biases + group * kSize);
    for (std::size_t block = 0; block < group_size; block += kBlock) {
      std::uint64_t pending = 0;
      int filled = 0;
#pragma GCC unroll 32
      for (std::size_t i = 0; i < kBlock; ++i) {
        if (filled < kBits) {
          std::uint32_t word = 0;
          std::memcpy(&word, words, sizeof word);
          words += sizeof word;
          pending |= static_cast<std::uint64_t>(word) << filled;
          filled += 32;
        }
        levels[i] = static_cast<float>(pending & kMask);
        pending >>= kBits;
        filled -= kBits;
      }
      for (std::size_t i = 0; i < kBlock; ++i) {
        // Two statements, so that no compiler fuses them into one fused multiply-add: MLX
        // multiplies and adds in separate kernels.
        const float product = round_to<Element>(levels[i] * scale);
        const float value = product + bias;
        Element::store(value, out);
        out += kSize;
      }
    }
  }
}

// --- Floating-point modes (mxfp4, mxfp8, nvfp4), as written down in quantize.h.

/// MLX's detail::ToFP8 (mlx/backend/cpu/unary_ops.h): float32 to e4m3, round to nearest
/// even, saturating at 448 (NaN and infinity included), sign kept.
std::uint8_t to_fp8(float value) {
  constexpr std::uint32_t kSaturated = 543U << 21;  // 480: from here on, 448
  constexpr std::uint32_t kDenormMask = 141U << 23;
  auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = bits & 0x80000000U;
  bits ^= sign;
  std::uint8_t result = 0;
  if (bits >= kSaturated) {
    result = 0x7E;
  } else if (bits < (121U << 23)) {
    // Adding 2^14 aligns the subnormal e4m3 grid with float32's integer bits: the FPU rounds.
    const auto low = std::bit_cast<std::uint32_t>(std::bit_cast<float>(bits) +
                                                  std::bit_cast<float>(kDenormMask));
    result = static_cast<std::uint8_t>(low - kDenormMask);
  } else {
    const std::uint32_t odd = (bits >> 20) & 1U;
    const std::uint32_t high =
        bits + ((static_cast<std::uint32_t>(7 - 127) << 23) + 0x7FFFFU) + odd;  // wraps as MLX's
    result = static_cast<std::uint8_t>(high >> 20);
  }
  return static_cast<std::uint8_t>(result | (sign >> 24));
}

/// MLX's detail::FromFP8: e4m3 to float32 (through float16 bits, times 256).
float from_fp8(std::uint8_t code) {
  const auto half = static_cast<std::uint16_t>((code & 0x7FU) << 7);
  const float magnitude = detail::half_bits_to_float(half) * 256.0F;
  return (code & 0x80U) != 0 ? -magnitude : magnitude;
}

/// The e2m1 values in code order, as the lookup table of MLX's fp_quantize.
constexpr std::array<float, 16> kFp4Values = {0.0F,  0.5F,  1.0F,  1.5F,  2.0F,  3.0F,
                                              4.0F,  6.0F,  -0.0F, -0.5F, -1.0F, -1.5F,
                                              -2.0F, -3.0F, -4.0F, -6.0F};

/// astype(int32) of a float as x86 converts: NaN and values outside int32 give INT32_MIN.
std::int32_t to_int32_like_x86(float value) {
  constexpr float kLimit = 2147483648.0F;
  if (!(value >= -kLimit && value < kLimit)) return std::numeric_limits<std::int32_t>::min();
  return static_cast<std::int32_t>(value);
}

/// The e2m1 code of x: the first k minimizing |x - lut[k]|, the difference rounded to T
/// (kDiffInElement) or kept in float32.
template <typename Element, bool kDiffInElement>
std::uint32_t fp4_code(float x) {
  std::uint32_t best = 0;
  float best_distance = 0;
  for (std::uint32_t k = 0; k < kFp4Values.size(); ++k) {
    float difference = x - kFp4Values[k];
    if constexpr (kDiffInElement) difference = round_to<Element>(difference);
    const float distance = std::fabs(difference);
    if (k == 0 || distance < best_distance) {
      best = k;
      best_distance = distance;
    }
  }
  return best;
}

/// Quantizes `groups` groups of `group_size` elements in an fp mode: packed words and one
/// uint8 scale per group.
template <typename Element>
void fp_quantize_groups(QuantMode mode, const std::byte* in, std::size_t groups,
                        std::size_t group_size, std::byte* words, std::byte* scales) {
  const bool eight_bits = mode == QuantMode::Mxfp8;
  const float top = eight_bits ? 448.0F : 6.0F;
  std::array<float, kMaxGroupSize> values{};
  for (std::size_t group = 0; group < groups; ++group) {
    float largest = -std::numeric_limits<float>::infinity();
    bool any_nan = false;
    for (std::size_t i = 0; i < group_size; ++i) {
      values[i] = Element::load(in + i * Element::kSize);
      any_nan = any_nan || std::isnan(values[i]);
      largest = std::max(largest, std::fabs(values[i]));
    }
    in += group_size * Element::kSize;
    if (any_nan) largest = std::numeric_limits<float>::quiet_NaN();  // MLX's max propagates
    const float scale = round_to<Element>(largest / top);

    std::uint8_t scale_code = 0;
    float divisor = 0;
    if (mode == QuantMode::Nvfp4) {
      scale_code = to_fp8(scale);
      divisor = round_to<Element>(from_fp8(scale_code));
    } else {
      // n = s == 0 ? 0 : ceil(log2 s), log2 in float32; the divisor 2^n in T.
      const float exponent = scale == 0.0F ? 0.0F : std::ceil(std::log2(scale));
      const std::int32_t whole = to_int32_like_x86(exponent);
      divisor = round_to<Element>(std::pow(2.0F, round_to<Element>(static_cast<float>(whole))));
      if (std::isfinite(exponent)) {
        // The low byte of n + 127: no clamping, so that tiny scales wrap as in MLX.
        scale_code = static_cast<std::uint8_t>((static_cast<std::uint32_t>(whole) + 127U) & 0xFFU);
      } else {
        // s is infinite or NaN: MLX 0.32's CPU writes 0x80 for float32 input, 0 otherwise.
        scale_code = Element::kDType == DType::F32 ? 0x80 : 0x00;
      }
    }
    scales[group] = static_cast<std::byte>(scale_code);

    for (std::size_t i = 0; i < group_size; ++i) {
      values[i] = round_to<Element>(values[i] / divisor);
    }
    if (eight_bits) {
      for (std::size_t i = 0; i < group_size; ++i) {
        *words++ = static_cast<std::byte>(to_fp8(values[i]));
      }
      continue;
    }
    for (std::size_t i = 0; i < group_size; i += 8) {
      std::uint32_t word = 0;
      for (std::size_t j = 0; j < 8; ++j) {
        const std::uint32_t code = mode == QuantMode::Nvfp4
                                       ? fp4_code<Element, false>(values[i + j])
                                       : fp4_code<Element, true>(values[i + j]);
        word |= code << (4 * j);
      }
      std::memcpy(words, &word, sizeof word);
      words += sizeof word;
    }
  }
}

// Calls `body` with the bit width as a compile-time constant, so that every width gets its
// own packing loop with constant shifts and masks.
template <typename Body>
void with_bits(int bits, Body&& body) {
  switch (bits) {
    case 2:
      return body(std::integral_constant<int, 2>{});
    case 3:
      return body(std::integral_constant<int, 3>{});
    case 4:
      return body(std::integral_constant<int, 4>{});
    case 5:
      return body(std::integral_constant<int, 5>{});
    case 6:
      return body(std::integral_constant<int, 6>{});
    default:
      return body(std::integral_constant<int, 8>{});
  }
}

template <typename Element>
void quantize_typed(int bits, const std::byte* in, std::size_t groups, std::size_t group_size,
                    std::byte* words, std::byte* scales, std::byte* biases) {
  with_bits(bits, [&](auto width) {
    quantize_groups<Element, decltype(width)::value>(in, groups, group_size, words, scales, biases);
  });
}

template <typename Element>
void dequantize_typed(int bits, const std::byte* words, const std::byte* scales,
                      const std::byte* biases, std::size_t groups, std::size_t group_size,
                      std::byte* out) {
  with_bits(bits, [&](auto width) {
    dequantize_groups<Element, decltype(width)::value>(words, scales, biases, groups, group_size,
                                                       out);
  });
}

/// The (bits, group size) an fp mode requires.
std::pair<int, int> fp_parameters(QuantMode mode) {
  switch (mode) {
    case QuantMode::Mxfp8:
      return {8, 32};
    case QuantMode::Nvfp4:
      return {4, 16};
    default:
      return {4, 32};
  }
}

void check_parameters(std::string_view component, std::string_view name, int bits, int group_size,
                      QuantMode mode) {
  if (mode != QuantMode::Affine) {
    const auto [wanted_bits, wanted_group] = fp_parameters(mode);
    if (bits != wanted_bits || group_size != wanted_group) {
      fail(component,
           fmt::format("tensor '{}': MLX's {} quantization takes {} bits and group "
                       "size {}, not {} bits and group size {}: pass those, or "
                       "use mode affine",
                       name, quant_mode_name(mode), wanted_bits, wanted_group, bits, group_size));
    }
    return;
  }

  if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) {
    fail(component, fmt::format("tensor '{}': {} bits are not supported by MLX's affine "
                                "quantization: use 2, 3, 4, 5, 6 or 8",
                                name, bits));
  }
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    fail(component, fmt::format("tensor '{}': group size {} is not supported by MLX's affine "
                                "quantization: use 32, 64 or 128",
                                name, group_size));
  }
}

bool is_quantized_float(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

/// The elements of `tensor` packed row-major: its own bytes when contiguous, else a copy
/// kept in `copy`.
const std::byte* packed_data(const Tensor& tensor, std::vector<std::byte>& copy) {
  if (tensor.is_contiguous()) return tensor.data();
  copy.resize(tensor.nbytes());
  copy_contiguous(tensor, copy.data());
  return copy.data();
}

}  // namespace

std::string_view quant_mode_name(QuantMode mode) {
  switch (mode) {
    case QuantMode::Mxfp4:
      return "mxfp4";
    case QuantMode::Mxfp8:
      return "mxfp8";
    case QuantMode::Nvfp4:
      return "nvfp4";
    default:
      return "affine";
  }
}

std::optional<QuantMode> parse_quant_mode(std::string_view name) {
  for (const QuantMode mode :
       {QuantMode::Affine, QuantMode::Mxfp4, QuantMode::Mxfp8, QuantMode::Nvfp4}) {
    if (quant_mode_name(mode) == name) return mode;
  }
  return std::nullopt;
}

bool is_quantizable(int bits, int group_size, QuantMode mode) {
  if (mode != QuantMode::Affine) return fp_parameters(mode) == std::pair{bits, group_size};
  return (bits >= 2 && bits <= 8 && bits != 7) &&
         (group_size == 32 || group_size == 64 || group_size == 128);
}

QuantizedTensor quantize(const Tensor& tensor, int bits, int group_size, std::string_view name,
                         QuantMode mode) {
  check_parameters("quantize", name, bits, group_size, mode);
  if (!is_quantized_float(tensor.dtype)) {
    const std::string_view advice = tensor.dtype == DType::F64
                                        ? "cast it to float32 first"
                                        : "integer and bool tensors stay unquantized";
    fail("quantize",
         fmt::format("tensor '{}': dtype {} cannot be quantized (MLX quantizes float32, "
                     "float16 and bfloat16): {}",
                     name, dtype_name(tensor.dtype), advice));
  }
  if (tensor.shape.size() < 2) {
    fail("quantize", fmt::format("tensor '{}': shape [{}] has {} dims, but MLX quantizes "
                                 "matrices [..., K] of at least 2: leave it unquantized",
                                 name, fmt::join(tensor.shape, ", "), tensor.shape.size()));
  }
  const std::int64_t columns = tensor.shape.back();
  if (columns % group_size != 0) {
    fail("quantize", fmt::format("tensor '{}': its last dim {} is not divisible by the group "
                                 "size {}: pick a group size that divides it, or leave the "
                                 "tensor unquantized",
                                 name, columns, group_size));
  }
  const auto numel = static_cast<std::size_t>(tensor.numel());
  const std::size_t groups = numel / static_cast<std::size_t>(group_size);
  const std::size_t item = itemsize(tensor.dtype);

  std::vector<std::int64_t> weight_shape = tensor.shape;
  weight_shape.back() = columns * bits / 32;
  std::vector<std::int64_t> scale_shape = tensor.shape;
  scale_shape.back() = columns / group_size;
  std::vector<std::byte> words(numel * static_cast<std::size_t>(bits) / 8);
  if (mode != QuantMode::Affine) {
    std::vector<std::byte> codes(groups);
    if (numel > 0) {
      std::vector<std::byte> copy;
      const std::byte* in = packed_data(tensor, copy);
      const auto size = static_cast<std::size_t>(group_size);
      switch (tensor.dtype) {
        case DType::F16:
          fp_quantize_groups<Float16>(mode, in, groups, size, words.data(), codes.data());
          break;
        case DType::BF16:
          fp_quantize_groups<BFloat16>(mode, in, groups, size, words.data(), codes.data());
          break;
        default:
          fp_quantize_groups<Float32>(mode, in, groups, size, words.data(), codes.data());
          break;
      }
    }
    return {make_owned_tensor(DType::U32, std::move(weight_shape), std::move(words)),
            make_owned_tensor(DType::U8, std::move(scale_shape), std::move(codes)), Tensor{}};
  }
  std::vector<std::byte> scales(groups * item);
  std::vector<std::byte> biases(groups * item);

  if (numel > 0) {
    std::vector<std::byte> copy;
    const std::byte* in = packed_data(tensor, copy);
    const auto size = static_cast<std::size_t>(group_size);
    switch (tensor.dtype) {
      case DType::F16:
        quantize_typed<Float16>(bits, in, groups, size, words.data(), scales.data(), biases.data());
        break;
      case DType::BF16:
        quantize_typed<BFloat16>(bits, in, groups, size, words.data(), scales.data(),
                                 biases.data());
        break;
      default:
        quantize_typed<Float32>(bits, in, groups, size, words.data(), scales.data(), biases.data());
        break;
    }
  }
  return {make_owned_tensor(DType::U32, std::move(weight_shape), std::move(words)),
          make_owned_tensor(tensor.dtype, scale_shape, std::move(scales)),
          make_owned_tensor(tensor.dtype, scale_shape, std::move(biases))};
}

Tensor dequantize(const QuantizedTensor& quantized, int bits, int group_size,
                  std::string_view name) {
  check_parameters("dequantize", name, bits, group_size, QuantMode::Affine);
  const Tensor& weights = quantized.weights;
  const Tensor& scales = quantized.scales;
  const Tensor& biases = quantized.biases;
  if (weights.dtype != DType::U32) {
    fail("dequantize", fmt::format("tensor '{}': packed weights must be uint32, not {}: pass "
                                   "the first array mx.quantize returned",
                                   name, dtype_name(weights.dtype)));
  }
  if (!is_quantized_float(scales.dtype) || biases.dtype != scales.dtype) {
    fail("dequantize", fmt::format("tensor '{}': scales ({}) and biases ({}) must share one "
                                   "dtype of float32, float16 and bfloat16",
                                   name, dtype_name(scales.dtype), dtype_name(biases.dtype)));
  }
  const bool shapes_agree = [&] {
    if (weights.shape.empty() || scales.shape != biases.shape ||
        scales.shape.size() != weights.shape.size()) {
      return false;
    }
    for (std::size_t d = 0; d + 1 < weights.shape.size(); ++d) {
      if (weights.shape[d] != scales.shape[d]) return false;
    }
    // K = words * 32 / bits = groups * group_size.
    return weights.shape.back() * 32 == scales.shape.back() * group_size * bits;
  }();
  if (!shapes_agree) {
    fail("dequantize",
         fmt::format("tensor '{}': weights [{}], scales [{}] and biases [{}] do not "
                     "fit together for {} bits and group size {}: pass the arrays "
                     "one mx.quantize call returned, with its parameters",
                     name, fmt::join(weights.shape, ", "), fmt::join(scales.shape, ", "),
                     fmt::join(biases.shape, ", "), bits, group_size));
  }
  std::vector<std::int64_t> shape = weights.shape;
  shape.back() = scales.shape.back() * group_size;
  const auto groups = static_cast<std::size_t>(scales.numel());
  const auto size = static_cast<std::size_t>(group_size);
  std::vector<std::byte> out(groups * size * itemsize(scales.dtype));
  if (groups > 0) {
    std::vector<std::byte> weight_copy;
    std::vector<std::byte> scale_copy;
    std::vector<std::byte> bias_copy;
    const std::byte* words = packed_data(weights, weight_copy);
    const std::byte* scale_data = packed_data(scales, scale_copy);
    const std::byte* bias_data = packed_data(biases, bias_copy);
    switch (scales.dtype) {
      case DType::F16:
        dequantize_typed<Float16>(bits, words, scale_data, bias_data, groups, size, out.data());
        break;
      case DType::BF16:
        dequantize_typed<BFloat16>(bits, words, scale_data, bias_data, groups, size, out.data());
        break;
      default:
        dequantize_typed<Float32>(bits, words, scale_data, bias_data, groups, size, out.data());
        break;
    }
  }
  return make_owned_tensor(scales.dtype, std::move(shape), std::move(out));
}

}  // namespace torch2mlx
