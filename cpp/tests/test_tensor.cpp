#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/error.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::StartsWith;

constexpr std::array<DType, 13> kAllDTypes{
    DType::Bool, DType::U8,  DType::I8,  DType::I16,  DType::I32, DType::I64, DType::U16,
    DType::U32,  DType::U64, DType::F16, DType::BF16, DType::F32, DType::F64};

/// A float32 tensor over a copy of `values`, with the given view.
Tensor float_view(const std::vector<float>& values, std::vector<std::int64_t> shape,
                  std::vector<std::int64_t> strides, std::int64_t offset = 0) {
  Tensor tensor = make_owned_tensor(DType::F32, {static_cast<std::int64_t>(values.size())},
                                    test::raw_bytes(values));
  tensor.shape = std::move(shape);
  tensor.strides = std::move(strides);
  tensor.offset = offset;
  return tensor;
}

std::vector<float> packed(const Tensor& tensor) {
  std::vector<std::byte> out(tensor.nbytes());
  copy_contiguous(tensor, out.data());
  return test::values_at<float>(out.data(), static_cast<std::size_t>(tensor.numel()));
}

Tensor view_of(DType dtype, std::vector<std::int64_t> shape, std::vector<std::int64_t> strides,
               std::int64_t offset = 0) {
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.strides = std::move(strides);
  tensor.offset = offset;
  return tensor;
}

TEST(DType, ItemsizesMatchTheElementWidths) {
  EXPECT_EQ(itemsize(DType::Bool), 1U);
  EXPECT_EQ(itemsize(DType::U8), 1U);
  EXPECT_EQ(itemsize(DType::I8), 1U);
  EXPECT_EQ(itemsize(DType::I16), 2U);
  EXPECT_EQ(itemsize(DType::U16), 2U);
  EXPECT_EQ(itemsize(DType::F16), 2U);
  EXPECT_EQ(itemsize(DType::BF16), 2U);
  EXPECT_EQ(itemsize(DType::I32), 4U);
  EXPECT_EQ(itemsize(DType::U32), 4U);
  EXPECT_EQ(itemsize(DType::F32), 4U);
  EXPECT_EQ(itemsize(DType::I64), 8U);
  EXPECT_EQ(itemsize(DType::U64), 8U);
  EXPECT_EQ(itemsize(DType::F64), 8U);
}

TEST(DType, NamesRoundTripForAllThirteenDTypes) {
  std::set<std::string_view> names;
  std::set<std::string_view> safetensors_names;
  for (const DType dtype : kAllDTypes) {
    names.insert(dtype_name(dtype));
    safetensors_names.insert(safetensors_dtype_name(dtype));
    EXPECT_EQ(dtype_from_name(dtype_name(dtype)), dtype) << dtype_name(dtype);
    EXPECT_EQ(dtype_from_safetensors(safetensors_dtype_name(dtype)), dtype)
        << safetensors_dtype_name(dtype);
  }
  EXPECT_EQ(names.size(), kAllDTypes.size());
  EXPECT_EQ(safetensors_names.size(), kAllDTypes.size());
}

TEST(DType, KnownSpellings) {
  EXPECT_EQ(dtype_name(DType::BF16), "bfloat16");
  EXPECT_EQ(dtype_name(DType::Bool), "bool");
  EXPECT_EQ(safetensors_dtype_name(DType::Bool), "BOOL");
  EXPECT_EQ(safetensors_dtype_name(DType::F32), "F32");
}

TEST(DType, UnknownNamesGiveNullopt) {
  EXPECT_EQ(dtype_from_name("complex64"), std::nullopt);
  EXPECT_EQ(dtype_from_name("F32"), std::nullopt);  // the safetensors spelling is not numpy's
  EXPECT_EQ(dtype_from_safetensors("F8_E4M3"), std::nullopt);
  EXPECT_EQ(dtype_from_safetensors("float32"), std::nullopt);
  EXPECT_EQ(dtype_from_safetensors(""), std::nullopt);
}

