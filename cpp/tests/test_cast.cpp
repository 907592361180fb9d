#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/cast.h"
#include "torch2mlx/error.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::StartsWith;

template <typename T>
Tensor tensor_of(DType dtype, const std::vector<T>& values) {
  return make_owned_tensor(dtype, {static_cast<std::int64_t>(values.size())},
                           test::raw_bytes(values));
}

/// Casts raw element values (bits for the 16-bit types) and returns the raw results.
template <typename Out, typename In>
std::vector<Out> cast_values(DType from, const std::vector<In>& values, DType to) {
  const Tensor result = cast(tensor_of(from, values), to);
  EXPECT_EQ(result.dtype, to);
  EXPECT_TRUE(result.is_contiguous());
  return test::values_at<Out>(result.data(), values.size());
}

float f32(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits32(float value) { return std::bit_cast<std::uint32_t>(value); }

TEST(Cast, Float32ToFloat16RoundsToNearestEven) {
  const std::vector<float> values{
      1.0F,
      -0.0F,
      0.0F,
      1.0F + 0x1p-11F,             // tie between 0x3C00 (even) and 0x3C01: down
      1.0F + 3 * 0x1p-11F,         // tie between 0x3C01 and 0x3C02 (even): up
      1.0F + 0x1p-11F + 0x1p-23F,  // just above the tie: up
      65504.0F,                    // largest float16
      65519.99F,                   // below the tie with 65536: largest float16
      65520.0F,                    // tie, 65504 has an odd mantissa: inf
      1e9F,
      -INFINITY,
      0x1p-14F,             // smallest normal
      0x1p-14F - 0x1p-25F,  // tie between the largest subnormal (odd) and 2^-14
      0x1p-24F,             // smallest subnormal
      0x1p-25F,             // tie between 0 (even) and 2^-24: 0
      0x1p-25F + 0x1p-35F,  // above that tie
      3 * 0x1p-25F,         // tie between 1 and 2 subnormal steps: 2
      -5 * 0x1p-24F,        // a negative subnormal
      f32(0x00000001),      // the smallest float32 subnormal
      -f32(0x00000001),
  };
  const std::vector<std::uint16_t> expected{
      0x3C00, 0x8000, 0x0000, 0x3C00, 0x3C02, 0x3C01, 0x7BFF, 0x7BFF, 0x7C00, 0x7C00,
      0xFC00, 0x0400, 0x0400, 0x0001, 0x0000, 0x0001, 0x0002, 0x8005, 0x0000, 0x8000,
  };
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F32, values, DType::F16), expected);
}

TEST(Cast, Float32ToFloat16KeepsNaNSignAndTopPayloadLikeTorch) {
  const std::vector<float> values{f32(0x7FC00000), f32(0xFFC00000), f32(0x7FA00000),
                                  f32(0x7F800001), f32(0x7FFFFFFF), f32(0x7FC02000)};
  const std::vector<std::uint16_t> expected{0x7E00, 0xFE00, 0x7F00, 0x7E00, 0x7FFF, 0x7E01};
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F32, values, DType::F16), expected);
}

TEST(Cast, Float32ToBFloat16RoundsToNearestEven) {
  const std::vector<float> values{
      1.0F,
      -0.0F,
      1.0F + 0x1p-8F,      // tie, kept part even: down
      1.0F + 3 * 0x1p-8F,  // tie, kept part odd: up
      f32(0x7F7F7FFF),     // below the tie: the largest bfloat16
      f32(0x7F7F8000),     // tie with an odd kept part: inf
      f32(0x7F7FFFFF),     // the largest float32: inf
      -INFINITY,
      f32(0x00008000),  // float32 subnormal, tie with an even kept part: 0
      f32(0x00018000),  // tie with an odd kept part: up
      f32(0x80000001),  // the smallest negative subnormal: -0
  };
  const std::vector<std::uint16_t> expected{0x3F80, 0x8000, 0x3F80, 0x3F82, 0x7F7F, 0x7F80,
                                            0x7F80, 0xFF80, 0x0000, 0x0002, 0x8000};
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F32, values, DType::BF16), expected);
}

TEST(Cast, Float32ToBFloat16WritesTorchsVectorNaN) {
  const std::vector<float> values{f32(0x7FC00000), f32(0xFFC00000), f32(0x7F800001)};
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F32, values, DType::BF16),
            (std::vector<std::uint16_t>{0xFFFF, 0xFFFF, 0xFFFF}));
}

TEST(Cast, Float16ToFloat32IsExact) {
  const std::vector<std::uint16_t> values{0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00,
                                          0xFC00, 0x8000, 0xFC01, 0x7D00, 0x8001};
  const std::vector<std::uint32_t> expected{0x33800000, 0x387FC000, 0x38800000, 0x3F800000,
                                            0x477FE000, 0x7F800000, 0xFF800000, 0x80000000,
                                            0xFFC02000, 0x7FE00000, 0xB3800000};
  EXPECT_EQ(cast_values<std::uint32_t>(DType::F16, values, DType::F32), expected);
}

