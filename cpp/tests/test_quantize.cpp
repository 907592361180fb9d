#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/cast.h"
#include "torch2mlx/error.h"
#include "torch2mlx/quantize.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::StartsWith;

Tensor matrix(const std::vector<float>& values, std::int64_t rows) {
  const auto columns = static_cast<std::int64_t>(values.size()) / rows;
  return make_owned_tensor(DType::F32, {rows, columns}, test::raw_bytes(values));
}

std::vector<std::uint32_t> words_of(const QuantizedTensor& quantized) {
  return test::values_at<std::uint32_t>(quantized.weights.data(),
                                        static_cast<std::size_t>(quantized.weights.numel()));
}

float scalar_at(const Tensor& tensor, std::size_t index = 0) {
  const Tensor wide = cast(tensor, DType::F32);
  return test::values_at<float>(wide.data(), index + 1)[index];
}

std::uint16_t bits16_at(const Tensor& tensor, std::size_t index = 0) {
  return test::values_at<std::uint16_t>(tensor.data(), index + 1)[index];
}

TEST(Quantize, HandComputedFourBitGroup) {
  // w = 0.5 k for k = 0..15, twice. The max (7.5) is the edge: bias 7.5, scale -0.5, and
  // q = (w - 7.5) / -0.5 = 15 - k, packed four bits at a time, lowest bits first.
  std::vector<float> values;
  for (int repeat = 0; repeat < 2; ++repeat) {
    for (int k = 0; k < 16; ++k) values.push_back(0.5F * static_cast<float>(k));
  }
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 32, "w");
  EXPECT_EQ(quantized.weights.dtype, DType::U32);
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(quantized.scales.shape, (std::vector<std::int64_t>{1, 1}));
  EXPECT_EQ(quantized.scales.dtype, DType::F32);
  EXPECT_EQ(words_of(quantized),
            (std::vector<std::uint32_t>{0x89ABCDEF, 0x01234567, 0x89ABCDEF, 0x01234567}));
  EXPECT_EQ(scalar_at(quantized.scales), -0.5F);
  EXPECT_EQ(scalar_at(quantized.biases), 7.5F);

  // Dequantizing gives the values back exactly.
  const Tensor back = dequantize(quantized, 4, 32, "w");
  EXPECT_EQ(back.shape, (std::vector<std::int64_t>{1, 32}));
  EXPECT_EQ(test::values_at<float>(back.data(), 32), values);
}

TEST(Quantize, NegativeDominantGroupUsesTheMinAsEdge) {
  std::vector<float> values;
  for (int k = 0; k < 32; ++k) values.push_back(-0.5F * static_cast<float>(k % 16));
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 32, "w");
  EXPECT_EQ(words_of(quantized),
            (std::vector<std::uint32_t>{0x89ABCDEF, 0x01234567, 0x89ABCDEF, 0x01234567}));
  EXPECT_EQ(scalar_at(quantized.scales), 0.5F);
  EXPECT_EQ(scalar_at(quantized.biases), -7.5F);
}

TEST(Quantize, RoundsHalfToEven) {
  // 2 bits, min 0 and max 3: bias 3, scale -1, q = rint(3 - w).
  std::vector<float> values{0, 3, 0.5F, 1.5F, 2.5F, 1, 2, 3};
  values.resize(32, 0.0F);
  const QuantizedTensor quantized = quantize(matrix(values, 1), 2, 32, "w");
  // q = 3, 0, rint(2.5) = 2, rint(1.5) = 2, rint(0.5) = 0, 2, 1, 0, then 3 for every 0.
  EXPECT_EQ(words_of(quantized), (std::vector<std::uint32_t>{0xFFFF18A3, 0xFFFFFFFF}));
}

TEST(Quantize, ThreeBitValuesStraddleWords) {
  // min 0, max 7: q = 7 - w = i % 8. 32 values of 3 bits fill three words, and values 10
  // and 21 are split across word boundaries.
  std::vector<float> values;
  for (int i = 0; i < 64; ++i) values.push_back(static_cast<float>(7 - i % 8));
  const QuantizedTensor quantized = quantize(matrix(values, 1), 3, 64, "w");
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{1, 6}));
  EXPECT_EQ(words_of(quantized), (std::vector<std::uint32_t>{0x88FAC688, 0xC688FAC6, 0xFAC688FA,
                                                             0x88FAC688, 0xC688FAC6, 0xFAC688FA}));
  const Tensor back = dequantize(quantized, 3, 64, "w");
  EXPECT_EQ(test::values_at<float>(back.data(), 64), values);
}

