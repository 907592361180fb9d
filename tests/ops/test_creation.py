"""Creation ops (ranges, fills, *_like, new_*, random tensors, dropout, asserts, item)
against torch eager. Random ops are checked for shape, dtype and distribution, not values;
empty* ops for shape and dtype (torch leaves their values undefined)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ops import harness
from tests.ops.test_elementwise import _mlx_dtype_name, case, check_cases, overload

aten = torch.ops.aten


class _Calls(torch.nn.Module):
    """forward(*tensors) -> tuple(function(*tensors) for each function)."""

    def __init__(self, functions):
        super().__init__()
        self.functions = functions

    def forward(self, *tensors):
        return tuple(function(*tensors) for function in self.functions)


def run(functions, *inputs):
    """(torch outputs, MLX outputs) of each function on inputs, through one export."""
    module = _Calls(functions)
    generated = harness.generate(module, inputs)
    with torch.no_grad():
        expected = module(*inputs)
    return expected, harness.run_source(generated["source"], inputs)


def assert_shapes_and_dtypes(expected, actual):
    for e, a in zip(expected, actual, strict=True):
        assert tuple(a.shape) == tuple(e.shape), (a.shape, e.shape)
        assert _mlx_dtype_name(a) == str(e.dtype).removeprefix("torch."), (a.dtype, e.dtype)


@pytest.mark.parametrize(
    "op", ["aten.arange.default", "aten.arange.start", "aten.arange.start_step"]
)
def test_arange(op):
    cases = {
        "aten.arange.default": [
            case(5),
            case(5.5),
            case(0),
            case(7, dtype=torch.float32),
            case(4, dtype=torch.int32),
        ],
        "aten.arange.start": [
            case(-3, 4),
            case(1.5, 4),
            case(2, 9, dtype=torch.float16),
            case(3, 3),
        ],
        "aten.arange.start_step": [
            case(1, 10, 3),
            case(10, -4, -3),
            case(0.0, 100.0, 0.1),  # float steps drift in mx.arange, not here
            case(-3, 7, 0.37),
            case(1, 5, 0.3, dtype=torch.float64),
            case(0, 2, 0.25, dtype=torch.bfloat16),
        ],
    }[op]
    check_cases(overload(op), cases, atol=1e-5)


@pytest.mark.parametrize("op", ["aten.linspace.default"])
def test_linspace(op):
    check_cases(
        overload(op),
        [
            case(0, 1, 5),
            case(-3, 7, 11),
            case(0, 100, 1000),
            case(5, 5, 1),
            case(2, -2, 8),
            case(0, 10, 4, dtype=torch.int64),
        ],
    )


@pytest.mark.parametrize("op", ["aten.eye.default", "aten.eye.m"])
def test_eye(op):
    cases = [case(3), case(1, dtype=torch.int64), case(4, dtype=torch.bool)]
    if op == "aten.eye.m":
        cases = [case(2, 4), case(4, 2, dtype=torch.float16), case(0, 3)]
    check_cases(overload(op), cases)


@pytest.mark.parametrize("op", ["aten.full.default"])
def test_full(op):
    check_cases(
        overload(op),
        [
            case((2, 3), 1.5),
            case((2,), True),
            case((2, 2), 7),
            case((), 2.0),
            case((0, 3), 1.0),
            case((3,), 2, dtype=torch.float16),
            case((3,), 1.75, dtype=torch.int32),
            case((2,), -2.5, dtype=torch.int64),
            case((2,), 0.5, dtype=torch.bool),
        ],
    )


@pytest.mark.parametrize("op", ["aten.zeros.default", "aten.ones.default"])
def test_zeros_ones(op):
    check_cases(
        overload(op),
        [
            case((2, 3)),
            case(()),
            case((0, 4)),
            case((3,), dtype=torch.int32),
            case((2,), dtype=torch.bool),
            case((2, 2), dtype=torch.bfloat16),
        ],
    )


@pytest.mark.parametrize(
    "op",
    [
        "aten.full_like.default",
        "aten.zeros_like.default",
        "aten.ones_like.default",
        "aten.zero.default",
    ],
)
def test_like(op):
    fill = (2.5,) if op == "aten.full_like.default" else ()
    dtype = {"dtype": torch.int32} if op != "aten.zero.default" else {}
    check_cases(
        overload(op),
        [
            case(torch.randn(2, 3, 4), *fill, transpose=True),
            case(torch.randn(3, 4).half(), *fill),
            case(torch.arange(6), *fill),
            case(torch.tensor(1.0), *fill),
            case(torch.randn(0, 3), *fill),
            case(torch.randn(2, 3), *fill, **dtype),
        ],
    )


@pytest.mark.parametrize(
    "op", ["aten.new_zeros.default", "aten.new_ones.default", "aten.new_full.default"]
)
def test_new(op):
    fill = (3,) if op == "aten.new_full.default" else ()
    check_cases(
        overload(op),
        [
            case(torch.randn(2, 3), (4, 2), *fill),
            case(torch.arange(4), (3,), *fill),
            case(torch.randn(2).half(), (), *fill),
            case(torch.randn(2), (0, 2), *fill),
            case(torch.randn(2), (2,), *fill, dtype=torch.int64),
        ],
    )


@pytest.mark.parametrize(
    "op",
    [
        "aten.empty.memory_format",
        "aten.empty_strided.default",
        "aten.empty_like.default",
        "aten.new_empty.default",
        "aten.new_empty_strided.default",
    ],
)
def test_empty_shapes_and_dtypes(op):
    x = torch.randn(2, 3)
    calls = {
        "aten.empty.memory_format": [
            lambda x: aten.empty.memory_format((2, 3)),
            lambda x: aten.empty.memory_format((0,), dtype=torch.int32),
        ],
        "aten.empty_strided.default": [lambda x: aten.empty_strided.default((2, 3), (3, 1))],
        "aten.empty_like.default": [
            lambda x: aten.empty_like.default(x),
            lambda x: aten.empty_like.default(x, dtype=torch.float16),
        ],
        "aten.new_empty.default": [
            lambda x: aten.new_empty.default(x, (4,)),
            lambda x: aten.new_empty.default(x, (1, 2), dtype=torch.bool),
        ],
        "aten.new_empty_strided.default": [
            lambda x: aten.new_empty_strided.default(x, (2, 2), (2, 1))
        ],
    }[op]
    expected, actual = run(calls, x)
    assert_shapes_and_dtypes(expected, actual)


@pytest.mark.parametrize("op", ["aten.scalar_tensor.default"])
def test_scalar_tensor(op):
    check_cases(
        overload(op),
        [
            case(2.5),
            case(3, dtype=torch.int64),
            case(1, dtype=torch.bool),
            case(-1.5, dtype=torch.float16),
        ],
    )


@pytest.mark.parametrize("op", ["aten.fill.Scalar", "aten.fill.Tensor"])
def test_fill(op):
    value = (lambda v: torch.tensor(v)) if op == "aten.fill.Tensor" else (lambda v: v)
    check_cases(
        overload(op),
        [
            case(torch.randn(2, 3, 4), value(2.5), transpose=op == "aten.fill.Scalar"),
            case(torch.arange(6), value(2.5)),  # truncated to the tensor's int dtype
            case(torch.arange(6), value(3)),
            case(torch.randn(3).half(), value(1.5)),
            case(torch.randn(0, 2), value(1.0)),
            case(torch.tensor(0.0), value(7.0)),
        ],
    )


# ---------------------------------------------------------------------------------------
# Random ops: shape, dtype, statistics.

N = 20000


def _stats(array):
    values = np.array(array.astype(__import__("mlx.core").core.float32))
    return values.mean(), values.std(), values.min(), values.max()


@pytest.mark.parametrize(
    "op, call, mean, std, low, high",
    [
        ("aten.rand.default", lambda x: aten.rand.default((N,)), 0.5, 0.2887, 0.0, 1.0),
        ("aten.randn.default", lambda x: aten.randn.default((N,)), 0.0, 1.0, -7.0, 7.0),
        ("aten.rand_like.default", lambda x: aten.rand_like.default(x), 0.5, 0.2887, 0.0, 1.0),
        ("aten.randn_like.default", lambda x: aten.randn_like.default(x), 0.0, 1.0, -7.0, 7.0),
        ("aten.randint.low", lambda x: aten.randint.low(-3, 5, (N,)), 0.5, 2.291, -3, 4),
        ("aten.randint.default", lambda x: aten.randint.default(10, (N,)), 4.5, 2.872, 0, 9),
        ("aten.randint_like.default", lambda x: aten.randint_like.default(x, 10), 4.5, 2.872, 0, 9),
        (
            "aten.randint_like.low_dtype",
            lambda x: aten.randint_like.low_dtype(x, 2, 4),
            2.5,
            0.5,
            2,
            3,
        ),
        (
            "aten.uniform.default",
            lambda x: aten.uniform.default(x, -2.0, 2.0),
            0.0,
            1.1547,
            -2.0,
            2.0,
        ),
        (
            "aten.bernoulli.default",
            lambda x: aten.bernoulli.default(torch.full_like(x, 0.3)),
            0.3,
            0.4583,
            0,
            1,
        ),
        ("aten.bernoulli.p", lambda x: aten.bernoulli.p(x, 0.8), 0.8, 0.4, 0, 1),
    ],
)
def test_random(op, call, mean, std, low, high):
    x = torch.zeros(N)
    expected, actual = run(
        [call, lambda x: call(x.half()) if "like" in op or "uniform" in op else call(x)], x
    )
    assert_shapes_and_dtypes(expected, actual)
    got_mean, got_std, got_min, got_max = _stats(actual[0])
    assert abs(got_mean - mean) < 0.05 * max(std, 1) and abs(got_std - std) < 0.05 * std
    assert got_min >= low and got_max <= high


def test_random_small_shapes_and_dtypes():
    calls = [
        lambda x: aten.rand.default((2, 3), dtype=torch.float16),
        lambda x: aten.randn.default((), dtype=torch.bfloat16),
        lambda x: aten.rand.default((0, 4)),
        lambda x: aten.randint.low(0, 5, (3,), dtype=torch.int32),
        lambda x: aten.rand_like.default(x.transpose(0, 1)),
    ]
    expected, actual = run(calls, torch.zeros(2, 3))
    assert_shapes_and_dtypes(expected, actual)


@pytest.mark.parametrize("op", ["aten.randperm.default"])
def test_randperm(op):
    expected, actual = run(
        [
            lambda x: aten.randperm.default(100),
            lambda x: aten.randperm.default(5, dtype=torch.int32),
            lambda x: aten.randperm.default(0),
        ],
        torch.zeros(1),
    )
    assert_shapes_and_dtypes(expected, actual)
    values = np.array(actual[0])
    assert sorted(values.tolist()) == list(range(100)) and values.tolist() != list(range(100))


@pytest.mark.parametrize("op", ["aten.dropout.default", "aten.native_dropout.default"])
def test_dropout(op):
    x = torch.randn(3, 4)
    if op == "aten.dropout.default":
        check_cases(
            overload(op),
            [
                case(x, 0.5, False),
                case(x.half(), 0.1, False),
                case(torch.randn(2, 3, 4), 0.3, False, transpose=True),
            ],
        )
        calls = [lambda x: aten.dropout.default(x, 0.25, True)]
    else:
        # (No empty input: eager torch gives its mask the input's dtype there, export bool.)
        check_cases(
            overload(op),
            [case(x, 0.5, False), case(torch.randn(2, 3, 4), 0.1, False, transpose=True)],
        )
        calls = [
            lambda x: aten.native_dropout.default(x, 0.25, True)[0],
            lambda x: aten.native_dropout.default(x, 0.25, None)[1],
        ]
    ones = torch.ones(N)
    expected, actual = run(calls, ones)
    assert_shapes_and_dtypes(expected[:1], actual[:1])
    out = np.array(actual[0])
    assert np.all(np.isclose(out, 0.0) | np.isclose(out, 1 / 0.75))
    assert abs((out == 0).mean() - 0.25) < 0.02
    if op == "aten.native_dropout.default":  # eager torch's mask dtype varies; export's is bool
        assert abs(np.array(actual[1]).astype(np.float32).mean() - 0.75) < 0.02


# ---------------------------------------------------------------------------------------
# Tracer-only ops and scalars read from tensors.


class _Item(torch.nn.Module):
    def forward(self, x):
        n = x.sum().item()
        torch._check(n > -1000)  # records _assert_scalar (and a sym op)
        return x * n


class _SizeFromData(torch.nn.Module):
    def forward(self, x):
        n = x.max().item()
        torch._check_is_size(n)
        return torch.zeros(n) + 1


@pytest.mark.parametrize(
    "op", ["aten.item.default", "aten._assert_scalar.default", "aten._local_scalar_dense.default"]
)
def test_item_and_asserts(op):
    for module, x in ((_Item(), torch.randn(3, 4)), (_SizeFromData(), torch.tensor([3, 2]))):
        generated = harness.generate(module, (x,))
        assert "_assert_scalar" not in generated["source"]
        harness.assert_close(module(x), harness.run_source(generated["source"], (x,)), 1e-5)
    if op == "aten._local_scalar_dense.default":
        check_cases(overload(op), [case(torch.tensor(2.5)), case(torch.tensor(3))])