TEST(CheckedNumel, MultipliesDims) {
  const std::vector<std::int64_t> shape{2, 3, 4};
  EXPECT_EQ(checked_numel(shape), 24);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{}), 1);  // 0-d
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{5, 0, 7}), 0);
}

TEST(CheckedNumel, RefusesNegativeDims) {
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{2, -1}), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{0, -3}), std::nullopt);
}

TEST(CheckedNumel, RefusesOverflow) {
  const std::int64_t big = std::int64_t{1} << 32;
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{big, big}), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{INT64_MAX, 2}), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{INT64_MAX, 1}), INT64_MAX);
}

TEST(CheckedNumel, RefusesOverflowBesideAZeroDim) {
  // Empty, but its strides overflow and numpy refuses the shape: found reviewing the readers.
  const std::int64_t big = std::int64_t{1} << 62;
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{0, big, big}), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{big, 0, 1}), 0);
}

TEST(CheckedNumel, CountsBytesWhenGivenAnItemsize) {
  const std::int64_t big = std::int64_t{1} << 60;
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{big}, 4), big);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{big}, 8), std::nullopt);
  EXPECT_EQ(checked_numel(std::vector<std::int64_t>{0, big}, 8), std::nullopt);
}

TEST(ContiguousStrides, AreRowMajor) {
  EXPECT_EQ(contiguous_strides(std::vector<std::int64_t>{2, 3, 4}),
            (std::vector<std::int64_t>{12, 4, 1}));
  EXPECT_EQ(contiguous_strides(std::vector<std::int64_t>{}), std::vector<std::int64_t>{});
  EXPECT_EQ(contiguous_strides(std::vector<std::int64_t>{7}), std::vector<std::int64_t>{1});
}

TEST(ContiguousStrides, TreatZeroDimsAsOne) {
  // As torch does: a zero dim does not zero the strides outside it.
  EXPECT_EQ(contiguous_strides(std::vector<std::int64_t>{2, 0, 3}),
            (std::vector<std::int64_t>{3, 3, 1}));
}

TEST(IsContiguous, RowMajorStridesAre) {
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{
           {}, {5}, {2, 3}, {2, 3, 4}, {1, 1}, {4, 1, 2}, {0}, {2, 0, 3}, {3, 0}}) {
    const Tensor tensor = view_of(DType::F32, shape, contiguous_strides(shape));
    EXPECT_TRUE(tensor.is_contiguous()) << ::testing::PrintToString(shape);
  }
}

TEST(IsContiguous, TransposedAndExpandedViewsAreNot) {
  EXPECT_FALSE(view_of(DType::F32, {2, 3}, {1, 2}).is_contiguous());
  EXPECT_FALSE(view_of(DType::F32, {2, 3}, {0, 1}).is_contiguous());
  EXPECT_FALSE(view_of(DType::F32, {2, 3}, {6, 1}).is_contiguous());  // row padding
}

TEST(IsContiguous, IgnoresStridesOfSizeOneDims) {
  EXPECT_TRUE(view_of(DType::F32, {2, 1, 3}, {3, 99, 1}).is_contiguous());
}

TEST(CheckViewInBounds, AcceptsExactFit) {
  EXPECT_NO_THROW(check_view_in_bounds(view_of(DType::F32, {2, 3}, {3, 1}), 24, "t"));
  EXPECT_NO_THROW(check_view_in_bounds(view_of(DType::F32, {2}, {1}, 4), 24, "t"));  // ends at 24
  EXPECT_NO_THROW(check_view_in_bounds(view_of(DType::F32, {3, 2}, {1, 3}), 24, "t"));
  EXPECT_NO_THROW(check_view_in_bounds(view_of(DType::F64, {}, {}, 2), 24, "t"));
}

TEST(CheckViewInBounds, AcceptsEmptyViews) {
  EXPECT_NO_THROW(check_view_in_bounds(view_of(DType::F32, {0, 3}, {3, 1}), 0, "t"));
}