/// The bit stream, written one bit at a time: value i occupies bits [i * bits, (i + 1) * bits).
std::vector<std::uint32_t> bit_stream(const std::vector<std::uint32_t>& levels, int bits) {
  std::vector<std::uint32_t> words(levels.size() * static_cast<std::size_t>(bits) / 32, 0);
  std::size_t position = 0;
  for (const std::uint32_t level : levels) {
    for (int bit = 0; bit < bits; ++bit, ++position) {
      if (((level >> bit) & 1U) != 0) words[position / 32] |= 1U << (position % 32);
    }
  }
  return words;
}

TEST(Quantize, EveryWidthPacksOneLittleEndianBitStream) {
  for (const int bits : {2, 3, 4, 5, 6, 8}) {
    const int levels = (1 << bits) - 1;
    // min 0 and max n: q = n - w. A sawtooth so every value (and every straddle) appears.
    std::vector<float> values;
    std::vector<std::uint32_t> expected_levels;
    for (int i = 0; i < 2 * 128; ++i) {
      int level = (i * 7) % (levels + 1);
      if (i % 128 < 2) level = i % 128 == 0 ? levels : 0;  // each group holds 0 and n
      values.push_back(static_cast<float>(levels - level));
      expected_levels.push_back(static_cast<std::uint32_t>(level));
    }
    const QuantizedTensor quantized = quantize(matrix(values, 2), bits, 128, "w");
    EXPECT_EQ(words_of(quantized), bit_stream(expected_levels, bits)) << bits << " bits";
  }
}

TEST(Quantize, ConstantGroupKeepsTheValueInTheBias) {
  const std::vector<float> values(64, 1.5F);
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 64, "w");
  EXPECT_EQ(words_of(quantized), std::vector<std::uint32_t>(8, 0));
  EXPECT_EQ(scalar_at(quantized.biases), 1.5F);
  // The spread is 0, so the scale is -1e-7, then adjusted to edge / rint(edge / scale).
  const float scale = scalar_at(quantized.scales);
  EXPECT_EQ(scale, 1.5F / std::rint(1.5F / -1e-7F));
  EXPECT_LT(scale, 0.0F);
  const Tensor back = dequantize(quantized, 4, 64, "w");
  EXPECT_EQ(test::values_at<float>(back.data(), 64), values);
}

TEST(Quantize, ZeroGroupHasZeroBiasAndTheEpsilonScale) {
  const std::vector<float> zeros(32, 0.0F);
  const QuantizedTensor quantized = quantize(matrix(zeros, 1), 8, 32, "w");
  EXPECT_EQ(words_of(quantized), std::vector<std::uint32_t>(8, 0));
  EXPECT_EQ(scalar_at(quantized.scales), -1e-7F);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(scalar_at(quantized.biases)), 0U);  // +0.0

  // In float16 -1e-7 is the subnormal -2 * 2^-24; in bfloat16 it rounds to 0xB3D7.
  const QuantizedTensor half = quantize(cast(matrix(zeros, 1), DType::F16), 4, 32, "w");
  EXPECT_EQ(half.scales.dtype, DType::F16);
  EXPECT_EQ(bits16_at(half.scales), 0x8002);
  EXPECT_EQ(bits16_at(half.biases), 0x0000);
  const QuantizedTensor bfloat = quantize(cast(matrix(zeros, 1), DType::BF16), 4, 32, "w");
  EXPECT_EQ(bits16_at(bfloat.scales), 0xB3D7);
}

TEST(Quantize, HalfInputsStoreScalesAndBiasesInTheirDType) {
  std::vector<float> values;
  for (int k = 0; k < 32; ++k) values.push_back(0.5F * static_cast<float>(k % 16));
  for (const DType dtype : {DType::F16, DType::BF16}) {
    const QuantizedTensor quantized = quantize(cast(matrix(values, 1), dtype), 4, 32, "w");
    EXPECT_EQ(quantized.biases.dtype, dtype);
    EXPECT_EQ(words_of(quantized),
              (std::vector<std::uint32_t>{0x89ABCDEF, 0x01234567, 0x89ABCDEF, 0x01234567}));
    EXPECT_EQ(bits16_at(quantized.scales), dtype == DType::F16 ? 0xB800 : 0xBF00);  // -0.5
    EXPECT_EQ(bits16_at(quantized.biases), dtype == DType::F16 ? 0x4780 : 0x40F0);  // 7.5
    const Tensor back = dequantize(quantized, 4, 32, "w");
    EXPECT_EQ(back.dtype, dtype);
    EXPECT_EQ(test::values_at<float>(cast(back, DType::F32).data(), 32), values);
  }
}

TEST(Quantize, NaNElementsQuantizeToZero) {
  std::vector<float> values;
  for (int k = 0; k < 32; ++k) values.push_back(0.5F * static_cast<float>(k % 16));
  values[1] = NAN;  // ignored by min and max, then q = 0 (MLX on x86 does the same)
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 32, "w");
  EXPECT_EQ(words_of(quantized)[0], 0x89ABCD0FU);
  EXPECT_EQ(scalar_at(quantized.biases), 7.5F);
}

