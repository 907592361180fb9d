"""Casts against torch's ``.to()`` and quantization against ``mx.quantize``, bit for bit."""

from __future__ import annotations

import itertools

import ml_dtypes
import mlx.core as mx
import numpy as np
import pytest
import torch

from torch2mlx import Torch2MLXError
from torch2mlx.numerics import cast, dequantize, quantize

BF16 = np.dtype(ml_dtypes.bfloat16)
NUMPY = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": BF16}
TORCH = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
MLX = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}
COUNT = 1 << 20


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(UINT[array.dtype.itemsize])


def to_torch(array: np.ndarray) -> torch.Tensor:
    raw = torch.from_numpy(
        np.ascontiguousarray(array)
        .view(UINT[array.dtype.itemsize])
        .view(f"i{array.dtype.itemsize}")
    )
    return raw.view(TORCH[_name(array.dtype)])


def from_torch(tensor: torch.Tensor) -> np.ndarray:
    raw = tensor.view(INT[tensor.element_size()]).numpy()
    name = next(n for n, t in TORCH.items() if t == tensor.dtype)
    return raw.view(NUMPY[name])


def _name(dtype: np.dtype) -> str:
    return next(n for n, d in NUMPY.items() if np.dtype(d) == dtype)


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    mismatch = np.flatnonzero(bits(got).reshape(-1) != bits(expected).reshape(-1))
    if mismatch.size:
        first = mismatch[:5]
        raise AssertionError(
            f"{mismatch.size} of {got.size} differ, e.g. at {first.tolist()}: "
            f"got {[hex(x) for x in bits(got).reshape(-1)[first]]}, "
            f"expected {[hex(x) for x in bits(expected).reshape(-1)[first]]}"
        )


# --- Inputs -----------------------------------------------------------------------------


@np.errstate(over="ignore")  # overflowing to inf is part of the range
def float32_inputs(rng: np.random.Generator, nan: bool = True) -> np.ndarray:
    """1M float32: random bit patterns (every exponent, subnormals, NaN payloads, inf), values
    over a wide exponent range, and the ties and edges of float16 and bfloat16."""
    quarter = COUNT // 4
    random_bits = rng.integers(0, 1 << 32, size=quarter, dtype=np.uint64).astype(np.uint32)
    wide = (rng.standard_normal(quarter) * 10.0 ** rng.uniform(-46, 39, quarter)).astype(np.float32)
    # Every float16 value plus exactly half an ulp (ties), a quarter ulp, or just below half.
    half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    half = half[np.isfinite(half)].astype(np.float32)
    ulp = np.spacing(half.astype(np.float16)).astype(np.float32)
    ties16 = np.concatenate([half, half + ulp / 2, half + ulp / 4, half + ulp * 0.499])
    # bfloat16 ties: the 16 low bits exactly 0x8000, just below and just above.
    upper = rng.integers(0, 1 << 16, size=quarter // 3, dtype=np.uint32) << 16
    ties_bf16 = np.concatenate([upper | 0x8000, upper | 0x7FFF, upper | 0x8001]).view(np.float32)
    special = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            65504,
            65519.99,
            65520,
            65536,
            3.4028235e38,
            1e-45,
            -1e-45,
            2**-24,
            2**-25,
            2**-14,
            1.0 + 2**-11,
            1.0 + 2**-8,
        ],
        dtype=np.float32,
    )
    nans = np.array(
        [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FA00000], dtype=np.uint32
    ).view(np.float32)
    parts = [random_bits.view(np.float32), wide, ties16, ties_bf16, special, nans]
    values = np.concatenate(parts)[:COUNT]
    values = np.concatenate([values, values[: COUNT - values.size]])
    rng.shuffle(values)
    if not nan:
        values = np.where(np.isnan(values), np.float32(1.5), values)
    return values


