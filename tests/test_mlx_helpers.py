"""torch2mlx.mlx_helpers on its own: the functions generated model.py files copy in, called
directly and compared with torch on the same inputs. (Every op test exercises them again
through generated code.)"""

from __future__ import annotations

import ast
import builtins
import inspect

import mlx.core as mx
import numpy as np
import pytest
import torch

from torch2mlx import mlx_helpers
from torch2mlx.comparison import judge, rule_for


def _mx(tensor: torch.Tensor) -> mx.array:
    return mx.array(tensor.numpy())


def _close(got: mx.array, expected: torch.Tensor, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.array(got), expected.numpy(), atol=atol, rtol=1e-6)


def test_each_helper_uses_only_mlx_math_and_other_helpers():
    """A helper is copied into model.py alone with the helpers it calls: any other name it
    reads at module level would be missing there."""
    tree = ast.parse(inspect.getsource(mlx_helpers))
    helpers = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    allowed = helpers | {"mx", "nn", "math"} | set(dir(builtins))
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        local = {arg.arg for arg in ast.walk(function) if isinstance(arg, ast.arg)}
        local |= {
            target.id
            for node in ast.walk(function)
            for target in ast.walk(node)
            if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store)
        }
        local |= {n.name for n in ast.walk(function) if isinstance(n, ast.FunctionDef)}
        reads = {
            node.id
            for node in ast.walk(function)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        }
        assert reads <= allowed | local, (function.name, reads - allowed - local)
    assert len(helpers) >= 60


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32])
def test_floor_and_trunc_division_round_as_torch(dtype):
    a = torch.tensor([7, -7, 7, -7, 1, 0], dtype=dtype)
    b = torch.tensor([2, 2, -2, -2, 3, 5], dtype=dtype)
    _close(mlx_helpers.floor_divide(_mx(a), _mx(b)), torch.div(a, b, rounding_mode="floor"))
    _close(mlx_helpers.trunc_divide(_mx(a), _mx(b)), torch.div(a, b, rounding_mode="trunc"))
    if dtype.is_floating_point:  # 1 // 0.1 is 9 in torch and Python, not 10
        one, tenth = torch.tensor([1.0]), torch.tensor([0.1])
        _close(mlx_helpers.floor_divide(_mx(one), _mx(tenth)), torch.floor_divide(one, tenth))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    [(3, 2, 1, 1, False), (3, 2, 1, 2, True), (2, 3, 0, 1, True)],
)
def test_max_pool_matches_torch_with_dilation_and_ceil_mode(
    kernel, stride, padding, dilation, ceil_mode
):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 9)
    expected = torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    got = mlx_helpers.max_pool(
        _mx(x.permute(0, 2, 3, 1)),  # channels-last, as generated code stores it
        (kernel, kernel),
        (stride, stride),
        (padding, padding),
        (dilation, dilation),
        ceil_mode,
    )
    _close(mx.transpose(got, (0, 3, 1, 2)), expected)


def test_slice_scatter_leaves_its_input_alone():
    x = torch.arange(24.0).reshape(2, 3, 4)
    src = -torch.ones(2, 3, 2)
    original = _mx(x)
    got = mlx_helpers.slice_scatter(original, _mx(src), 2, 1, 3, 1)
    _close(got, torch.slice_scatter(x, src, dim=2, start=1, end=3))
    _close(original, x)  # the caller's array is unchanged


def test_index_put_accumulates_repeated_indices_as_torch():
    x = torch.zeros(5)
    index = torch.tensor([0, 2, 2, 4])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = x.index_put((index,), values, accumulate=True)
    _close(mlx_helpers.index_put(_mx(x), [_mx(index)], _mx(values), True), expected)


def test_topk_returns_values_and_indices_as_torch():
    x = torch.tensor([[3.0, 1.0, 5.0, 2.0, 4.0]])
    values, indices = mlx_helpers.topk(_mx(x), 2, 1, True)
    expected = torch.topk(x, 2, dim=1)
    _close(values, expected.values)
    _close(indices, expected.indices)


def test_pooling_over_overlapping_dilated_windows():
    """Windows of 3 with dilation 2 over 5 positions overlap in a way MLX's CPU reductions
    misread when they reduce the strided view itself (mlx 0.32.4)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5)
    expected = torch.nn.functional.max_pool1d(x, 3, 1, 1, 2)
    got = mlx_helpers.max_pool(_mx(x.permute(0, 2, 1)), (3,), (1,), (1,), (2,), False)
    _close(mx.transpose(got, (0, 2, 1)), expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding", "dilation", "groups"),
    [
        (3, 2, 1, 1, 1, 1),
        (3, 2, 0, 0, 2, 2),
        # padding > dilation * (kernel - 1): MLX's own padding argument gives a short output
        (1, 2, 1, 0, 1, 1),
        (2, 3, 2, 2, 1, 2),
    ],
)
def test_conv_transpose_matches_torch(
    dims, kernel, stride, padding, output_padding, dilation, groups
):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *(5, 4, 3)[:dims])
    w = torch.randn(4, 6 // groups, *(kernel,) * dims)
    transpose = getattr(torch.nn.functional, f"conv_transpose{dims}d")
    expected = transpose(x, w, None, stride, padding, output_padding, groups, dilation)
    weight = mlx_helpers.grouped_transpose_weight(_mx(w), groups)  # (O, *K, I/g)
    got = mlx_helpers.conv_transpose(
        _mx(x.movedim(1, -1)),  # channels-last, as generated code stores it
        weight,
        (stride,) * dims,
        (padding,) * dims,
        (output_padding,) * dims,
        (dilation,) * dims,
        groups,
    )
    _close(mx.moveaxis(got, -1, 1), expected, atol=1e-5)


SCALARS = [0, 0.0, -0.0, 2, -3, 0.5, -2.5, 7.0, float("inf"), float("nan")]


def _matches(torch_value: float, helper_value: float) -> bool:
    """A scalar helper's number against torch's, by the one rule (float64): infinities and
    NaN where torch has them, the rest within rounding."""
    rule = rule_for("float64")
    return judge(np.array(torch_value), np.array(float(helper_value)), rule).passed


@pytest.mark.parametrize("base", SCALARS)
@pytest.mark.parametrize("exponent", [-0.5, 0.5, -1, -2, 2, 3, 1.5, -3])
def test_scalar_power_is_torchs_pow(base, exponent):
    """0.0 ** -0.5 is inf in torch, and raises in Python; (-2.5) ** 1.5 is nan in torch, a
    complex number in Python."""
    expected = torch.pow(torch.tensor(float(base), dtype=torch.float64), exponent).item()
    assert _matches(expected, mlx_helpers.scalar_power(base, exponent))


@pytest.mark.parametrize("a", SCALARS)
@pytest.mark.parametrize("b", [0, 0.0, -0.0, 4, -0.5])
def test_scalar_divide_and_sqrt_are_torchs(a, b):
    numerator = torch.tensor(float(a), dtype=torch.float64)
    expected = torch.div(numerator, torch.tensor(float(b), dtype=torch.float64)).item()
    assert _matches(expected, mlx_helpers.scalar_divide(a, b))
    assert _matches(torch.sqrt(numerator).item(), mlx_helpers.scalar_sqrt(a))
