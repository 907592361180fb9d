// Floor 1: converting float tensors between float64, float32, float16 and bfloat16 with the
// exact bits torch's CPU `tensor.to(dtype)` gives: round to nearest even, correct
// subnormals, overflow to inf, -0.0 kept. Integer and bool tensors are never cast.
//
// NaNs follow what torch 2.x does on x86 (AVX2 kernels), pair by pair:
//   float32 -> float16:  sign, quiet bit and the top 9 payload bits (F16C)
//   float32 -> bfloat16: 0xFFFF for every NaN (torch's vectorized kernel)
//   float16 -> bfloat16: 0x7FC0 for every NaN (torch's scalar kernel)
//   float64 -> float16 / bfloat16: through float32 (torch rounds twice, and so do we)
//   widening: sign and payload kept, made quiet (bfloat16 -> float32 keeps it as is)
#pragma once

#include <cstddef>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// True for the dtypes cast converts between: float64, float32, float16, bfloat16.
[[nodiscard]] bool is_castable(DType dtype);

/// A new contiguous tensor with the elements of `tensor` (any view) converted to `to`.
[[nodiscard]] Tensor cast(const Tensor& tensor, DType to);

/// Writes tensor.numel() elements of `to`, in row-major order, to `out`.
void cast_into(const Tensor& tensor, DType to, std::byte* out);

}  // namespace torch2mlx