def sixteen_bit_inputs(dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Every bit pattern of a 16-bit float, then random ones up to 1M."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    random = rng.integers(0, 1 << 16, size=COUNT - every.size, dtype=np.uint32).astype(np.uint16)
    return np.concatenate([every, random]).view(dtype)


@np.errstate(over="ignore")
def float64_inputs(rng: np.random.Generator, nan: bool = True) -> np.ndarray:
    """Random float64 bits, a wide range of values and the float32 (and float16) ties."""
    quarter = COUNT // 4
    random_bits = rng.integers(0, 1 << 63, size=quarter, dtype=np.uint64)
    random_bits |= rng.integers(0, 2, size=quarter, dtype=np.uint64) << np.uint64(63)
    wide = rng.standard_normal(quarter) * 10.0 ** rng.uniform(-330, 310, quarter)
    single = rng.standard_normal(quarter).astype(np.float32)
    ties = single.astype(np.float64) + np.spacing(single).astype(np.float64) / 2
    nudged = ties + np.spacing(ties) * rng.choice([-1.0, 1.0], quarter)
    values = np.concatenate([random_bits.view(np.float64), wide, ties, nudged])
    rng.shuffle(values)
    if not nan:
        values = np.where(np.isnan(values), 1.5, values)
    return values


# --- Casts ------------------------------------------------------------------------------

PAIRS = [
    ("float32", "float16"),
    ("float32", "bfloat16"),
    ("float64", "float32"),
    ("float16", "float32"),
    ("bfloat16", "float32"),
    ("float16", "bfloat16"),
    ("bfloat16", "float16"),
    ("float32", "float64"),
    ("float16", "float64"),
    ("bfloat16", "float64"),
    ("float64", "float16"),
]


def inputs_for(source: str, rng: np.random.Generator, nan: bool = True) -> np.ndarray:
    if source == "float32":
        return float32_inputs(rng, nan)
    if source == "float64":
        return float64_inputs(rng, nan)
    return sixteen_bit_inputs(np.dtype(NUMPY[source]), rng)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_cast_matches_torch_bit_for_bit(source: str, target: str) -> None:
    values = inputs_for(source, np.random.default_rng(0))
    expected = from_torch(to_torch(values).to(TORCH[target]))
    assert_same_bits(cast(values, target), expected)


def test_float64_to_bfloat16_matches_torch_without_nans() -> None:
    # torch writes 0xFFFF for a NaN in its vectorized loop but 0x7FC0 in the scalar tail,
    # so its NaN bits depend on the position; we always write 0xFFFF.
    values = float64_inputs(np.random.default_rng(1), nan=False)
    expected = from_torch(to_torch(values).to(torch.bfloat16))
    assert_same_bits(cast(values, "bfloat16"), expected)
    nan = cast(np.full(64, np.nan), "bfloat16")
    assert (bits(nan) == 0xFFFF).all()


def test_cast_of_views_shapes_and_names() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((64, 48)).astype(np.float32)
    view = matrix[::2, 5:37].T  # strided: Python packs it, as torch's .to() does
    assert_same_bits(cast(view, BF16), from_torch(torch.from_numpy(view).to(torch.bfloat16)))
    assert cast(view, np.float16).shape == (32, 32)
    assert cast(np.float32(2.5), "float16").shape == ()
    assert cast(np.zeros((0, 3), np.float16), "float32").shape == (0, 3)
    swapped = matrix.astype(">f4")
    assert_same_bits(cast(swapped, "float64"), matrix.astype(np.float64))


def test_cast_refuses_integer_and_bool_arrays() -> None:
    with pytest.raises(Torch2MLXError, match=r"^\[cast\] .*integer and bool buffers are kept"):
        cast(np.arange(4, dtype=np.int64), "float32")
    with pytest.raises(Torch2MLXError, match=r"^\[cast\] cannot cast float32 to bool"):
        cast(np.ones(4, np.float32), np.bool_)
    with pytest.raises(Torch2MLXError, match=r"^\[cast\] unknown dtype 'float8'"):
        cast(np.ones(4, np.float32), "float8")


# --- Quantization -----------------------------------------------------------------------


def quantize_inputs(dtype: str, rng: np.random.Generator, columns: int = 256) -> np.ndarray:
    """Rows of every kind: random normal, constant groups, zero groups, huge and tiny ranges,
    negative-dominant groups, mixed magnitudes."""
    huge = 6e4 if dtype == "float16" else 1e30
    rows = [
        rng.standard_normal((8, columns)),
        np.full((2, columns), 0.7),
        np.full((2, columns), -3.25),
        np.zeros((2, columns)),
        np.concatenate([np.zeros((1, columns // 2)), np.full((1, columns // 2), 2.0)], axis=1),
        np.where(rng.random((2, columns)) < 0.5, huge, -huge),
        np.where(rng.random((2, columns)) < 0.5, huge, 0.0),
        1e-3 + 1e-9 * rng.standard_normal((2, columns)),
        1.0 + 1e-6 * rng.standard_normal((2, columns)),
        -np.abs(rng.standard_normal((4, columns))) * 5 + 0.1,
        np.abs(rng.standard_normal((2, columns))) * 5 - 0.1,
        rng.standard_normal((4, columns)) * 10.0 ** rng.uniform(-6, 4, (4, 1)),
        np.round(rng.standard_normal((2, columns)) * 4) / 4,  # exact ties once scaled
    ]
    values = np.concatenate(rows).astype(np.float32)
    values[-3, 5] = -0.0
    return values.astype(NUMPY[dtype])


def mx_array(array: np.ndarray) -> mx.array:
    if array.dtype == BF16:
        return mx.array(array.view(np.uint16)).view(mx.bfloat16)
    return mx.array(array)


def np_array(array: mx.array) -> np.ndarray:
    if array.dtype == mx.bfloat16:
        return np.asarray(array.view(mx.uint16)).view(BF16)
    return np.asarray(array)


COMBOS = list(
    itertools.product(["float32", "float16", "bfloat16"], [2, 3, 4, 5, 6, 8], [32, 64, 128])
)


@pytest.mark.parametrize(
    ("dtype", "bits_", "group_size"), COMBOS, ids=[f"{d}-{b}bit-g{g}" for d, b, g in COMBOS]
)
def test_quantize_matches_mlx_bit_for_bit(dtype: str, bits_: int, group_size: int) -> None:
    seed = COMBOS.index((dtype, bits_, group_size))
    values = quantize_inputs(dtype, np.random.default_rng(seed))
    expected = mx.quantize(mx_array(values), group_size=group_size, bits=bits_)
    got = quantize(values, bits=bits_, group_size=group_size)
    for ours, theirs in zip(got, expected, strict=True):
        assert_same_bits(ours, np_array(theirs))
    assert got[0].dtype == np.uint32
    assert got[1].dtype == values.dtype

    back = dequantize(*got, bits=bits_, group_size=group_size)
    reference = mx.dequantize(*expected, group_size=group_size, bits=bits_)
    assert_same_bits(back, np_array(reference))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_quantize_matches_mlx_on_a_large_random_matrix(dtype: str) -> None:
    values = np.random.default_rng(3).standard_normal((2, 96, 1024)).astype(NUMPY[dtype])
    expected = mx.quantize(mx_array(values), group_size=64, bits=4)
    got = quantize(values, bits=4, group_size=64)
    for ours, theirs in zip(got, expected, strict=True):
        assert_same_bits(ours, np_array(theirs))
    assert got[0].shape == (2, 96, 128)
    assert got[1].shape == (2, 96, 16)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_quantize_nan_and_inf_like_mlx(dtype: str) -> None:
    values = np.random.default_rng(4).standard_normal((4, 64)).astype(np.float32)
    values[0, 3] = np.nan  # ignored by min and max, q = 0
    values[1, 7] = np.inf  # scale NaN, bias inf
    values[2, :32] = np.nan  # a whole group of NaNs
    values[3, 40] = -np.inf
    values = values.astype(NUMPY[dtype])
    expected = mx.quantize(mx_array(values), group_size=32, bits=4)
    got = quantize(values, bits=4, group_size=32)
    for ours, theirs in zip(got, expected, strict=True):
        assert_same_bits(ours, np_array(theirs))
    back = dequantize(*got, bits=4, group_size=32)
    assert_same_bits(back, np_array(mx.dequantize(*expected, group_size=32, bits=4)))


def test_quantize_refuses_with_the_tensor_name() -> None:
    values = np.ones((2, 96), np.float32)
    with pytest.raises(Torch2MLXError, match=r"^\[quantize\] tensor 'fc.weight': .*96 is not"):
        quantize(values, bits=4, group_size=64, name="fc.weight")
    with pytest.raises(Torch2MLXError, match="7 bits are not supported"):
        quantize(values, bits=7, group_size=32)
    with pytest.raises(Torch2MLXError, match="group size 16 is not supported"):
        quantize(values, bits=4, group_size=16)
    with pytest.raises(Torch2MLXError, match="dtype int32 cannot be quantized"):
        quantize(np.ones((2, 64), np.int32), group_size=32)
    with pytest.raises(Torch2MLXError, match="cast it to float32 first"):
        quantize(np.ones((2, 64), np.float64), group_size=32)
    with pytest.raises(Torch2MLXError, match="has 1 dims"):
        quantize(np.ones(64, np.float32), group_size=32)
    weights, scales, biases = quantize(np.ones((2, 64), np.float32), bits=4, group_size=32)
    with pytest.raises(Torch2MLXError, match=r"^\[dequantize\] tensor 'w': weights \[2, 8\]"):
        dequantize(weights, scales, biases, bits=8, group_size=32, name="w")


# --- The floating-point modes: uint8 scales (e8m0 for mx*, e4m3 for nvfp4), no biases.
FP_MODES = {"mxfp4": (4, 32), "mxfp8": (8, 32), "nvfp4": (4, 16)}
FP_COMBOS = list(itertools.product(["float32", "float16", "bfloat16"], FP_MODES))


def fp_inputs(dtype: str, rng: np.random.Generator) -> np.ndarray:
    """quantize_inputs plus what only the fp modes meet: values at the e2m1 and e4m3 grid
    points and halfway between them, scales beyond e8m0's and e4m3's ranges, subnormals."""
    columns = 128
    grid = np.array([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6])
    rows = [
        np.resize(np.concatenate([grid, -grid]), (2, columns)),
        np.resize(np.concatenate([grid, -grid]) * 2.0**-20, (1, columns)),
        np.resize(np.arange(-16, 16) / 2, (2, columns)) * 37.0,  # e4m3 ties after scaling
        rng.standard_normal((2, columns)) * 1e-30,  # below e4m3's smallest scale
        rng.standard_normal((2, columns)) * 1e30,  # float32 only: inf in float16
        rng.standard_normal((2, columns)) * 2.0**-140,  # float32 subnormals
        rng.standard_normal((2, columns)) * 6e-8,  # float16 subnormals
        rng.standard_normal((2, columns)) * 60000,
    ]
    values = np.concatenate(
        [quantize_inputs("float32", rng)[:, :columns], *[r.astype(np.float32) for r in rows]]
    )
    with np.errstate(over="ignore"):  # 1e30 becomes inf in float16: a case of its own
        return values.astype(NUMPY[dtype])


@pytest.mark.parametrize(("dtype", "mode"), FP_COMBOS, ids=[f"{d}-{m}" for d, m in FP_COMBOS])
def test_fp_modes_match_mlx_bit_for_bit(dtype: str, mode: str) -> None:
    bits_, group_size = FP_MODES[mode]
    values = fp_inputs(dtype, np.random.default_rng(FP_COMBOS.index((dtype, mode))))
    expected = mx.quantize(mx_array(values), group_size=group_size, bits=bits_, mode=mode)
    weights, scales, biases = quantize(values, bits=bits_, group_size=group_size, mode=mode)
    assert len(expected) == 2 and biases is None
    assert scales.dtype == np.uint8 and weights.dtype == np.uint32
    assert_same_bits(weights, np_array(expected[0]))
    assert_same_bits(scales, np_array(expected[1]))


@pytest.mark.parametrize(("dtype", "mode"), FP_COMBOS, ids=[f"{d}-{m}" for d, m in FP_COMBOS])
def test_fp_modes_nan_and_inf_like_mlx(dtype: str, mode: str) -> None:
    bits_, group_size = FP_MODES[mode]
    values = np.random.default_rng(5).standard_normal((6, 64)).astype(np.float32)
    values[0, 3] = np.nan
    values[1, 7] = np.inf
    values[2, :32] = np.nan
    values[3, 40] = -np.inf
    values[4, :] = 0.0
    values[5, 1] = -0.0
    values = values.astype(NUMPY[dtype])
    expected = mx.quantize(mx_array(values), group_size=group_size, bits=bits_, mode=mode)
    weights, scales, _ = quantize(values, mode=mode)  # the mode's own bits and group size
    assert_same_bits(weights, np_array(expected[0]))
    assert_same_bits(scales, np_array(expected[1]))


@pytest.mark.parametrize("mode", list(FP_MODES))
def test_fp_modes_on_a_large_random_matrix(mode: str) -> None:
    bits_, group_size = FP_MODES[mode]
    values = np.random.default_rng(6).standard_normal((3, 64, 512)).astype(np.float32)
    expected = mx.quantize(mx.array(values), group_size=group_size, bits=bits_, mode=mode)
    weights, scales, _ = quantize(values, bits=bits_, group_size=group_size, mode=mode)
    assert weights.shape == (3, 64, 512 * bits_ // 32)
    assert scales.shape == (3, 64, 512 // group_size)
    assert_same_bits(weights, np_array(expected[0]))
    assert_same_bits(scales, np_array(expected[1]))


def test_fp_modes_refuse_other_bits_and_groups() -> None:
    values = np.ones((2, 64), np.float32)
    with pytest.raises(Torch2MLXError, match=r"mxfp4 quantization takes 4 bits and group size 32"):
        quantize(values, bits=4, group_size=64, mode="mxfp4")
    with pytest.raises(Torch2MLXError, match=r"nvfp4 quantization takes 4 bits and group size 16"):
        quantize(values, bits=8, group_size=16, mode="nvfp4")
    with pytest.raises(Torch2MLXError, match="unknown quantization mode 'fp4'"):
        quantize(values, mode="fp4")
