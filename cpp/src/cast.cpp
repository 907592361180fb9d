#include "torch2mlx/cast.h"

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "float_bits.h"
#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

// What torch writes for a NaN narrowed to bfloat16: its AVX2 float32 kernel writes 0xFFFF,
// its scalar c10::BFloat16 conversion (used for float16 -> bfloat16) writes 0x7FC0.
constexpr std::uint16_t kVectorBFloatNaN = 0xFFFF;
constexpr std::uint16_t kScalarBFloatNaN = 0x7FC0;

// One function per (from, to) pair, each converting a single element. float16 and bfloat16
// travel as their raw bits. float64 narrows to the 16-bit types through float32, rounding
// twice, because torch does.
std::uint16_t f32_to_f16(float value) {
  return detail::float_to_half_bits<detail::HalfNaN::kKeepPayload>(value);
}
std::uint16_t f32_to_bf16(float value) {
  return detail::float_to_bfloat16_bits(value, kVectorBFloatNaN);
}
float f16_to_f32(std::uint16_t half) { return detail::half_bits_to_float(half); }
float bf16_to_f32(std::uint16_t bfloat) { return detail::bfloat16_bits_to_float(bfloat); }
double f32_to_f64(float value) { return value; }
float f64_to_f32(double value) { return static_cast<float>(value); }
std::uint16_t f64_to_f16(double value) { return f32_to_f16(static_cast<float>(value)); }
std::uint16_t f64_to_bf16(double value) { return f32_to_bf16(static_cast<float>(value)); }
double f16_to_f64(std::uint16_t half) { return f16_to_f32(half); }
double bf16_to_f64(std::uint16_t bfloat) { return bf16_to_f32(bfloat); }
std::uint16_t f16_to_bf16(std::uint16_t half) {
  return detail::float_to_bfloat16_bits(f16_to_f32(half), kScalarBFloatNaN);
}
std::uint16_t bf16_to_f16(std::uint16_t bfloat) { return f32_to_f16(bf16_to_f32(bfloat)); }

/// Converts `count` packed elements; picked once per run, never per element.
using Kernel = void (*)(const std::byte* in, std::byte* out, std::size_t count);

// The conversion is a template argument, so it is inlined into a plain loop that the
// compiler vectorizes. memcpy loads and stores make unaligned views (safetensors offsets
// need not be aligned) well defined and compile to plain moves.
template <typename In, typename Out, Out (*kConvert)(In)>
void convert_run(const std::byte* in, std::byte* out, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    In value;
    std::memcpy(&value, in + i * sizeof(In), sizeof(In));
    const Out result = kConvert(value);
    std::memcpy(out + i * sizeof(Out), &result, sizeof(Out));
  }
}

template <std::size_t kSize>
void copy_run(const std::byte* in, std::byte* out, std::size_t count) {
  std::memcpy(out, in, count * kSize);
}

// Rows: from, columns: to, both in the order float64, float32, float16, bfloat16.
constexpr std::array<std::array<Kernel, 4>, 4> kKernels{{
    {copy_run<8>, convert_run<double, float, f64_to_f32>,
     convert_run<double, std::uint16_t, f64_to_f16>,
     convert_run<double, std::uint16_t, f64_to_bf16>},
    {convert_run<float, double, f32_to_f64>, copy_run<4>,
     convert_run<float, std::uint16_t, f32_to_f16>, convert_run<float, std::uint16_t, f32_to_bf16>},
    {convert_run<std::uint16_t, double, f16_to_f64>, convert_run<std::uint16_t, float, f16_to_f32>,
     copy_run<2>, convert_run<std::uint16_t, std::uint16_t, f16_to_bf16>},
    {convert_run<std::uint16_t, double, bf16_to_f64>,
     convert_run<std::uint16_t, float, bf16_to_f32>,
     convert_run<std::uint16_t, std::uint16_t, bf16_to_f16>, copy_run<2>},
}};

/// Row/column of kKernels, or -1 for a dtype that is not cast.
int float_index(DType dtype) {
  switch (dtype) {
    case DType::F64:
      return 0;
    case DType::F32:
      return 1;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 3;
    default:
      return -1;
  }
}

Kernel kernel_for(DType from, DType to) {
  const int row = float_index(from);
  const int column = float_index(to);
  if (row < 0 || column < 0) {
    fail("cast", fmt::format("cannot cast {} to {}: only float64, float32, float16 and bfloat16 "
                             "convert; integer and bool buffers are kept as they are",
                             dtype_name(from), dtype_name(to)));
  }
  return kKernels.at(static_cast<std::size_t>(row)).at(static_cast<std::size_t>(column));
}

}  // namespace

bool is_castable(DType dtype) { return float_index(dtype) >= 0; }

void cast_into(const Tensor& tensor, DType to, std::byte* out) {
  const Kernel kernel = kernel_for(tensor.dtype, to);
  const std::int64_t numel = tensor.numel();
  if (numel == 0) return;
  const std::byte* base = tensor.data();
  if (tensor.is_contiguous()) {
    kernel(base, out, static_cast<std::size_t>(numel));
    return;
  }
  // A strided view: convert row by row (the innermost dim), gathering a row first when
  // its elements are not adjacent. The outer dims are walked like an odometer.
  const auto in_size = static_cast<std::int64_t>(itemsize(tensor.dtype));
  const std::size_t out_row = static_cast<std::size_t>(tensor.shape.back()) * itemsize(to);
  const std::int64_t inner = tensor.shape.back();
  const std::int64_t inner_stride = tensor.strides.back();
  const std::size_t ndim = tensor.shape.size();
  std::vector<std::int64_t> index(ndim, 0);
  std::vector<std::byte> gathered(inner_stride == 1 ? 0
                                                    : static_cast<std::size_t>(inner * in_size));
  for (std::int64_t done = 0; done < numel; done += inner) {
    std::int64_t element = 0;
    for (std::size_t d = 0; d + 1 < ndim; ++d) element += index[d] * tensor.strides[d];
    const std::byte* row = base + element * in_size;
    if (inner_stride != 1) {
      for (std::int64_t j = 0; j < inner; ++j) {
        std::memcpy(gathered.data() + j * in_size, row + j * inner_stride * in_size,
                    static_cast<std::size_t>(in_size));
      }
      row = gathered.data();
    }
    kernel(row, out, static_cast<std::size_t>(inner));
    out += out_row;
    for (std::size_t d = ndim - 1; d-- > 0;) {
      if (++index[d] < tensor.shape[d]) break;
      index[d] = 0;
    }
  }
}

Tensor cast(const Tensor& tensor, DType to) {
  kernel_for(tensor.dtype, to);  // refuse before allocating
  std::vector<std::byte> bytes(static_cast<std::size_t>(tensor.numel()) * itemsize(to));
  cast_into(tensor, to, bytes.data());
  return make_owned_tensor(to, tensor.shape, std::move(bytes));
}

}  // namespace torch2mlx