TEST(CheckViewInBounds, RejectsViewEndingPastStorage) {
  const std::string message = error_of([] {
    check_view_in_bounds(view_of(DType::F32, {2, 3}, {3, 1}, 1), 24, "weights.w");
  });
  EXPECT_TRUE(StartsWith(message, "[tensor] weights.w: "));
  EXPECT_TRUE(Contains(message, "view ends at byte 28"));
  EXPECT_TRUE(Contains(message, "24 bytes"));
  EXPECT_FALSE(error_of([] {
                 check_view_in_bounds(view_of(DType::F32, {2, 3}, {4, 1}), 24, "t");
               }).empty());
  EXPECT_FALSE(error_of([] { check_view_in_bounds(view_of(DType::F64, {}, {}), 7, "t"); }).empty());
}

TEST(CheckViewInBounds, RejectsNegativeStrides) {
  EXPECT_TRUE(
      Contains(error_of([] { check_view_in_bounds(view_of(DType::F32, {3}, {-1}, 2), 24, "t"); }),
               "negative stride"));
}

TEST(CheckViewInBounds, RejectsNegativeOffsets) {
  EXPECT_TRUE(
      Contains(error_of([] { check_view_in_bounds(view_of(DType::F32, {3}, {1}, -1), 24, "t"); }),
               "negative storage offset"));
}

TEST(CheckViewInBounds, RejectsOverflowingStrides) {
  EXPECT_TRUE(Contains(error_of([] {
                         check_view_in_bounds(view_of(DType::F32, {3}, {INT64_MAX / 2 + 1}), 24,
                                              "t");
                       }),
                       "strides overflow"));
  // The last element index is exactly INT64_MAX: one past it is not representable.
  EXPECT_TRUE(Contains(
      error_of([] { check_view_in_bounds(view_of(DType::U8, {2}, {INT64_MAX}), 24, "t"); }),
      "strides overflow"));
}

TEST(CheckViewInBounds, RejectsAnOverflowingStrideOfASizeOneDim) {
  // The stride of a size-1 dim moves nothing, but numpy still needs it in bytes.
  EXPECT_TRUE(
      Contains(error_of([] {
                 check_view_in_bounds(view_of(DType::F32, {1, 2}, {INT64_MAX / 2, 1}), 24, "t");
               }),
               "strides overflow"));
  EXPECT_TRUE(Contains(
      error_of([] {
        check_view_in_bounds(view_of(DType::F32, {0, std::int64_t{1} << 62}, {1, 1}), 24, "t");
      }),
      "overflowing dim"));
}

TEST(CheckViewInBounds, RejectsViewsWhoseByteAddressOverflows) {
  // The element index fits in int64 but its byte address does not; the message must not
  // report a wrapped-around byte count.
  const std::string message =
      error_of([] { check_view_in_bounds(view_of(DType::F64, {2}, {INT64_MAX / 4}), 24, "t"); });
  EXPECT_TRUE(Contains(message, "overflow"));
  EXPECT_FALSE(Contains(message, "ends at byte 0 "));
}

TEST(CheckViewInBounds, RejectsStrideCountMismatchAndBadShapes) {
  EXPECT_TRUE(Contains(error_of([] {
                         check_view_in_bounds(view_of(DType::F32, {2, 3}, {1}), 24, "t");
                       }),
                       "2 dims but 1 strides"));
  EXPECT_FALSE(
      error_of([] { check_view_in_bounds(view_of(DType::F32, {-2}, {1}), 24, "t"); }).empty());
}

