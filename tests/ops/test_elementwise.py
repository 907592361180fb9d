"""Elementwise ops (unary math, arithmetic, comparisons, activations) against torch eager.

Each test exports one module that calls the op on several inputs at once (shapes, dtypes,
broadcasting, 0-d, empty and non-contiguous inputs), so that one export covers a batch of
cases; dtypes must match torch exactly, not only in kind.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ops import harness

aten = torch.ops.aten
HALF = (torch.float16, torch.bfloat16)


def overload(name: str):
    """torch.ops.aten.<op>.<overload> for "aten.<op>.<overload>"."""
    _, op, variant = name.split(".")
    return getattr(getattr(aten, op), variant)


_TENSOR = object()  # marks where the next tensor input goes in a case's argument template


class _Cases(torch.nn.Module):
    """Several calls of one op, each with its own tensors, returned as a tuple. Plain calls,
    no submodule per case: export is a quarter faster without the module stack."""

    def __init__(self, op, calls):
        super().__init__()
        self.op = op
        self.calls = calls  # (template, kwargs, transpose, tensor count) per case

    def forward(self, *tensors):
        outputs, inputs = [], iter(tensors)
        for template, kwargs, transpose, _ in self.calls:
            args = []
            for item in template:
                if item is _TENSOR:
                    tensor = next(inputs)
                    item = tensor.transpose(-1, -2) if transpose else tensor
                args.append(item)
            outputs.append(self.op(*args, **kwargs))
        return tuple(outputs)


def _mlx_dtype_name(value) -> str:
    return str(value.dtype).removeprefix("mlx.core.")


def _assert_same_dtypes(expected, actual, path="out"):
    if isinstance(expected, (tuple, list)):
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _assert_same_dtypes(e, a, f"{path}[{index}]")
    elif isinstance(expected, torch.Tensor):
        torch_name = str(expected.dtype).removeprefix("torch.")
        assert _mlx_dtype_name(actual) == torch_name, (
            f"{path}: {actual.dtype} vs torch {torch_name}"
        )


def check_cases(op, cases, atol=None, rtol=0.0, source_has=None):
    """Like harness.check_op for a list of (args, kwargs, transpose_inputs) cases at once."""
    calls, tensors, expected = [], [], []
    for args, kwargs, transpose in cases:
        template, inputs = [], []
        for arg in args:
            if isinstance(arg, torch.Tensor):
                inputs.append(arg.transpose(-1, -2).contiguous() if transpose else arg)
                template.append(_TENSOR)
            else:
                template.append(arg)
        calls.append((template, kwargs, transpose, len(inputs)))
        tensors.extend(inputs)
    module = _Cases(op, calls)
    with torch.no_grad():
        expected = list(module(*tensors))
    generated = harness.generate(module, tuple(tensors))
    actual = harness.run_source(generated["source"], tuple(tensors))
    assert len(actual) == len(expected)
    for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
        half = any(isinstance(t, torch.Tensor) and t.dtype in HALF for t in cases[index][0])
        case_atol, case_rtol = (1e-2, 1e-2) if half else (atol or 1e-5, rtol)
        harness.assert_close(e, a, case_atol, case_rtol, f"case {index}")
    _assert_same_dtypes(tuple(expected), actual)
    if source_has is not None:
        assert source_has in generated["source"], generated["source"]
    return generated["source"]


def case(*args, transpose=False, **kwargs):
    return (args, kwargs, transpose)


def _values(shape, low, high, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(dtype)


def float_cases(low=-3.0, high=3.0, ints=True, half=True):
    """Inputs of a unary op: float32 of several shapes (0-d, empty, non-contiguous), half
    types, and int64 (whose result torch makes float32)."""
    cases = [
        case(_values((2, 3, 5), low, high, seed=1), transpose=True),
        case(_values((), low, high, seed=2)),
        case(_values((0, 3), low, high)),
    ]
    if half:
        cases += [case(_values((4, 6), low, high, dtype, seed=3)) for dtype in HALF]
    if ints:
        cases.append(case(_values((5,), max(low, -4), high + 1, seed=5).floor().to(torch.int64)))
    return cases


# ---------------------------------------------------------------------------------------
# Unary math whose result is float (ints promote to float32): (op, low, high, int inputs).

FLOAT_UNARY = [
    ("aten.exp.default", -3, 3, True),
    ("aten.exp2.default", -3, 3, True),
    ("aten.expm1.default", -3, 3, True),
    ("aten.log.default", 0.1, 5, True),
    ("aten.log2.default", 0.1, 5, True),
    ("aten.log10.default", 0.1, 5, True),
    ("aten.log1p.default", -0.9, 5, False),
    ("aten.sqrt.default", 0, 5, True),
    ("aten.rsqrt.default", 0.2, 5, False),
    ("aten.reciprocal.default", 0.5, 5, False),
    ("aten.sin.default", -3, 3, True),
    ("aten.cos.default", -3, 3, True),
    ("aten.tan.default", -1.2, 1.2, True),
    ("aten.asin.default", -0.95, 0.95, False),
    ("aten.acos.default", -0.95, 0.95, False),
    ("aten.atan.default", -3, 3, True),
    ("aten.sinh.default", -2, 2, True),
    ("aten.cosh.default", -2, 2, True),
    ("aten.tanh.default", -3, 3, True),
    ("aten.asinh.default", -3, 3, True),
    ("aten.acosh.default", 1.1, 5, True),
    ("aten.atanh.default", -0.9, 0.9, False),
    ("aten.sinc.default", -3, 3, True),
    ("aten.deg2rad.default", -180, 180, True),
    ("aten.rad2deg.default", -3, 3, True),
    ("aten.erf.default", -2, 2, True),
    ("aten.erfc.default", -2, 2, True),
    ("aten.erfinv.default", -0.9, 0.9, False),
    ("aten.special_ndtri.default", 0.05, 0.95, None),  # torch has no half ndtri
    ("aten.sigmoid.default", -5, 5, True),
    ("aten.special_expit.default", -5, 5, True),
    ("aten.logit.default", 0.05, 0.95, False),
]


@pytest.mark.parametrize("op, low, high, ints", FLOAT_UNARY)
def test_float_unary(op, low, high, ints):
    check_cases(overload(op), float_cases(low, high, bool(ints), half=ints is not None))


def test_sinc_at_zero_and_logit_eps():
    check_cases(aten.sinc.default, [case(torch.tensor([0.0, 0.5, -1.0]))])
    check_cases(
        aten.logit.default,
        [case(torch.tensor([0.0, 1e-8, 0.5, 1.0]), 1e-6), case(torch.rand(3, 4))],
    )


# Unary ops that keep the dtype (ints and bools where torch takes them).
SAME_UNARY = [
    ("aten.abs.default", [torch.int64, torch.int32]),
    ("aten.neg.default", [torch.int64]),
    ("aten.positive.default", [torch.int64]),
    ("aten.square.default", [torch.int64]),
    ("aten.floor.default", [torch.int64]),
    ("aten.ceil.default", [torch.int64]),
    ("aten.trunc.default", [torch.int64]),
    ("aten.fix.default", [torch.int64]),
    ("aten.frac.default", []),
    ("aten.round.default", [torch.int64]),
    ("aten.sign.default", [torch.int64, torch.bool]),
    ("aten.sgn.default", [torch.int64]),
    ("aten.relu.default", [torch.int64]),
    ("aten.relu6.default", []),
    ("aten.silu.default", []),
    ("aten.mish.default", []),
    ("aten.hardswish.default", []),
    ("aten.hardsigmoid.default", []),
    ("aten.selu.default", []),
    ("aten.log_sigmoid.default", []),
    ("aten.bitwise_not.default", [torch.int64, torch.int32, torch.bool]),
]


def _int_input(dtype):
    if dtype == torch.bool:
        return torch.tensor([[True, False, True], [False, False, True]])
    return torch.arange(-6, 6, dtype=dtype).reshape(3, 4)


@pytest.mark.parametrize("op, int_dtypes", SAME_UNARY)
def test_same_dtype_unary(op, int_dtypes):
    cases = [case(_int_input(dtype)) for dtype in int_dtypes]
    if op != "aten.bitwise_not.default":
        cases += float_cases(-7, 7, ints=False)
    check_cases(overload(op), cases)


def test_round_half_to_even_and_decimals():
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -1.25])
    check_cases(aten.round.default, [case(halves), case(halves.half())])


@pytest.mark.parametrize("op", ["aten.round.decimals"])
def test_round_decimals(op):
    values = torch.tensor([0.125, 0.375, 1.2345, -2.675, 1234.5, 1250.0])
    check_cases(
        overload(op),
        [
            case(values, decimals=2),
            case(values, decimals=0),
            case(values, decimals=-2),
            case(torch.randn(3, 4), decimals=1, transpose=True),
            case(torch.randn(4, 5).half(), decimals=1),
            case(torch.randn(0, 2), decimals=3),
        ],
    )


SPECIAL = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.5, 2.0])


@pytest.mark.parametrize(
    "op",
    [
        "aten.isnan.default",
        "aten.isinf.default",
        "aten.isposinf.default",
        "aten.isneginf.default",
        "aten.isfinite.default",
        "aten.isreal.default",
        "aten.signbit.default",
        "aten.logical_not.default",
    ],
)
def test_predicates(op):
    check_cases(
        overload(op),
        [
            case(SPECIAL),
            case(SPECIAL.half()),
            case(SPECIAL[1:].bfloat16()),  # NaN's sign bit does not survive bfloat16 -> float
            case(torch.arange(-3, 3)),
            case(torch.randn(2, 3, 4), transpose=True),
            case(torch.tensor(float("nan"))),
            case(torch.randn(0, 3)),
        ],
    )


@pytest.mark.parametrize("op", ["aten.nan_to_num.default"])
def test_nan_to_num(op):
    check_cases(
        overload(op),
        [
            case(SPECIAL),
            case(SPECIAL, 1.0, 100.0, -100.0),
            case(SPECIAL.half(), 2.0),
            case(torch.arange(4)),
        ],
    )


# ---------------------------------------------------------------------------------------
# Activations with parameters.

ACTIVATIONS = [
    ("aten.gelu.default", [{}, {"approximate": "tanh"}, {"approximate": "none"}]),
    ("aten.hardtanh.default", [{}, {"min_val": -0.5, "max_val": 2.0}]),
    ("aten.leaky_relu.default", [{}, {"negative_slope": 0.2}, {"negative_slope": 1.5}]),
    ("aten.elu.default", [{}, {"alpha": 0.5}, {"alpha": 1.2, "scale": 2.0, "input_scale": 0.5}]),
    ("aten.celu.default", [{}, {"alpha": 0.5}]),
    ("aten.softplus.default", [{}, {"beta": 2.0, "threshold": 3.0}, {"beta": 0.5}]),
    ("aten.threshold.default", [{"threshold": 0.1, "value": 2.0}, {"threshold": -1, "value": 0}]),
    ("aten.hardshrink.default", [{}, {"lambd": 1.0}]),
    ("aten.softshrink.default", [{}, {"lambd": 1.0}]),
    ("aten.rrelu.default", [{}, {"lower": 0.1, "upper": 0.3}]),
]


@pytest.mark.parametrize("op, variants", ACTIVATIONS)
def test_activation(op, variants):
    cases = []
    for index, kwargs in enumerate(variants):
        cases.append(case(_values((2, 3, 4), -5, 5, seed=index), transpose=True, **kwargs))
    base = variants[0]
    cases += [case(x, **base) for x in (_values((), -2, 2), _values((0, 4), -1, 1))]
    cases += [case(_values((4, 5), -5, 5, dtype), **base) for dtype in HALF]
    cases.append(case(torch.tensor([float("nan"), 0.0, -0.0, 0.5, -0.5, 1.0, -1.0]), **base))
    check_cases(overload(op), cases)


def test_rrelu_training_slopes():
    x = -torch.rand(2000) - 0.5
    module = _Cases(aten.rrelu.default, [([_TENSOR, 0.1, 0.3, True], {}, False, 1)])
    out = np.array(harness.run_source(harness.generate(module, (x,))["source"], (x,))[0])
    slopes = out / x.numpy()
    assert slopes.min() >= 0.1 - 1e-6 and slopes.max() <= 0.3 + 1e-6 and slopes.std() > 0.03


@pytest.mark.parametrize("op", ["aten.glu.default"])
def test_glu(op):
    check_cases(
        overload(op),
        [
            case(torch.randn(3, 8)),
            case(torch.randn(4, 6, 5), 1),
            case(torch.randn(4, 6, 5), -2, transpose=True),
            case(torch.randn(6, 2), 0),
            case(torch.randn(4, 6).half()),
            case(torch.randn(0, 4)),
        ],
    )


@pytest.mark.parametrize("op", ["aten.prelu.default"])
def test_prelu(op):
    check_cases(
        overload(op),
        [
            case(torch.randn(2, 3, 4, 5), torch.rand(3)),
            case(torch.randn(2, 3, 4), torch.rand(1)),
            case(torch.randn(2, 3), torch.rand(3)),
        ],
    )


# ---------------------------------------------------------------------------------------
# Binary arithmetic.


def binary_cases(low=-3.0, high=3.0, nonzero=False, ints=True, scalar=2.5, int_scalar=3):
    """(self, other) pairs: broadcasting, half types, 0-d, empty, non-contiguous, ints."""

    def values(shape, dtype=torch.float32, seed=0):
        out = _values(shape, low, high, dtype, seed)
        if nonzero:
            out = torch.where(out.abs() < 0.25, torch.full_like(out, 0.5), out)
        return out

    cases = [
        case(values((2, 1, 4), seed=2), values((3, 1), seed=3)),
        case(values((2, 3, 4), seed=4), values((2, 3, 4), seed=5), transpose=True),
        case(values((4, 5), torch.bfloat16, 8), values((5,), torch.bfloat16, 9)),
        case(values((4, 5), torch.float16, 10), values((), seed=11)),  # 0-d float32 loses
        case(values((0, 3)), values((3,), seed=14)),
    ]
    if ints:
        a = torch.tensor([[-7, -5, 5, 7], [9, -9, 1, 0]])
        b = torch.tensor([2, -2, 3, -3])
        cases += [
            case(a.int(), b),  # int32 with int64 -> int64
            case(a, values((4,), seed=15)),  # int with float -> float32
        ]
    return cases


BINARY = [
    # op, value range, divisor must be nonzero, int inputs
    ("aten.add.Tensor", {}),
    ("aten.sub.Tensor", {}),
    ("aten.mul.Tensor", {}),
    ("aten.div.Tensor", {"nonzero": True}),
    ("aten.true_divide.Tensor", {"nonzero": True}),
    ("aten.remainder.Tensor", {"nonzero": True}),
    ("aten.fmod.Tensor", {"nonzero": True}),
    ("aten.floor_divide.default", {"nonzero": True}),
    ("aten.maximum.default", {}),
    ("aten.minimum.default", {}),
    ("aten.max.other", {}),
    ("aten.min.other", {}),
    ("aten.fmax.default", {"ints": False}),
    ("aten.fmin.default", {"ints": False}),
    ("aten.clamp_min.Tensor", {}),
    ("aten.clamp_max.Tensor", {}),
    ("aten.atan2.default", {}),
    ("aten.hypot.default", {"ints": False}),
    ("aten.copysign.Tensor", {}),
    ("aten.logaddexp.default", {"ints": False}),
    ("aten.logaddexp2.default", {"ints": False}),
    ("aten.xlogy.Tensor", {"low": 0.0}),
    ("aten.pow.Tensor_Tensor", {"low": 0.1, "ints": False}),
    ("aten.heaviside.default", {}),
]


def _tensor_pairs(cases):
    return [c for c in cases if all(isinstance(a, torch.Tensor) for a in c[0])]


@pytest.mark.parametrize("op, options", BINARY)
def test_binary_tensor(op, options):
    cases = _tensor_pairs(binary_cases(**options))
    if op == "aten.heaviside.default":  # both operands must share the dtype
        cases = [c for c in cases if c[0][0].dtype == c[0][1].dtype]
    check_cases(overload(op), cases)


SCALAR_BINARY = [
    ("aten.add.Scalar", {}),
    ("aten.sub.Scalar", {}),
    ("aten.mul.Scalar", {}),
    ("aten.div.Scalar", {}),
    ("aten.true_divide.Scalar", {}),
    ("aten.remainder.Scalar", {}),
    ("aten.fmod.Scalar", {}),
    ("aten.floor_divide.Scalar", {}),
    ("aten.pow.Tensor_Scalar", {"low": 0.1}),
    ("aten.clamp_min.default", {}),
    ("aten.clamp_max.default", {}),
    ("aten.copysign.Scalar", {"int_scalar": -3}),
]


@pytest.mark.parametrize("op, options", SCALAR_BINARY)
def test_binary_scalar(op, options):
    low = options.get("low", -3.0)
    x = _values((3, 4), low, 3)
    ints = torch.tensor([[-7, -5, 5, 7], [9, -9, 1, 0]])
    scalar = -options.get("int_scalar", 3) if op != "aten.pow.Tensor_Scalar" else 2
    cases = [
        case(x, 3),
        case(_values((2, 3, 4), low, 3), -0.7, transpose=True),
        case(x.half(), 1.5),
        case(x.bfloat16(), 2),
        case(_values((), low, 3), 2),
        case(_values((0, 2), low, 3), 2),
        case(ints.abs() if op.startswith("aten.pow") else ints, scalar),
        case(ints.abs() if op.startswith("aten.pow") else ints, 2.5),
    ]
    check_cases(overload(op), cases)


def test_pow_integer_and_scalar_base():
    ints = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    check_cases(
        aten.pow.Tensor_Tensor, [case(ints, torch.tensor([0, 1, 2, 3])), case(ints.int(), ints)]
    )
    check_cases(
        aten.pow.Scalar,
        [
            case(2, ints),
            case(2.5, ints),
            case(2, torch.randn(3, 4)),
            case(0.5, torch.randn(3, 4).half()),
            case(3, torch.randn(0, 2)),
        ],
    )


@pytest.mark.parametrize("op", ["aten.add.Tensor", "aten.sub.Tensor"])
def test_alpha(op):
    x, y = torch.randn(3, 4), torch.randn(4)
    ints = torch.arange(12).reshape(3, 4)
    check_cases(
        overload(op),
        [
            case(x, y, alpha=2),
            case(x, y, alpha=0.5),
            case(ints, ints, alpha=3),
            case(x, 2.0, alpha=2),
        ],
    )


@pytest.mark.parametrize("op", ["aten.rsub.Scalar", "aten.rsub.Tensor"])
def test_rsub(op):
    x = torch.randn(3, 4)
    other = 2.5 if op.endswith("Scalar") else torch.randn(4)
    ints = torch.arange(12).reshape(3, 4)
    int_other = 3 if op.endswith("Scalar") else torch.arange(4)
    check_cases(
        overload(op),
        [
            case(x, other),
            case(x, other, alpha=2),
            case(ints, int_other),
            case(ints, int_other, alpha=2),
            case(x.half(), other if op.endswith("Scalar") else other.half()),
            case(torch.randn(0, 4), other),
        ],
    )


def test_division_sign_rules():
    """Exact quotient, floor and trunc rounding, remainder and fmod signs, on floats whose
    quotient rounds up to a whole number (1 // 0.1 == 9) and on negative ints."""
    a = torch.tensor([1.0, -1.0, 5.5, -5.5, 7.0, -7.0, 0.0, 3.0, -0.3])
    b = torch.tensor([0.1, 0.1, -2.0, 2.0, -3.0, 2.0, 3.0, 0.0, 0.1])
    ia = torch.tensor([-7, -5, 5, 7, 0, -6, 6])
    ib = torch.tensor([2, -2, 3, -3, 2, 3, -4])
    for op in (aten.floor_divide.default, aten.remainder.Tensor, aten.fmod.Tensor):
        check_cases(op, [case(a, b), case(ia, ib), case(ia.int(), ib.int())])
    check_cases(
        aten.div.Tensor_mode,
        [
            case(a, b, rounding_mode="floor"),
            case(a, b, rounding_mode="trunc"),
            case(ia, ib, rounding_mode="floor"),
            case(ia, ib, rounding_mode="trunc"),
            case(ia, ib.float(), rounding_mode="trunc"),
            case(ia, ib, rounding_mode=None),
            case(torch.randn(2, 3, 4), torch.rand(3, 1) + 3, rounding_mode="floor", transpose=True),
        ],
    )
    check_cases(
        aten.div.Scalar_mode,
        [
            case(a, 0.1, rounding_mode="floor"),
            case(ia, -4, rounding_mode="trunc"),
            case(ia, 4, rounding_mode="floor"),
            case(a, -0.7, rounding_mode="trunc"),
        ],
    )
    check_cases(aten.remainder.Scalar_Tensor, [case(5, ib), case(-5.5, a[:6] + 3)])
    check_cases(aten.div.Tensor, [case(ia, ib), case(ia.int(), 2)])  # ints divide to float32


# ---------------------------------------------------------------------------------------
# Three operands and clamps.


@pytest.mark.parametrize("op", ["aten.lerp.Scalar", "aten.lerp.Tensor"])
def test_lerp(op):
    start, end = torch.randn(3, 4), torch.randn(3, 4)
    weights = [0.3, 0.7, -0.5, 1.0] if op.endswith("Scalar") else [torch.rand(4) * 2 - 0.5]
    cases = [case(start, end, w) for w in weights]
    cases.append(
        case(start.half(), end.half(), weights[0] if op.endswith("Scalar") else weights[0].half())
    )
    weight = weights[0] if op.endswith("Scalar") else torch.rand(3, 1)
    cases.append(case(torch.randn(2, 3, 4), torch.randn(2, 3, 4), weight, transpose=True))
    check_cases(overload(op), cases)


@pytest.mark.parametrize("op", ["aten.addcmul.default", "aten.addcdiv.default"])
def test_addc(op):
    x, y, z = torch.randn(3, 4), torch.randn(4), torch.rand(3, 1) + 0.5
    check_cases(
        overload(op),
        [case(x, y, z), case(x, y, z, value=0.5), case(x.half(), y.half(), z.half(), value=2)],
    )


@pytest.mark.parametrize("op", ["aten.clamp.default", "aten.clamp.Tensor"])
def test_clamp(op):
    x = torch.cat([torch.randn(3, 4), torch.tensor([[float("nan"), 1.0, -1.0, 0.0]])])
    ints = torch.arange(-6, 6).reshape(3, 4)
    if op == "aten.clamp.default":
        cases = [
            case(x, -0.5, 0.5),
            case(x, -0.5),
            case(x, max=0.5),
            case(x, 1.0, -1.0),  # min > max: everything is max
            case(x.half(), -0.5, 0.5),
            case(ints, -2, 3),
            case(ints, -2.5, 3.5),  # int tensor, float bounds: float32
            case(torch.randn(2, 3, 4), -0.1, 0.2, transpose=True),
            case(torch.randn(0, 3), 0.0, 1.0),
            case(torch.tensor(3.0), 0.0, 1.0),
        ]
    else:
        low, high = torch.full((4,), -0.5), torch.rand(4, 1)
        cases = [
            case(x, low, high),
            case(x, low),
            case(ints, torch.tensor([-1, 0, 1, 2]), torch.tensor(3)),
            case(torch.randn(2, 3, 4), torch.zeros(3, 1), torch.ones(1, 4), transpose=True),
        ]
    check_cases(overload(op), cases)


@pytest.mark.parametrize(
    "op",
    ["aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar"],
)
def test_where(op):
    cond = torch.randn(3, 4) > 0
    x, y = torch.randn(3, 4), torch.randn(4)
    ints = torch.arange(12).reshape(3, 4)
    if op == "aten.where.self":
        cases = [
            case(cond, x, y),
            case(cond, ints, y),  # int with float: float32
            case(cond, ints, torch.arange(4).int()),
            case(cond, x.half(), torch.tensor(2.0)),  # 0-d float32 does not promote half
            case(
                torch.randn(2, 3, 4) > 0, torch.randn(2, 3, 4), torch.randn(2, 3, 4), transpose=True
            ),
            case(torch.randn(0, 3) > 0, torch.randn(0, 3), torch.randn(3)),
        ]
    elif op == "aten.where.ScalarSelf":
        cases = [
            case(cond, 1.5, x),
            case(cond, 2, ints),
            case(cond, 2.5, ints),
            case(cond, 0.5, x.half()),
        ]
    elif op == "aten.where.ScalarOther":
        cases = [
            case(cond, x, 0.0),
            case(cond, ints, -1),
            case(cond, ints, 0.5),
            case(cond, x.bfloat16(), 1.0),
        ]
    else:
        cases = [case(cond, 1.0, 0.0), case(cond, 1, 0), case(cond, True, False)]
    check_cases(overload(op), cases)


# ---------------------------------------------------------------------------------------
# Comparisons, logic, bits.

COMPARISONS = ["eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize(
    "op", [f"aten.{name}.{kind}" for name in COMPARISONS for kind in ("Tensor", "Scalar")]
)
def test_comparison(op):
    x = torch.randint(-3, 3, (3, 4)).float()
    if op.endswith("Tensor"):
        cases = [
            case(x.half(), torch.randint(-3, 3, (4,)).half()),
            case(torch.arange(12).reshape(3, 4), torch.tensor(5)),
            case(torch.arange(12).reshape(3, 4), torch.full((4,), 5.5)),
            case(x.half(), torch.tensor(0.1)),  # compared in float16 (0-d float32 loses)
            case(torch.randn(2, 3, 4), torch.randn(2, 3, 4), transpose=True),
            case(torch.randn(0, 2), torch.randn(2)),
            case(SPECIAL, SPECIAL.flip(0)),
        ]
    else:
        cases = [
            case(x, 0.5),
            case(torch.arange(12).reshape(3, 4), 5),
            case(torch.arange(12).reshape(3, 4), 5.5),
            case(x.half(), 0.1),
            case(torch.randn(0, 2), 0.0),
            case(torch.tensor(1.0), 1.0),
        ]
    check_cases(overload(op), cases)


@pytest.mark.parametrize("op", ["aten.isclose.default"])
def test_isclose(op):
    a = torch.tensor([1.0, 1.0 + 1e-6, float("inf"), float("nan"), 2.0, -0.0])
    b = torch.tensor([1.0, 1.0, float("inf"), float("nan"), 2.1, 0.0])
    check_cases(overload(op), [case(a, b), case(a, b, 1e-2, 0.2), case(a, b, equal_nan=True)])


@pytest.mark.parametrize(
    "op", ["aten.logical_and.default", "aten.logical_or.default", "aten.logical_xor.default"]
)
def test_logical(op):
    b1 = torch.tensor([[True, False, True, False]])
    b2 = torch.tensor([[True], [False]])
    check_cases(
        overload(op),
        [
            case(b1, b2),
            case(torch.tensor([0.0, 1.5, float("nan"), -2.0]), torch.tensor([1.0, 0.0, 0.0, 3.0])),
            case(torch.arange(-2, 2), torch.tensor([1, 0, 0, 1])),
            case(torch.randn(2, 3, 4) > 0, torch.randn(2, 3, 4) > 0, transpose=True),
            case(torch.zeros(0, 2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)),
        ],
    )


BITWISE = [
    f"aten.{name}.{kind}"
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor")
    for kind in ("Tensor", "Scalar")
]
BITWISE += [
    f"aten.{name}.{kind}"
    for name in ("__and__", "__or__", "__xor__")
    for kind in ("Tensor", "Scalar")
]


@pytest.mark.parametrize("op", BITWISE)
def test_bitwise(op):
    a = torch.tensor([[-7, -5, 5, 7], [12, -1, 0, 255]])
    b = torch.tensor([3, -2, 6, 1])
    booleans = torch.tensor([[True, False, True, False]]), torch.tensor([[True], [False]])
    if op.endswith("Tensor"):
        cases = [
            case(a, b),
            case(a.int(), b),
            case(a.to(torch.uint8), b.to(torch.uint8)),
            case(*booleans),
        ]
        cases.append(
            case(torch.randint(0, 9, (2, 3, 4)), torch.randint(0, 9, (2, 3, 4)), transpose=True)
        )
    else:
        cases = [case(a, 6), case(a.int(), -3), case(booleans[0], True), case(booleans[0], 1)]
    check_cases(overload(op), cases)


SHIFTS = [
    "aten.bitwise_left_shift.Tensor",
    "aten.bitwise_left_shift.Tensor_Scalar",
    "aten.bitwise_right_shift.Tensor",
    "aten.bitwise_right_shift.Tensor_Scalar",
    "aten.__lshift__.Tensor",
    "aten.__lshift__.Scalar",
    "aten.__rshift__.Tensor",
    "aten.__rshift__.Scalar",
]


@pytest.mark.parametrize("op", SHIFTS)
def test_shift(op):
    a = torch.tensor([[-8, -5, 5, 8], [12, -1, 0, 255]])
    if op.endswith("Tensor"):
        cases = [
            case(a, torch.tensor([0, 1, 2, 3])),
            case(a.int(), torch.tensor([1, 2, 3, 4]).int()),
        ]
    else:
        cases = [case(a, 2), case(a.int(), 1)]
    check_cases(overload(op), cases)


# ---------------------------------------------------------------------------------------
# In-place overloads: the graph names them, normalise_target maps them to the functional op.

INPLACE = [
    # in-place target, functional target it replaces, op, args
    ("aten.relu_.default", "aten.relu.default", (torch.randn(3, 4),)),
    ("aten.add_.Tensor", "aten.add.Tensor", (torch.randn(3, 4), torch.randn(4))),
    ("aten.sub_.Tensor", "aten.sub.Tensor", (torch.randn(3, 4), torch.randn(4))),
    ("aten.mul_.Tensor", "aten.mul.Tensor", (torch.randn(3, 4), torch.randn(4))),
    ("aten.div_.Tensor", "aten.div.Tensor", (torch.randn(3, 4), torch.rand(4) + 1)),
    ("aten.abs_.default", "aten.abs.default", (torch.randn(3, 4),)),
    ("aten.exp_.default", "aten.exp.default", (torch.randn(3, 4),)),
    ("aten.sigmoid_.default", "aten.sigmoid.default", (torch.randn(3, 4),)),
    ("aten.clamp_.default", "aten.clamp.default", (torch.randn(3, 4), -0.5, 0.5)),
    ("aten.clamp_.Tensor", "aten.clamp.Tensor", (torch.randn(3, 4), torch.zeros(4), torch.ones(4))),
    ("aten.gelu_.default", "aten.gelu.default", (torch.randn(3, 4),)),
    ("aten.leaky_relu_.default", "aten.leaky_relu.default", (torch.randn(3, 4), 0.2)),
    ("aten.hardtanh_.default", "aten.hardtanh.default", (torch.randn(3, 4),)),
    ("aten.logical_not_.default", "aten.logical_not.default", (torch.randn(3, 4) > 0,)),
    ("aten.pow_.Scalar", "aten.pow.Tensor_Scalar", (torch.rand(3, 4), 2)),
    ("aten.pow_.Tensor", "aten.pow.Tensor_Tensor", (torch.rand(3, 4), torch.rand(4))),
    ("aten.atan2.out", "aten.atan2.default", (torch.randn(3, 4), torch.randn(4))),
]


@pytest.mark.parametrize("inplace, functional, args", INPLACE)
def test_inplace_name(inplace, functional, args):
    tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
    template = [_TENSOR if isinstance(a, torch.Tensor) else a for a in args]
    module = _Cases(overload(functional), [(template, {}, False, len(tensors))])
    actual = harness.run_renamed(module, tensors, functional, inplace)
    with torch.no_grad():
        expected = module(*tensors)
    harness.assert_close(expected, actual, 1e-5)
    _assert_same_dtypes(expected, actual)


def test_math_import_when_used():
    source = check_cases(aten.deg2rad.default, [case(torch.randn(3))])
    assert "import math" in source
    assert math.pi  # the generated code uses math.pi
