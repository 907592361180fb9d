"""Float casts and MLX quantization through the C++ core, numpy in and out.

`cast` gives the bits torch's CPU ``tensor.to(dtype)`` gives; `quantize` gives the bits
``mx.quantize(w, group_size, bits, mode=mode)`` gives in every mode (affine, mxfp4, mxfp8,
nvfp4), and `dequantize` those of ``mx.dequantize`` (affine). Neither torch nor MLX is
needed. bfloat16 arrays use ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

import numpy as np

from torch2mlx import _core
from torch2mlx.checkpoint import NUMPY_DTYPES

__all__ = ["FLOAT_DTYPES", "OUTPUT_DTYPES", "QUANT_MODES", "cast", "dequantize", "quantize"]

# Each MLX quantization mode: the bits and group sizes it takes, and its defaults.
QUANT_MODES: dict[str, dict[str, tuple[int, ...]]] = {
    "affine": {"bits": (2, 3, 4, 5, 6, 8), "group_size": (32, 64, 128), "default": (4, 64)},
    "mxfp4": {"bits": (4,), "group_size": (32,), "default": (4, 32)},
    "mxfp8": {"bits": (8,), "group_size": (32,), "default": (8, 32)},
    "nvfp4": {"bits": (4,), "group_size": (16,), "default": (4, 16)},
}

# The float dtypes the core converts between (by numpy/MLX name).
FLOAT_DTYPES: dict[str, np.dtype] = {
    name: NUMPY_DTYPES[name] for name in ("float64", "float32", "float16", "bfloat16")
}

# The dtypes a converted model's weights may be written in (--dtype): MLX's GPU has no
# float64.
OUTPUT_DTYPES = ("float32", "float16", "bfloat16")


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
    array: np.ndarray,
    bits: int | None = None,
    group_size: int | None = None,
    name: str = "array",
    mode: str = "affine",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``mx.quantize(array, group_size, bits, mode=mode)``: (uint32 weights, scales, biases).

    Affine scales and biases have the array's dtype; the fp modes (mxfp4, mxfp8, nvfp4)
    give uint8 scales and no biases (None). ``bits`` and ``group_size`` default to the
    mode's, as in MLX.
    """
    if mode not in QUANT_MODES:
        raise _core.CoreError(
            f"[quantize] tensor '{name}': unknown quantization mode '{mode}': use "
            f"{', '.join(QUANT_MODES)}"
        )
    default_bits, default_group = QUANT_MODES[mode]["default"]
    bits = default_bits if bits is None else bits
    group_size = default_group if group_size is None else group_size
    array = _native(array)
    dtype = _dtype_name(array.dtype)
    weights, scales, biases, weight_shape, scale_shape = _core.quantize(
        _as_bytes(array), dtype, list(array.shape), bits, group_size, name, mode
    )
    scale_dtype = dtype if mode == "affine" else "uint8"
    return (
        _from_bytes(weights, "uint32", weight_shape),
        _from_bytes(scales, scale_dtype, scale_shape),
        None if biases is None else _from_bytes(biases, dtype, scale_shape),
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