TEST(Cast, BFloat16ToFloat32KeepsEveryBit) {
  const std::vector<std::uint16_t> values{0x7F81, 0xFFFF, 0x0001, 0x8000, 0x3F80};
  const std::vector<std::uint32_t> expected{0x7F810000, 0xFFFF0000, 0x00010000, 0x80000000,
                                            0x3F800000};
  EXPECT_EQ(cast_values<std::uint32_t>(DType::BF16, values, DType::F32), expected);
}

TEST(Cast, HalfToBFloatAndBackGoThroughFloat32) {
  // float16 -> bfloat16: NaNs become 0x7FC0 (torch's scalar kernel); 65504 rounds to 65536.
  EXPECT_EQ(cast_values<std::uint16_t>(
                DType::F16, std::vector<std::uint16_t>{0x7E00, 0xFE00, 0x3C01, 0x7BFF, 0x0001},
                DType::BF16),
            (std::vector<std::uint16_t>{0x7FC0, 0x7FC0, 0x3F80, 0x4780, 0x3380}));
  // bfloat16 -> float16: NaN payloads as F16C narrows them; 65536 overflows.
  EXPECT_EQ(cast_values<std::uint16_t>(
                DType::BF16, std::vector<std::uint16_t>{0x7F81, 0xFFFF, 0x4780, 0x3380, 0x8000},
                DType::F16),
            (std::vector<std::uint16_t>{0x7E08, 0xFFF8, 0x7C00, 0x0001, 0x8000}));
}

TEST(Cast, Float64NarrowsLikeTorch) {
  const std::vector<double> values{1.0 + 0x1p-24, 1e300, 1e-50, -0.0,
                                   std::bit_cast<double>(0x7FF0000000000001ULL)};
  EXPECT_EQ(
      cast_values<std::uint32_t>(DType::F64, values, DType::F32),
      (std::vector<std::uint32_t>{0x3F800000, 0x7F800000, 0x00000000, 0x80000000, 0x7FC00000}));
  // Through float32, as torch does: 1 + 2^-11 + 2^-40 first becomes the tie 1 + 2^-11,
  // which then rounds to even (1.0), where a single rounding would give 1 + 2^-10.
  const std::vector<double> tie{1.0 + 0x1p-11 + 0x1p-40, 1.0 + 0x1p-8 + 0x1p-40};
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F64, tie, DType::F16),
            (std::vector<std::uint16_t>{0x3C00, 0x3C04}));
  EXPECT_EQ(cast_values<std::uint16_t>(DType::F64, tie, DType::BF16),
            (std::vector<std::uint16_t>{0x3F80, 0x3F80}));
}

TEST(Cast, WideningToFloat64IsExactAndQuietsNaNs) {
  EXPECT_EQ(
      cast_values<std::uint64_t>(DType::F32, std::vector<float>{f32(0x7F800001), 0.1F}, DType::F64),
      (std::vector<std::uint64_t>{0x7FF8000020000000ULL,
                                  std::bit_cast<std::uint64_t>(static_cast<double>(0.1F))}));
  EXPECT_EQ(cast_values<std::uint64_t>(DType::F16, std::vector<std::uint16_t>{0x0001, 0x7C01},
                                       DType::F64),
            (std::vector<std::uint64_t>{0x3E70000000000000ULL, 0x7FF8040000000000ULL}));
  EXPECT_EQ(cast_values<std::uint64_t>(DType::BF16, std::vector<std::uint16_t>{0x7F81, 0x0001},
                                       DType::F64),
            (std::vector<std::uint64_t>{0x7FF8200000000000ULL, 0x37A0000000000000ULL}));
}

/// float32 -> float16 computed independently, in double arithmetic, for finite values.
std::uint16_t reference_half(float value) {
  const std::uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const double magnitude = std::fabs(static_cast<double>(value));
  if (magnitude >= 65520.0) return sign | 0x7C00;
  // The float16 spacing at this magnitude: 2^(e - 10), with e at least -14 (subnormals).
  const int exponent = magnitude == 0 ? -14 : std::max(std::ilogb(magnitude), -14);
  const double steps = std::nearbyint(std::ldexp(magnitude, 10 - exponent));  // ties to even
  // steps may reach 2048 (rounding up to the next binade): the encoding absorbs the carry.
  const auto bits = static_cast<std::uint32_t>((exponent + 14) * 1024 + steps);
  return static_cast<std::uint16_t>(sign | bits);
}