TEST(Quantize, ShapesFollowTheLastDim) {
  const Tensor tensor = make_owned_tensor(DType::F32, {2, 3, 128},
                                          std::vector<std::byte>(2 * 3 * 128 * 4, std::byte{0}));
  const QuantizedTensor quantized = quantize(tensor, 6, 64, "w");
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{2, 3, 24}));
  EXPECT_EQ(quantized.scales.shape, (std::vector<std::int64_t>{2, 3, 2}));
  EXPECT_EQ(quantized.biases.shape, (std::vector<std::int64_t>{2, 3, 2}));
  EXPECT_EQ(dequantize(quantized, 6, 64, "w").shape, tensor.shape);
}

TEST(Quantize, StridedInputIsQuantizedRowMajor) {
  std::vector<float> values;
  for (int k = 0; k < 32; ++k) values.push_back(0.5F * static_cast<float>(k % 16));
  // The same 1x32 row, stored as every other element of a 64-element buffer.
  std::vector<float> spread(64, 99.0F);
  for (std::size_t i = 0; i < 32; ++i) spread[2 * i] = values[i];
  Tensor strided = make_owned_tensor(DType::F32, {64}, test::raw_bytes(spread));
  strided.shape = {1, 32};
  strided.strides = {64, 2};
  EXPECT_EQ(words_of(quantize(strided, 4, 32, "w")),
            (std::vector<std::uint32_t>{0x89ABCDEF, 0x01234567, 0x89ABCDEF, 0x01234567}));
}

TEST(Quantize, RefusesWhatMLXCannotQuantize) {
  const Tensor tensor = matrix(std::vector<float>(96, 1.0F), 1);
  const std::string indivisible = error_of([&] { (void)quantize(tensor, 4, 64, "layer.weight"); });
  EXPECT_TRUE(StartsWith(indivisible, "[quantize] tensor 'layer.weight': "));
  EXPECT_TRUE(Contains(indivisible, "96 is not divisible by the group size 64"));
  EXPECT_TRUE(
      Contains(error_of([&] { (void)quantize(tensor, 7, 32, "w"); }), "7 bits are not supported"));
  EXPECT_TRUE(Contains(error_of([&] { (void)quantize(tensor, 4, 16, "w"); }),
                       "group size 16 is not supported"));
  const Tensor ints = make_owned_tensor(DType::I32, {1, 32}, std::vector<std::byte>(128));
  EXPECT_TRUE(Contains(error_of([&] { (void)quantize(ints, 4, 32, "w"); }),
                       "dtype int32 cannot be quantized"));
  const Tensor doubles = make_owned_tensor(DType::F64, {1, 32}, std::vector<std::byte>(256));
  EXPECT_TRUE(
      Contains(error_of([&] { (void)quantize(doubles, 4, 32, "w"); }), "cast it to float32"));
  const Tensor vector = make_owned_tensor(DType::F32, {64}, std::vector<std::byte>(256));
  EXPECT_TRUE(Contains(error_of([&] { (void)quantize(vector, 4, 32, "bias"); }),
                       "[quantize] tensor 'bias': shape [64] has 1 dims"));
  EXPECT_TRUE(is_quantizable(5, 128));
  EXPECT_FALSE(is_quantizable(7, 64));
  EXPECT_FALSE(is_quantizable(4, 256));
}

std::vector<std::uint8_t> scale_bytes(const QuantizedTensor& quantized) {
  return test::values_at<std::uint8_t>(quantized.scales.data(),
                                       static_cast<std::size_t>(quantized.scales.numel()));
}

TEST(QuantizeFp, Mxfp4GroupWithUnitScale) {
  // max |w| = 6, so s = 6 / 6 = 1 = 2^0: scale byte 127, and x = w is looked up in the e2m1
  // table; 0.75 lies halfway between 0.5 and 1 and goes to the first (0.5, code 1).
  std::vector<float> values(32, 0.0F);
  values[0] = 6.0F;
  values[1] = 3.0F;
  values[2] = -1.5F;
  values[3] = 0.5F;
  values[4] = 0.75F;
  values[5] = -0.0F;
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 32, "w", QuantMode::Mxfp4);
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(quantized.scales.dtype, DType::U8);
  EXPECT_EQ(quantized.scales.shape, (std::vector<std::int64_t>{1, 1}));
  EXPECT_EQ(quantized.biases.storage, nullptr);
  EXPECT_EQ(scale_bytes(quantized), (std::vector<std::uint8_t>{127}));
  EXPECT_EQ(words_of(quantized), (std::vector<std::uint32_t>{0x11B57, 0, 0, 0}));
}