TEST(CopyContiguous, CopiesContiguousTensorAsIs) {
  const Tensor tensor = float_view({1, 2, 3, 4, 5, 6}, {2, 3}, {3, 1});
  EXPECT_EQ(packed(tensor), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(CopyContiguous, TransposesA2dView) {
  // [[0 1 2] [3 4 5]] viewed as its 3x2 transpose.
  const Tensor tensor = float_view({0, 1, 2, 3, 4, 5}, {3, 2}, {1, 3});
  EXPECT_EQ(packed(tensor), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(CopyContiguous, PermutesA3dView) {
  // A 2x3x4 tensor with element (i, j, k) = 12i + 4j + k, permuted to (k, i, j): 4x2x3.
  std::vector<float> values(24);
  std::iota(values.begin(), values.end(), 0.0F);
  const Tensor tensor = float_view(values, {4, 2, 3}, {1, 12, 4});
  std::vector<float> expected;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) expected.push_back(static_cast<float>(12 * i + 4 * j + k));
  EXPECT_EQ(packed(tensor), expected);
}

TEST(CopyContiguous, RepeatsAStrideZeroExpandedView) {
  const Tensor rows = float_view({7, 8, 9}, {2, 3}, {0, 1});
  EXPECT_EQ(packed(rows), (std::vector<float>{7, 8, 9, 7, 8, 9}));
  const Tensor columns = float_view({7, 8}, {2, 3}, {1, 0});
  EXPECT_EQ(packed(columns), (std::vector<float>{7, 7, 7, 8, 8, 8}));
}

TEST(CopyContiguous, HonoursTheStorageOffset) {
  const Tensor tensor = float_view({0, 1, 2, 3, 4, 5, 6}, {2, 2}, {1, 2}, 3);
  EXPECT_EQ(packed(tensor), (std::vector<float>{3, 5, 4, 6}));
}

TEST(ByteswapElements, ReversesEachElement) {
  std::vector<std::byte> bytes = test::bytes_of("abcdefgh");
  byteswap_elements(bytes.data(), bytes.size(), 4);
  EXPECT_EQ(bytes, test::bytes_of("dcbahgfe"));
  byteswap_elements(bytes.data(), bytes.size(), 2);
  EXPECT_EQ(bytes, test::bytes_of("cdabghef"));
  byteswap_elements(bytes.data(), bytes.size(), 8);
  EXPECT_EQ(bytes, test::bytes_of("fehgbadc"));
}

TEST(ByteswapElements, LeavesSingleBytesAlone) {
  std::vector<std::byte> bytes = test::bytes_of("abc");
  byteswap_elements(bytes.data(), bytes.size(), 1);
  EXPECT_EQ(bytes, test::bytes_of("abc"));
}

TEST(ByteswapElements, TurnsBigEndianFloatsIntoNativeOnes) {
  std::vector<std::byte> bytes = test::raw_bytes(std::vector<float>{1.5F, -2.0F});
  byteswap_elements(bytes.data(), bytes.size(), 4);
  EXPECT_NE(test::values_at<float>(bytes.data(), 2), (std::vector<float>{1.5F, -2.0F}));
  byteswap_elements(bytes.data(), bytes.size(), 4);
  EXPECT_EQ(test::values_at<float>(bytes.data(), 2), (std::vector<float>{1.5F, -2.0F}));
}

TEST(Tensor, NumelNbytesAndData) {
  const Tensor tensor = make_owned_tensor(DType::I16, {2, 3}, std::vector<std::byte>(12));
  EXPECT_EQ(tensor.numel(), 6);
  EXPECT_EQ(tensor.nbytes(), 12U);
  EXPECT_EQ(tensor.strides, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(tensor.data(), tensor.storage->data);
  EXPECT_EQ(view_of(DType::F64, {}, {}).numel(), 1);
}

TEST(Tensor, DataAppliesTheOffsetInBytes) {
  const Tensor tensor = float_view({0, 1, 2, 3}, {2}, {1}, 2);
  EXPECT_EQ(tensor.data(), tensor.storage->data + 8);
}

TEST(Tensor, DataWithoutStorageIsAnError) {
  Tensor tensor = view_of(DType::F32, {2}, {1});
  EXPECT_TRUE(StartsWith(error_of([&] { (void)tensor.data(); }), "[tensor] "));
  tensor.storage = std::make_shared<Storage>(Storage{nullptr, 8, nullptr});
  EXPECT_TRUE(Contains(error_of([&] { (void)tensor.data(); }), "headers only"));
}

TEST(MakeOwnedTensor, RefusesTooFewBytes) {
  EXPECT_TRUE(StartsWith(error_of([] {
                           (void)make_owned_tensor(DType::F32, {2, 3}, std::vector<std::byte>(20));
                         }),
                         "[tensor] owned tensor: "));
}

}  // namespace
}  // namespace torch2mlx
