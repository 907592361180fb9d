"""Float casts and MLX affine quantization through the C++ core, numpy in and out.

`cast` gives the bits torch's CPU ``tensor.to(dtype)`` gives; `quantize` and `dequantize`
give the bits ``mx.quantize(w, group_size, bits)`` and ``mx.dequantize`` give (mode
"affine"). Neither torch nor MLX is needed. bfloat16 arrays use ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from torch2mlx import _core

__all__ = ["FLOAT_DTYPES", "cast", "dequantize", "quantize"]

# The float dtypes the core converts between (by numpy/MLX name).
FLOAT_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}


def _dtype_name(dtype: np.dtype | str | type) -> str:
    """The core's name for a numpy dtype (integer and bool dtypes keep their names)."""
    if isinstance(dtype, str) and dtype in FLOAT_DTYPES:
        return dtype
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return str(dtype)  # the core names it in its error
    for name, known in FLOAT_DTYPES.items():
        if dtype == known:
            return name
    return dtype.name


def _native(array: np.ndarray) -> np.ndarray:
    """`array` itself, or a native-byte-order copy of a byte-swapped one."""
    array = np.asarray(array)
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def _as_bytes(array: np.ndarray) -> np.ndarray:
    """The elements of `array`, row-major, as a flat uint8 view (copied only if strided)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _from_bytes(data: np.ndarray, dtype: str, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    return data.view(FLOAT_DTYPES.get(dtype, np.dtype(dtype))).reshape(tuple(shape))


def cast(array: np.ndarray, dtype: np.dtype | str | type) -> np.ndarray:
    """`array` converted to a float dtype, bit for bit as torch's ``.to()`` on CPU."""
    array = _native(array)
    source = _dtype_name(array.dtype)
    target = _dtype_name(dtype)
    data = _core.cast(_as_bytes(array), source, list(array.shape), target)
    return _from_bytes(data, target, array.shape)


def quantize(
    array: np.ndarray, bits: int = 4, group_size: int = 64, name: str = "array"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mx.quantize(array, group_size, bits)``: (uint32 weights, scales, biases)."""
    array = _native(array)
    dtype = _dtype_name(array.dtype)
    weights, scales, biases, weight_shape, scale_shape = _core.quantize(
        _as_bytes(array), dtype, list(array.shape), bits, group_size, name
    )
    return (
        _from_bytes(weights, "uint32", weight_shape),
        _from_bytes(scales, dtype, scale_shape),
        _from_bytes(biases, dtype, scale_shape),
    )


def dequantize(
    weights: np.ndarray,
    scales: np.ndarray,
    biases: np.ndarray,
    bits: int = 4,
    group_size: int = 64,
    name: str = "array",
) -> np.ndarray:
    """``mx.dequantize(weights, scales, biases, group_size, bits)``, in the scales' dtype."""
    weights = _native(weights)
    scales = _native(scales)
    biases = _native(biases)
    if weights.dtype != np.uint32:
        raise _core.CoreError(
            f"[dequantize] tensor '{name}': packed weights must be uint32, not {weights.dtype}: "
            "pass the first array quantize returned"
        )
    if scales.shape != biases.shape or scales.dtype != biases.dtype:
        raise _core.CoreError(
            f"[dequantize] tensor '{name}': scales {scales.dtype}{list(scales.shape)} and biases "
            f"{biases.dtype}{list(biases.shape)} must match: pass the arrays quantize returned"
        )
    dtype = _dtype_name(scales.dtype)
    data, shape = _core.dequantize(
        _as_bytes(weights),
        list(weights.shape),
        _as_bytes(scales),
        _as_bytes(biases),
        dtype,
        list(scales.shape),
        bits,
        group_size,
        name,
    )
    return _from_bytes(data, dtype, shape)