TEST(QuantizeFp, Mxfp4ScaleIsThePowerOfTwoAbove) {
  // max |w| = 24: s = 4 = 2^2 (byte 129) and x = w / 4. max |w| = 25 would need 2^3.
  std::vector<float> values(32, 2.0F);
  values[0] = -24.0F;
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 32, "w", QuantMode::Mxfp4);
  EXPECT_EQ(scale_bytes(quantized), (std::vector<std::uint8_t>{129}));
  EXPECT_EQ(words_of(quantized)[0], 0x1111111FU);  // -6 is code 0xF, 0.5 is code 1
  values[0] = -25.0F;  // s = 25 / 6 > 4: 2^3 (byte 130), -25 / 8 = -3.125 is -3 (0xD)
  const QuantizedTensor above = quantize(matrix(values, 1), 4, 32, "w", QuantMode::Mxfp4);
  EXPECT_EQ(scale_bytes(above), (std::vector<std::uint8_t>{130}));
  EXPECT_EQ(words_of(above)[0] & 0xFFU, 0x0DU);  // 2 / 8 = 0.25 ties 0 and 0.5: code 0
}

TEST(QuantizeFp, Mxfp8StoresE4M3Bytes) {
  // max |w| = 448: s = 1; 448 is e4m3 0x7E, 1 is 0x38, -2 is 0xC0, 2^-9 the smallest
  // subnormal (0x01).
  std::vector<float> values(32, 1.0F);
  values[0] = 448.0F;
  values[1] = -2.0F;
  values[2] = 0x1p-9F;
  const QuantizedTensor quantized = quantize(matrix(values, 1), 8, 32, "w", QuantMode::Mxfp8);
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{1, 8}));
  EXPECT_EQ(scale_bytes(quantized), (std::vector<std::uint8_t>{127}));
  EXPECT_EQ(words_of(quantized)[0], 0x38'01'C0'7EU);
  EXPECT_EQ(words_of(quantized)[1], 0x38383838U);
}

TEST(QuantizeFp, Nvfp4UsesE4M3ScalesOnGroupsOf16) {
  // Group 1: max 6, s = 1 (e4m3 0x38). Group 2: zeros, s = 0 (byte 0) and 0 / 0 is NaN,
  // whose distances are all NaN: code 0.
  std::vector<float> values(32, 0.0F);
  values[0] = 6.0F;
  values[1] = -3.0F;
  const QuantizedTensor quantized = quantize(matrix(values, 1), 4, 16, "w", QuantMode::Nvfp4);
  EXPECT_EQ(quantized.weights.shape, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(scale_bytes(quantized), (std::vector<std::uint8_t>{0x38, 0}));
  EXPECT_EQ(words_of(quantized), (std::vector<std::uint32_t>{0xD7, 0, 0, 0}));
}

TEST(QuantizeFp, ModesTakeOnlyTheirBitsAndGroupSize) {
  const Tensor tensor = matrix(std::vector<float>(64, 1.0F), 1);
  const std::string wrong = error_of([&] { (void)quantize(tensor, 4, 64, "w", QuantMode::Mxfp4); });
  EXPECT_TRUE(StartsWith(wrong,
                         "[quantize] tensor 'w': MLX's mxfp4 quantization takes 4 bits "
                         "and group size 32"));
  EXPECT_TRUE(is_quantizable(8, 32, QuantMode::Mxfp8));
  EXPECT_TRUE(is_quantizable(4, 16, QuantMode::Nvfp4));
  EXPECT_FALSE(is_quantizable(4, 32, QuantMode::Nvfp4));
  EXPECT_EQ(parse_quant_mode("nvfp4"), QuantMode::Nvfp4);
  EXPECT_EQ(parse_quant_mode("fp4"), std::nullopt);
  EXPECT_EQ(quant_mode_name(QuantMode::Mxfp8), "mxfp8");
}

TEST(Dequantize, RefusesMismatchedParts) {
  const QuantizedTensor quantized = quantize(matrix(std::vector<float>(64, 1.0F), 1), 4, 32, "w");
  EXPECT_TRUE(StartsWith(error_of([&] { (void)dequantize(quantized, 8, 32, "w"); }),
                         "[dequantize] tensor 'w': weights [1, 8], scales [1, 2]"));
  QuantizedTensor mixed = quantized;
  mixed.biases = cast(quantized.biases, DType::F16);
  EXPECT_TRUE(Contains(error_of([&] { (void)dequantize(mixed, 4, 32, "w"); }), "share one dtype"));
  QuantizedTensor floats = quantized;
  floats.weights = cast(quantized.scales, DType::F32);
  EXPECT_TRUE(Contains(error_of([&] { (void)dequantize(floats, 4, 32, "w"); }), "must be uint32"));
}

}  // namespace
}  // namespace torch2mlx