TEST(Cast, Float32ToFloat16MatchesAReferenceOverAllExponents) {
  // Every 251st bit pattern (about 17 million values covering every exponent), NaNs aside.
  std::vector<float> values;
  for (std::uint64_t bits = 0; bits <= 0xFFFFFFFFULL; bits += 251) {
    const float value = f32(static_cast<std::uint32_t>(bits));
    if (!std::isnan(value) && !std::isinf(value)) values.push_back(value);
  }
  const auto halves = cast_values<std::uint16_t>(DType::F32, values, DType::F16);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (halves[i] != reference_half(values[i]) && mismatches++ < 5) {
      ADD_FAILURE() << "float32 0x" << std::hex << bits32(values[i]) << ": got 0x" << halves[i]
                    << ", expected 0x" << reference_half(values[i]);
    }
  }
  EXPECT_EQ(mismatches, 0U);
}

TEST(Cast, EverySixteenBitValueRoundTripsThroughFloat32) {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  for (const DType dtype : {DType::F16, DType::BF16}) {
    const Tensor wide = cast(tensor_of(dtype, all), DType::F32);
    const auto back = test::values_at<std::uint16_t>(cast(wide, dtype).data(), all.size());
    for (std::size_t i = 0; i < all.size(); ++i) {
      const bool nan = dtype == DType::F16 ? (i & 0x7FFF) > 0x7C00 : (i & 0x7FFF) > 0x7F80;
      if (nan) continue;  // quieted (float16) or canonicalized (bfloat16)
      ASSERT_EQ(back[i], all[i]) << dtype_name(dtype) << " bits 0x" << std::hex << i;
    }
  }
}

TEST(Cast, SameDTypeCopies) {
  const std::vector<float> values{1.5F, f32(0x7F800001), -0.0F};
  EXPECT_EQ(cast_values<std::uint32_t>(DType::F32, values, DType::F32),
            (std::vector<std::uint32_t>{0x3FC00000, 0x7F800001, 0x80000000}));
}

TEST(Cast, StridedViewsComeOutRowMajor) {
  // A 2x3 float32 view transposed out of a 3x2 buffer, and a row slice with a gap.
  Tensor transposed = tensor_of(DType::F32, std::vector<float>{0, 1, 2, 3, 4, 5});
  transposed.shape = {2, 3};
  transposed.strides = {1, 2};
  const Tensor result = cast(transposed, DType::F16);
  EXPECT_EQ(result.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(test::values_at<std::uint16_t>(result.data(), 6),
            (std::vector<std::uint16_t>{0x0000, 0x4000, 0x4400, 0x3C00, 0x4200, 0x4500}));

  Tensor rows = tensor_of(DType::F32, std::vector<float>{1, 2, 9, 3, 4, 9});
  rows.shape = {2, 2};
  rows.strides = {3, 1};
  std::vector<std::byte> out(rows.numel() * 8);
  cast_into(rows, DType::F64, out.data());
  EXPECT_EQ(test::values_at<double>(out.data(), 4), (std::vector<double>{1, 2, 3, 4}));
}

TEST(Cast, ZeroDimAndEmptyTensors) {
  Tensor scalar = tensor_of(DType::F32, std::vector<float>{2.0F});
  scalar.shape = {};
  scalar.strides = {};
  const Tensor cast_scalar = cast(scalar, DType::BF16);
  EXPECT_TRUE(cast_scalar.shape.empty());
  EXPECT_EQ(test::values_at<std::uint16_t>(cast_scalar.data(), 1)[0], 0x4000);

  const Tensor empty = make_owned_tensor(DType::F16, {0, 4}, {});
  const Tensor cast_empty = cast(empty, DType::F32);
  EXPECT_EQ(cast_empty.shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(cast_empty.nbytes(), 0U);
}

TEST(Cast, RefusesIntegerAndBoolBuffers) {
  const Tensor ints = tensor_of(DType::I64, std::vector<std::int64_t>{1, 2});
  const std::string message = error_of([&] { (void)cast(ints, DType::F32); });
  EXPECT_TRUE(StartsWith(message, "[cast] "));
  EXPECT_TRUE(Contains(message, "int64"));
  EXPECT_TRUE(Contains(message, "integer and bool buffers are kept as they are"));

  const Tensor floats = tensor_of(DType::F32, std::vector<float>{1});
  EXPECT_TRUE(Contains(error_of([&] { (void)cast(floats, DType::Bool); }), "[cast] "));
  std::vector<std::byte> out(8);
  EXPECT_TRUE(
      Contains(error_of([&] { cast_into(floats, DType::I32, out.data()); }), "kept as they are"));
  EXPECT_FALSE(is_castable(DType::U8));
  EXPECT_TRUE(is_castable(DType::BF16));
}

}  // namespace
}  // namespace torch2mlx
