"""Numerical checks of the convolution, pooling, upsampling, padding and sampling ops
(cpp/src/ops/conv_pool.cpp) against torch eager.

Each test's first parameter is the ATen overload it covers, so that test ids name it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ops.harness import assert_close, check_op, generate

aten = torch.ops.aten


def aten_op(name: str):
    """The ATen overload a test id names: "aten.conv2d.default" -> aten.conv2d.default."""
    _, op, kind = name.split(".")
    return getattr(getattr(aten, op), kind)


def _randn(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def first_output(op):
    """The op's output 0: the indices of *_with_indices ops are not computed."""

    def call(*args, **kwargs):
        return op(*args, **kwargs)[0]

    return call


def _mlx_weight(tensor: torch.Tensor, layout: str, groups: int) -> np.ndarray:
    """A state-dict tensor as the package writer stores it (cpp/src/registry.cpp)."""
    array = tensor.detach().numpy()
    if layout == "conv_weight":  # (O, I, *K) -> (O, *K, I)
        return np.moveaxis(array, 1, -1)
    if layout == "conv_transpose_weight":  # (I, O/g, *K) -> (O, *K, I/g), per group
        i, o, *k = array.shape
        grouped = np.moveaxis(array.reshape(groups, i // groups, o, *k), 1, -1)
        return grouped.reshape(groups * o, *k, i // groups)
    return array


def check_module(module: torch.nn.Module, *inputs, atol=1e-5):
    """Exports ``module`` itself (its parameters stay parameters, so weights go through the
    conversion-time layout), loads the converted weights and compares with torch."""
    import mlx.core as mx

    module = module.eval()
    with torch.no_grad():
        expected = module(*inputs)
    generated = generate(module, inputs)
    state = module.state_dict()
    weights = [
        (name, mx.array(_mlx_weight(state[source], layout, groups)))
        for name, source, layout, groups in generated["weights"]
    ]
    namespace: dict = {"__name__": "module_test"}
    exec(compile(generated["source"], "model.py", "exec"), namespace)
    model = namespace["Model"]()
    model.load_weights(weights)
    actual = model(*(mx.array(x.numpy()) for x in inputs))
    mx.eval(actual)
    assert_close(expected, actual, atol)
    return generated["source"]


# --- convolutions -----------------------------------------------------------------------

# (op, input shape, weight shape, bias, stride, padding, dilation, groups)
CONV_CASES = [
    ("aten.conv1d.default", (2, 4, 11), (6, 4, 3), True, [1], [0], [1], 1),
    ("aten.conv1d.default", (2, 4, 11), (6, 2, 3), False, [2], [1], [2], 2),
    ("aten.conv1d.default", (2, 4, 11), (4, 1, 5), True, [1], [2], [1], 4),  # depthwise
    ("aten.conv1d.default", (4, 11), (6, 4, 3), True, [1], [1], [1], 1),  # unbatched
    ("aten.conv2d.default", (2, 3, 9, 8), (5, 3, 3, 3), True, [1, 1], [1, 1], [1, 1], 1),
    ("aten.conv2d.default", (2, 4, 9, 8), (6, 2, 3, 2), True, [2, 1], [1, 0], [1, 2], 2),
    ("aten.conv2d.default", (1, 6, 7, 7), (6, 1, 3, 3), False, [2, 2], [1, 1], [1, 1], 6),
    ("aten.conv2d.default", (2, 3, 5, 5), (4, 3, 1, 1), True, [1, 1], [0, 0], [1, 1], 1),
    ("aten.conv2d.default", (3, 9, 8), (5, 3, 3, 3), True, [1, 1], [1, 1], [1, 1], 1),
    ("aten.conv2d.default", (0, 3, 9, 8), (5, 3, 3, 3), True, [1, 1], [1, 1], [1, 1], 1),
    (
        "aten.conv3d.default",
        (2, 2, 5, 6, 7),
        (4, 2, 3, 3, 3),
        True,
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        1,
    ),
    (
        "aten.conv3d.default",
        (1, 4, 6, 6, 6),
        (4, 2, 2, 3, 1),
        False,
        [2, 1, 1],
        [0, 1, 0],
        [1, 2, 1],
        2,
    ),
    (
        "aten.conv3d.default",
        (2, 5, 6, 7),
        (3, 2, 3, 3, 3),
        True,
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        1,
    ),
]


@pytest.mark.parametrize("op, shape, weight, bias, stride, padding, dilation, groups", CONV_CASES)
def test_conv(op, shape, weight, bias, stride, padding, dilation, groups):
    overload = aten_op(op)
    tensors = (_randn(*shape), _randn(*weight)) + ((_randn(weight[0]),) if bias else ())
    check_op(overload, *tensors, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("op", ["aten.conv2d.default", "aten.convolution.default"])
def test_conv_noncontiguous_float16(op):
    x, w = _randn(2, 3, 8, 8), _randn(4, 3, 3, 3)
    if op == "aten.conv2d.default":
        check_op(aten.conv2d.default, x, w, padding=[1, 1], transpose_inputs=True)
        check_op(aten.conv2d.default, x.half(), w.half(), padding=[1, 1])
    else:
        check_op(
            aten.convolution.default,
            x,
            w,
            bias=None,
            stride=[1, 1],
            padding=[1, 1],
            dilation=[1, 1],
            transposed=False,
            output_padding=[0, 0],
            groups=1,
            transpose_inputs=True,
        )


# (op, input shape, weight shape, stride, padding string, dilation, groups)
CONV_PADDING_CASES = [
    ("aten.conv1d.padding", (2, 4, 10), (6, 4, 3), [1], "same", [1], 1),
    ("aten.conv1d.padding", (2, 4, 10), (6, 4, 4), [1], "same", [2], 1),  # even window
    ("aten.conv1d.padding", (2, 4, 10), (6, 2, 3), [2], "valid", [1], 2),
    ("aten.conv1d.padding", (4, 10), (6, 4, 4), [1], "same", [1], 1),  # unbatched
    ("aten.conv2d.padding", (2, 3, 8, 9), (4, 3, 3, 4), [1, 1], "same", [1, 1], 1),
    ("aten.conv2d.padding", (2, 4, 8, 9), (4, 1, 2, 2), [1, 1], "same", [2, 1], 4),
    ("aten.conv2d.padding", (2, 3, 8, 9), (4, 3, 3, 3), [2, 1], "valid", [1, 1], 1),
    ("aten.conv3d.padding", (1, 2, 5, 6, 7), (3, 2, 2, 3, 4), [1, 1, 1], "same", [1, 1, 1], 1),
    ("aten.conv3d.padding", (1, 2, 5, 6, 7), (3, 2, 2, 3, 2), [1, 1, 1], "valid", [1, 1, 1], 1),
    ("aten.conv3d.padding", (1, 4, 5, 6, 7), (4, 2, 2, 3, 2), [1, 1, 1], "same", [1, 2, 1], 2),
]


@pytest.mark.parametrize("op, shape, weight, stride, padding, dilation, groups", CONV_PADDING_CASES)
def test_conv_padding_string(op, shape, weight, stride, padding, dilation, groups):
    overload = aten_op(op)
    check_op(
        overload,
        _randn(*shape),
        _randn(*weight),
        _randn(weight[0]),
        stride,
        padding,
        dilation,
        groups,
    )


# (op, input, weight (I, O/g, *K), bias, stride, padding, output_padding, groups, dilation)
CONV_TRANSPOSE_CASES = [
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 3, 3), True, [1], [0], [0], 1, [1]),
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 3, 4), False, [3], [1], [2], 1, [1]),
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 2, 3), True, [2], [1], [1], 2, [2]),
    ("aten.conv_transpose1d.default", (4, 7), (4, 3, 3), True, [2], [0], [0], 1, [1]),
    (
        "aten.conv_transpose2d.input",
        (2, 4, 5, 6),
        (4, 3, 3, 3),
        True,
        [2, 2],
        [1, 1],
        [1, 1],
        1,
        [1, 1],
    ),
    (
        "aten.conv_transpose2d.input",
        (2, 4, 5, 6),
        (4, 2, 3, 2),
        True,
        [2, 1],
        [0, 1],
        [1, 0],
        2,
        [1, 2],
    ),
    (
        "aten.conv_transpose2d.input",
        (1, 4, 5, 5),
        (4, 1, 3, 3),
        False,
        [1, 1],
        [1, 1],
        [0, 0],
        4,
        [1, 1],
    ),
    (
        "aten.conv_transpose2d.input",
        (4, 5, 6),
        (4, 3, 2, 2),
        True,
        [2, 2],
        [0, 0],
        [0, 0],
        1,
        [1, 1],
    ),
    (
        "aten.conv_transpose2d.input",
        (0, 4, 5, 6),
        (4, 3, 2, 2),
        True,
        [2, 2],
        [0, 0],
        [0, 0],
        1,
        [1, 1],
    ),
    (
        "aten.conv_transpose3d.input",
        (1, 2, 4, 5, 3),
        (2, 3, 3, 3, 3),
        True,
        [2, 1, 2],
        [1, 0, 1],
        [1, 0, 0],
        1,
        [1, 1, 1],
    ),
    (
        "aten.conv_transpose3d.input",
        (1, 4, 3, 3, 3),
        (4, 1, 2, 2, 2),
        False,
        [1, 1, 1],
        [0, 0, 0],
        [0, 0, 0],
        2,
        [2, 1, 1],
    ),
    # padding > dilation * (kernel - 1): MLX's own padding gives a short output (mlx 0.32.4),
    # so these go through mlx_helpers.conv_transpose.
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 3, 3), True, [2], [3], [0], 1, [1]),
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 3, 3), False, [2], [5], [1], 1, [2]),
    ("aten.conv_transpose1d.default", (2, 4, 7), (4, 2, 1), True, [3], [1], [2], 2, [1]),
    ("aten.conv_transpose1d.default", (4, 7), (4, 3, 2), True, [2], [2], [0], 1, [1]),
    (
        "aten.conv_transpose2d.input",
        (2, 4, 5, 6),
        (4, 3, 3, 3),
        True,
        [2, 2],
        [3, 3],
        [1, 0],
        1,
        [1, 1],
    ),
    (  # only the first axis is past the limit
        "aten.conv_transpose2d.input",
        (2, 4, 5, 6),
        (4, 3, 3, 3),
        True,
        [2, 2],
        [3, 1],
        [0, 1],
        1,
        [1, 1],
    ),
    (
        "aten.conv_transpose2d.input",
        (2, 4, 5, 6),
        (4, 2, 2, 3),
        False,
        [3, 2],
        [2, 5],
        [0, 0],
        2,
        [1, 2],
    ),
    (
        "aten.conv_transpose2d.input",
        (4, 5, 6),
        (4, 3, 3, 3),
        True,
        [2, 2],
        [3, 3],
        [0, 0],
        1,
        [1, 1],
    ),
    (
        "aten.conv_transpose3d.input",
        (1, 2, 4, 5, 3),
        (2, 3, 3, 3, 3),
        True,
        [2, 2, 2],
        [3, 1, 3],
        [1, 0, 0],
        1,
        [1, 1, 1],
    ),
    (
        "aten.conv_transpose3d.input",
        (1, 4, 3, 4, 3),
        (4, 1, 2, 2, 2),
        False,
        [2, 2, 1],
        [2, 0, 0],
        [0, 1, 0],
        2,
        [1, 1, 1],
    ),
]


@pytest.mark.parametrize(
    "op, shape, weight, bias, stride, padding, output_padding, groups, dilation",
    CONV_TRANSPOSE_CASES,
)
def test_conv_transpose(op, shape, weight, bias, stride, padding, output_padding, groups, dilation):
    overload = aten_op(op)
    tensors = (_randn(*shape), _randn(*weight)) + ((_randn(weight[1] * groups),) if bias else ())
    check_op(
        overload,
        *tensors,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        atol=1e-4,
    )


@pytest.mark.parametrize(
    "op, transposed, shape, weight, stride, padding, dilation, output_padding, groups",
    [
        ("aten.convolution.default", False, (2, 4, 9), (6, 2, 3), [2], [1], [1], [0], 2),
        (
            "aten.convolution.default",
            False,
            (2, 3, 7, 8),
            (4, 3, 3, 3),
            [1, 2],
            [1, 0],
            [2, 1],
            [0, 0],
            1,
        ),
        (
            "aten.convolution.default",
            True,
            (2, 4, 5, 6),
            (4, 3, 3, 3),
            [2, 2],
            [1, 0],
            [1, 1],
            [1, 0],
            1,
        ),
        ("aten.convolution.default", True, (2, 4, 5), (4, 2, 3), [2], [0], [1], [1], 2),
        # padding > dilation * (kernel - 1): through mlx_helpers.conv_transpose
        ("aten.convolution.default", True, (2, 4, 5), (4, 2, 3), [2], [3], [1], [1], 2),
        (
            "aten.convolution.default",
            True,
            (2, 4, 5, 6),
            (4, 3, 3, 3),
            [2, 2],
            [3, 1],
            [1, 1],
            [0, 0],
            1,
        ),
        (
            "aten.convolution.default",
            False,
            (1, 2, 4, 5, 6),
            (3, 2, 2, 2, 2),
            [1, 1, 1],
            [1, 0, 1],
            [1, 1, 1],
            [0, 0, 0],
            1,
        ),
    ],
)
def test_convolution(
    op, transposed, shape, weight, stride, padding, dilation, output_padding, groups
):
    out_channels = weight[1] * groups if transposed else weight[0]
    check_op(
        aten.convolution.default,
        _randn(*shape),
        _randn(*weight),
        _randn(out_channels),
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
        atol=1e-4,
    )


# --- pooling ----------------------------------------------------------------------------

# (op, input shape, kernel, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = [
    ("aten.max_pool1d.default", (2, 3, 11), [3], [2], [1], [1], False),
    ("aten.max_pool1d.default", (2, 3, 11), [2], [], [0], [2], True),
    ("aten.max_pool1d.default", (3, 10), [3], [3], [1], [1], True),  # unbatched
    # Overlapping dilated windows that MLX's CPU reduction misread as a strided view.
    ("aten.max_pool1d.default", (2, 3, 5), [3], [1], [1], [2], False),
    ("aten.max_pool2d.default", (2, 3, 9, 8), [3, 3], [2, 2], [1, 1], [1, 1], False),
    ("aten.max_pool2d.default", (2, 3, 9, 8), [2, 3], [2, 1], [1, 0], [2, 1], True),
    ("aten.max_pool2d.default", (3, 9, 8), [2, 2], [], [0, 0], [1, 1], False),  # unbatched
    ("aten.max_pool2d.default", (0, 3, 9, 8), [2, 2], [], [0, 0], [1, 1], False),  # empty batch
    ("aten.max_pool3d.default", (1, 2, 6, 7, 5), [2, 3, 2], [2, 2, 1], [1, 1, 0], [1, 1, 2], True),
    ("aten.max_pool3d.default", (2, 5, 6, 7), [3, 3, 3], [2, 2, 2], [1, 1, 1], [1, 1, 1], False),
]


@pytest.mark.parametrize("op, shape, kernel, stride, padding, dilation, ceil_mode", MAX_POOL_CASES)
def test_max_pool(op, shape, kernel, stride, padding, dilation, ceil_mode):
    overload = aten_op(op)
    check_op(overload, _randn(*shape), kernel, stride, padding, dilation, ceil_mode)
    with_indices = aten_op(op.replace(".default", "_with_indices.default"))
    check_op(
        first_output(with_indices), _randn(*shape), kernel, stride, padding, dilation, ceil_mode
    )


@pytest.mark.parametrize(
    "op, shape, kernel, stride, padding, dilation, ceil_mode",
    [
        ("aten.max_pool1d_with_indices.default", (2, 3, 12), [4], [3], [2], [1], True),
        (
            "aten.max_pool2d_with_indices.default",
            (2, 3, 10, 9),
            [3, 2],
            [2, 2],
            [1, 1],
            [1, 2],
            True,
        ),
        (
            "aten.max_pool3d_with_indices.default",
            (1, 3, 5, 6, 7),
            [2, 2, 3],
            [],
            [1, 0, 1],
            [1, 1, 1],
            False,
        ),
    ],
)
def test_max_pool_with_indices(op, shape, kernel, stride, padding, dilation, ceil_mode):
    overload = aten_op(op)
    check_op(first_output(overload), _randn(*shape), kernel, stride, padding, dilation, ceil_mode)
    check_op(
        first_output(overload),
        _randn(*shape),
        kernel,
        stride,
        padding,
        dilation,
        ceil_mode,
        transpose_inputs=True,
    )


@pytest.mark.parametrize("op", ["aten.max_pool2d.default"])
def test_max_pool2d_float16(op):
    check_op(aten.max_pool2d.default, _randn(2, 3, 8, 8, dtype=torch.float16), [2, 2], [2, 2])


# (op, input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_POOL_CASES = [
    ("aten.avg_pool1d.default", (2, 3, 11), [3], [2], [1], False, True, None),
    ("aten.avg_pool1d.default", (2, 3, 11), [3], [2], [1], True, False, None),
    ("aten.avg_pool1d.default", (3, 11), [4], [], [2], True, True, None),  # unbatched
    ("aten.avg_pool2d.default", (2, 3, 9, 8), [3, 3], [2, 2], [1, 1], False, True, None),
    ("aten.avg_pool2d.default", (2, 3, 9, 8), [3, 2], [2, 3], [1, 1], True, False, None),
    ("aten.avg_pool2d.default", (2, 3, 9, 8), [3, 3], [2, 2], [1, 1], True, True, None),
    ("aten.avg_pool2d.default", (2, 3, 9, 8), [2, 2], [1, 2], [1, 0], False, True, 3),
    ("aten.avg_pool2d.default", (3, 9, 8), [2, 2], [], [0, 0], False, True, None),  # unbatched
    ("aten.avg_pool2d.default", (0, 3, 9, 8), [2, 2], [], [0, 0], False, True, None),
    (
        "aten.avg_pool3d.default",
        (1, 2, 6, 7, 5),
        [2, 3, 2],
        [2, 2, 1],
        [1, 1, 0],
        True,
        False,
        None,
    ),
    ("aten.avg_pool3d.default", (1, 2, 6, 7, 5), [3, 3, 3], [2, 2, 2], [1, 1, 1], False, True, 5),
    ("aten.avg_pool3d.default", (2, 4, 4, 4), [2, 2, 2], [], [0, 0, 0], True, True, None),
]


@pytest.mark.parametrize(
    "op, shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor", AVG_POOL_CASES
)
def test_avg_pool(op, shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    overload = aten_op(op)
    extra = {} if op == "aten.avg_pool1d.default" else {"divisor_override": divisor}
    check_op(
        overload, _randn(*shape), kernel, stride, padding, ceil_mode, count_include_pad, **extra
    )


@pytest.mark.parametrize("op", ["aten.avg_pool2d.default"])
def test_avg_pool_noncontiguous_float16(op):
    check_op(
        aten.avg_pool2d.default, _randn(2, 3, 8, 9), [3, 3], [2, 2], [1, 1], transpose_inputs=True
    )
    check_op(aten.avg_pool2d.default, _randn(2, 3, 8, 9, dtype=torch.float16), [2, 2])


# (op, input shape, output size)
ADAPTIVE_CASES = [
    ("aten.adaptive_avg_pool1d.default", (2, 3, 12), [4]),
    ("aten.adaptive_avg_pool1d.default", (2, 3, 10), [3]),
    ("aten.adaptive_avg_pool1d.default", (3, 10), [4]),  # unbatched
    ("aten.adaptive_avg_pool2d.default", (2, 3, 8, 9), [4, 3]),
    ("aten.adaptive_avg_pool2d.default", (2, 3, 7, 10), [3, 4]),
    ("aten.adaptive_avg_pool2d.default", (2, 3, 7, 10), [1, 1]),
    ("aten.adaptive_avg_pool2d.default", (3, 7, 5), [2, 3]),  # unbatched
    ("aten.adaptive_avg_pool3d.default", (1, 2, 6, 7, 5), [3, 2, 2]),
    ("aten._adaptive_avg_pool2d.default", (2, 3, 8, 9), [4, 3]),
    ("aten._adaptive_avg_pool2d.default", (2, 3, 7, 11), [5, 4]),
    ("aten._adaptive_avg_pool2d.default", (0, 3, 8, 8), [2, 2]),
    ("aten._adaptive_avg_pool3d.default", (1, 2, 6, 7, 5), [3, 2, 5]),
    ("aten._adaptive_avg_pool3d.default", (2, 4, 4, 5), [1, 1, 1]),
    ("aten.adaptive_max_pool1d.default", (2, 3, 12), [4]),
    ("aten.adaptive_max_pool1d.default", (2, 3, 10), [3]),
    ("aten.adaptive_max_pool2d.default", (2, 3, 8, 9), [4, 3]),
    ("aten.adaptive_max_pool2d.default", (2, 3, 7, 10), [3, 4]),
    ("aten.adaptive_max_pool2d.default", (3, 7, 10), [2, 3]),  # unbatched
    ("aten.adaptive_max_pool3d.default", (1, 2, 6, 7, 5), [4, 2, 3]),
]


@pytest.mark.parametrize("op, shape, size", ADAPTIVE_CASES)
def test_adaptive_pool(op, shape, size):
    overload = aten_op(op)
    run = first_output(overload) if "max" in op else overload
    check_op(run, _randn(*shape), size)


@pytest.mark.parametrize("op", ["aten._adaptive_avg_pool2d.default"])
def test_adaptive_pool_noncontiguous_float16(op):
    check_op(aten._adaptive_avg_pool2d.default, _randn(2, 3, 7, 9), [3, 4], transpose_inputs=True)
    check_op(aten._adaptive_avg_pool2d.default, _randn(2, 3, 7, 9, dtype=torch.float16), [3, 4])


# --- upsampling -------------------------------------------------------------------------

# (op, input shape, output size, align_corners (None: nearest), scales)
UPSAMPLE_VEC_CASES = [
    ("aten.upsample_nearest1d.vec", (2, 3, 5), [11], None, None),
    ("aten.upsample_nearest1d.vec", (2, 3, 5), None, None, [2.0]),
    ("aten.upsample_nearest1d.vec", (2, 3, 9), None, None, [0.5]),
    ("aten.upsample_nearest2d.vec", (2, 3, 4, 5), [8, 10], None, None),
    ("aten.upsample_nearest2d.vec", (2, 3, 4, 5), [7, 3], None, None),
    ("aten.upsample_nearest2d.vec", (2, 3, 4, 5), None, None, [2.0, 3.0]),
    ("aten.upsample_nearest2d.vec", (2, 3, 4, 5), None, None, [1.5, 0.6]),
    # torch's 2-d kernel copies an axis whose size stays and repeats rows of one that
    # doubles, whatever the scale says (nearest_idx): 4 * 2.05 -> 8, 5 * 1.1 -> 5; the 1-d
    # and 3-d kernels follow the scale.
    ("aten.upsample_nearest2d.vec", (2, 3, 4, 5), None, None, [2.05, 1.1]),
    ("aten.upsample_nearest1d.vec", (2, 3, 9), None, None, [1.05]),
    ("aten.upsample_nearest3d.vec", (1, 2, 3, 4, 5), None, None, [2.1, 1.1, 2.05]),
    ("aten.upsample_nearest3d.vec", (1, 2, 3, 4, 5), [6, 5, 4], None, None),
    ("aten.upsample_nearest3d.vec", (1, 2, 3, 4, 5), None, None, [2.0, 1.0, 0.5]),
    ("aten._upsample_nearest_exact1d.vec", (2, 3, 5), [7], None, None),
    ("aten._upsample_nearest_exact2d.vec", (2, 3, 4, 5), [7, 3], None, None),
    ("aten._upsample_nearest_exact2d.vec", (2, 3, 4, 5), None, None, [2.0, 1.5]),
    ("aten._upsample_nearest_exact3d.vec", (1, 2, 3, 4, 5), [5, 5, 5], None, None),
    ("aten.upsample_linear1d.vec", (2, 3, 5), [11], False, None),
    ("aten.upsample_linear1d.vec", (2, 3, 5), [11], True, None),
    ("aten.upsample_linear1d.vec", (2, 3, 5), None, False, [2.5]),
    ("aten.upsample_bilinear2d.vec", (2, 3, 4, 5), [8, 10], False, None),
    ("aten.upsample_bilinear2d.vec", (2, 3, 4, 5), [7, 3], True, None),
    ("aten.upsample_bilinear2d.vec", (2, 3, 4, 5), [3, 9], False, None),
    ("aten.upsample_bilinear2d.vec", (2, 3, 4, 5), None, False, [2.0, 2.0]),
    ("aten.upsample_bilinear2d.vec", (2, 3, 4, 5), None, True, [1.5, 0.5]),
    ("aten.upsample_bilinear2d.vec", (0, 3, 4, 5), [8, 10], False, None),
    ("aten.upsample_bicubic2d.vec", (2, 3, 4, 5), [8, 10], False, None),
    ("aten.upsample_bicubic2d.vec", (2, 3, 4, 5), [7, 3], True, None),
    ("aten.upsample_bicubic2d.vec", (2, 3, 6, 5), None, False, [1.5, 0.5]),
    ("aten.upsample_bicubic2d.vec", (2, 3, 6, 5), None, True, [2.0, 2.0]),
    ("aten.upsample_trilinear3d.vec", (1, 2, 3, 4, 5), [6, 5, 4], False, None),
    ("aten.upsample_trilinear3d.vec", (1, 2, 3, 4, 5), None, True, [2.0, 1.5, 0.5]),
]


@pytest.mark.parametrize("op, shape, size, align_corners, scales", UPSAMPLE_VEC_CASES)
def test_upsample_vec(op, shape, size, align_corners, scales):
    overload = aten_op(op)
    flags = {} if align_corners is None else {"align_corners": align_corners}
    check_op(overload, _randn(*shape), output_size=size, scale_factors=scales, **flags)


# (op, input shape, output size, align_corners (None: nearest), scales)
UPSAMPLE_DEFAULT_CASES = [
    ("aten.upsample_nearest1d.default", (2, 3, 5), [9], None, []),
    ("aten.upsample_nearest1d.default", (2, 3, 5), [10], None, [2.0]),
    ("aten.upsample_nearest2d.default", (2, 3, 4, 5), [7, 11], None, []),
    ("aten.upsample_nearest2d.default", (2, 3, 4, 5), [8, 10], None, [2.0, 2.0]),
    ("aten.upsample_nearest3d.default", (1, 2, 3, 4, 5), [6, 5, 4], None, []),
    ("aten.upsample_linear1d.default", (2, 3, 5), [9], True, []),
    ("aten.upsample_linear1d.default", (2, 3, 5), [9], False, [1.8]),
    ("aten.upsample_bilinear2d.default", (2, 3, 4, 5), [7, 11], False, []),
    ("aten.upsample_bilinear2d.default", (2, 3, 4, 5), [8, 10], False, [2.0, 2.0]),
    ("aten.upsample_bilinear2d.default", (2, 3, 4, 5), [3, 9], True, []),
    ("aten.upsample_bicubic2d.default", (2, 3, 4, 5), [7, 11], False, []),
    ("aten.upsample_bicubic2d.default", (2, 3, 4, 5), [8, 10], True, [2.0, 2.0]),
    ("aten.upsample_trilinear3d.default", (1, 2, 3, 4, 5), [6, 5, 4], False, []),
    ("aten.upsample_trilinear3d.default", (1, 2, 3, 4, 5), [5, 7, 3], True, []),
]


@pytest.mark.parametrize("op, shape, size, align_corners, scales", UPSAMPLE_DEFAULT_CASES)
def test_upsample_default(op, shape, size, align_corners, scales):
    overload = aten_op(op)
    args = (size,) if align_corners is None else (size, align_corners)
    check_op(overload, _randn(*shape), *args, *scales)


@pytest.mark.parametrize("op", ["aten.upsample_bilinear2d.vec", "aten.upsample_nearest2d.vec"])
def test_upsample_noncontiguous_float16(op):
    overload = aten_op(op)
    flags = {"align_corners": False} if "bilinear" in op else {}
    options = {"output_size": [8, 9], "scale_factors": None, **flags}
    check_op(overload, _randn(2, 3, 4, 6), transpose_inputs=True, **options)
    check_op(overload, _randn(2, 3, 4, 6, dtype=torch.float16), **options)


# --- padding, pixel shuffle -------------------------------------------------------------

# (op, input shape, padding)
PAD_CASES = [
    ("aten.reflection_pad1d.default", (2, 3, 8), [2, 3]),
    ("aten.reflection_pad1d.default", (3, 8), [1, 0]),  # unbatched
    ("aten.reflection_pad2d.default", (2, 3, 6, 7), [1, 2, 3, 0]),
    ("aten.reflection_pad2d.default", (3, 6, 7), [2, 2, 1, 1]),  # unbatched
    ("aten.reflection_pad3d.default", (1, 2, 4, 5, 6), [1, 2, 0, 1, 3, 1]),
    ("aten.reflection_pad3d.default", (2, 4, 5, 6), [1, 1, 1, 1, 1, 1]),  # unbatched
    ("aten.replication_pad1d.default", (2, 3, 8), [3, 1]),
    ("aten.replication_pad1d.default", (3, 8), [0, 4]),
    ("aten.replication_pad2d.default", (2, 3, 6, 7), [1, 2, 3, 0]),
    ("aten.replication_pad2d.default", (3, 6, 7), [4, 0, 0, 2]),
    ("aten.replication_pad3d.default", (1, 2, 4, 5, 6), [1, 2, 0, 1, 3, 1]),
    ("aten.replication_pad3d.default", (2, 4, 5, 6), [2, 0, 1, 1, 0, 2]),
]


@pytest.mark.parametrize("op, shape, padding", PAD_CASES)
def test_spatial_pad(op, shape, padding):
    overload = aten_op(op)
    check_op(overload, _randn(*shape), padding)


@pytest.mark.parametrize("op", ["aten.reflection_pad2d.default", "aten.replication_pad2d.default"])
def test_spatial_pad_noncontiguous_float16(op):
    overload = aten_op(op)
    check_op(overload, _randn(2, 3, 5, 6), [1, 2, 2, 1], transpose_inputs=True)
    check_op(overload, _randn(2, 3, 5, 6, dtype=torch.float16), [1, 2, 2, 1])


@pytest.mark.parametrize(
    "op, shape, factor",
    [
        ("aten.pixel_shuffle.default", (2, 8, 3, 4), 2),
        ("aten.pixel_shuffle.default", (9, 2, 3), 3),
        ("aten.pixel_shuffle.default", (2, 3, 4, 2, 3), 2),
        ("aten.pixel_unshuffle.default", (2, 3, 6, 4), 2),
        ("aten.pixel_unshuffle.default", (1, 6, 6), 3),
        ("aten.pixel_unshuffle.default", (2, 2, 3, 4, 6), 2),
    ],
)
def test_pixel_shuffle(op, shape, factor):
    overload = aten_op(op)
    check_op(overload, _randn(*shape), factor)
    check_op(overload, _randn(*shape), factor, transpose_inputs=True)


# --- sampling, fold / unfold ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1])  # bilinear, nearest
@pytest.mark.parametrize("padding_mode", [0, 1, 2])  # zeros, border, reflection
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("op", ["aten.grid_sampler_2d.default"])
def test_grid_sampler_2d(op, mode, padding_mode, align_corners):
    # Grid points beyond [-1, 1] exercise the padding modes.
    grid = torch.rand(2, 5, 6, 2) * 3 - 1.5
    check_op(
        aten.grid_sampler_2d.default, _randn(2, 3, 7, 8), grid, mode, padding_mode, align_corners
    )


@pytest.mark.parametrize("op", ["aten.grid_sampler_2d.default"])
def test_grid_sampler_2d_float16(op):
    grid = (torch.rand(1, 4, 4, 2) * 2 - 1).half()
    check_op(
        aten.grid_sampler_2d.default, _randn(1, 2, 5, 5, dtype=torch.float16), grid, 0, 0, False
    )


# (op, input shape, output_size, kernel, dilation, padding, stride)
FOLD_CASES = [
    ("aten.col2im.default", (2, 3 * 4, 12), [4, 5], [2, 2], [1, 1], [0, 0], [1, 1]),
    ("aten.col2im.default", (2, 2 * 6, 12), [7, 6], [3, 2], [1, 2], [1, 1], [2, 2]),
    ("aten.col2im.default", (3 * 4, 9), [5, 5], [2, 2], [1, 1], [1, 1], [2, 2]),  # unbatched
]


@pytest.mark.parametrize("op, shape, size, kernel, dilation, padding, stride", FOLD_CASES)
def test_col2im(op, shape, size, kernel, dilation, padding, stride):
    check_op(aten.col2im.default, _randn(*shape), size, kernel, dilation, padding, stride)


@pytest.mark.parametrize(
    "op, shape, kernel, dilation, padding, stride",
    [
        ("aten.im2col.default", (2, 3, 5, 6), [2, 2], [1, 1], [0, 0], [1, 1]),
        ("aten.im2col.default", (2, 2, 7, 6), [3, 2], [1, 2], [1, 1], [2, 2]),
        ("aten.im2col.default", (3, 5, 5), [2, 2], [1, 1], [1, 1], [2, 2]),
    ],
)
def test_im2col(op, shape, kernel, dilation, padding, stride):
    check_op(aten.im2col.default, _randn(*shape), kernel, dilation, padding, stride)


# --- modules: weights as parameters, in MLX's layout from conversion --------------------

MODULES = [
    ("aten.conv1d.default", lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 11)),
    ("aten.conv1d.default", lambda: torch.nn.Conv1d(4, 4, 5, padding=2, groups=4), (2, 4, 11)),
    (
        "aten.conv1d.padding",
        lambda: torch.nn.Conv1d(4, 6, 4, padding="same", dilation=2),
        (2, 4, 11),
    ),
    (
        "aten.conv2d.default",
        lambda: torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, dilation=2),
        (2, 4, 9, 9),
    ),
    ("aten.conv2d.default", lambda: torch.nn.Conv2d(3, 8, 1, bias=False), (2, 3, 5, 6)),
    ("aten.conv2d.default", lambda: torch.nn.Conv2d(6, 6, 3, stride=2, groups=6), (2, 6, 9, 8)),
    ("aten.conv2d.default", lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),  # unbatched
    (
        "aten.conv3d.default",
        lambda: torch.nn.Conv3d(2, 4, (2, 3, 3), padding=1, groups=2),
        (1, 2, 4, 5, 6),
    ),
    ("aten.conv3d.default", lambda: torch.nn.Conv3d(2, 3, 1), (1, 2, 3, 4, 5)),
    (  # a child layer: mlx.nn.Conv3d takes no groups, so it stays mx.conv3d (MViT's pooling)
        "aten.conv3d.default",
        lambda: torch.nn.Sequential(torch.nn.Conv3d(4, 4, 3, padding=1, groups=4)),
        (1, 4, 3, 4, 5),
    ),
    (
        "aten.conv_transpose1d.default",
        lambda: torch.nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2),
        (2, 4, 7),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 5, 6),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 4, 3, groups=4, dilation=2),
        (2, 4, 5, 5),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(3, 5, 2, stride=2),
        (2, 3, 4, 4),
    ),
    (
        "aten.conv_transpose3d.input",
        lambda: torch.nn.ConvTranspose3d(2, 4, 2, stride=2, groups=2),
        (1, 2, 3, 3, 3),
    ),
    # padding > dilation * (kernel - 1): not mlx.nn's layer, whose output is too short
    (
        "aten.conv_transpose1d.default",
        lambda: torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=3),
        (2, 4, 7),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=3),
        (2, 4, 5, 6),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=(3, 1), output_padding=1),
        (2, 4, 5, 6),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=5, dilation=2),
        (2, 4, 5, 6),
    ),
    (
        "aten.conv_transpose2d.input",
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=3, groups=2),
        (2, 4, 5, 6),
    ),
    (
        "aten.conv_transpose3d.input",
        lambda: torch.nn.ConvTranspose3d(2, 4, 3, stride=2, padding=3),
        (1, 2, 3, 4, 3),
    ),
    ("aten.max_pool2d_with_indices.default", lambda: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 9, 9)),
    (
        "aten.avg_pool2d.default",
        lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        (2, 3, 9, 9),
    ),
    ("aten._adaptive_avg_pool2d.default", lambda: torch.nn.AdaptiveAvgPool2d((3, 5)), (2, 3, 9, 9)),
    ("aten.upsample_nearest2d.vec", lambda: torch.nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    (
        "aten.upsample_bilinear2d.vec",
        lambda: torch.nn.Upsample(size=(7, 9), mode="bilinear"),
        (2, 3, 4, 5),
    ),
    (
        "aten.upsample_bicubic2d.vec",
        lambda: torch.nn.Upsample(scale_factor=1.5, mode="bicubic"),
        (2, 3, 4, 5),
    ),
    ("aten.pixel_shuffle.default", lambda: torch.nn.PixelShuffle(2), (2, 8, 3, 3)),
]


@pytest.mark.parametrize("op, factory, shape", MODULES)
def test_module(op, factory, shape):
    torch.manual_seed(0)
    check_module(factory(), _randn(*shape), atol=1e-4 if "transpose" in op else 1e-5)


@pytest.mark.parametrize("op", ["aten.conv_transpose2d.input"])
def test_conv_transpose_padding_past_the_kernel_is_written_out(op):
    """mlx.nn.ConvTranspose2d shortens the output when padding > dilation * (kernel - 1)
    (mlx 0.32.4): such a child module is the helper's call; up to the limit it stays the
    layer."""
    torch.manual_seed(0)
    x = _randn(2, 4, 5, 6)
    layer = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=3))
    source = check_module(layer, x)
    assert "nn.ConvTranspose2d" not in source and "conv_transpose(" in source
    layer = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=2))
    source = check_module(layer, x)
    assert "nn.ConvTranspose2d(" in source and "def conv_transpose(" not in source


class _ConvStack(torch.nn.Module):
    """Two convolutions and a pool in a row: the input stays channels-last throughout."""

    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(6, 3, 3, 3) * 0.3)
        self.w2 = torch.nn.Parameter(torch.randn(6, 3, 3, 3) * 0.3)

    def forward(self, x):
        y = torch.nn.functional.conv2d(x, self.w1, padding=1)
        y = torch.nn.functional.max_pool2d(y, 2)
        y = torch.nn.functional.conv2d(y, self.w2, groups=2, padding="same")
        return torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear")


@pytest.mark.parametrize("op", ["aten.conv2d.default"])
def test_conv_chain_parameters(op):
    source = check_module(_ConvStack(), _randn(2, 3, 8, 8), atol=1e-4)
    assert source.count("mx.transpose(") <= 2  # in and out only


class _PatchEmbedding(torch.nn.Module):
    """A ViT patch embedding in a child module, its position table added by the parent."""

    def __init__(self):
        super().__init__()
        self.projection = torch.nn.Conv2d(3, 16, 4, 4)

    def forward(self, x):
        return self.projection(x).flatten(2).transpose(1, 2)


class _Embeddings(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patches = _PatchEmbedding()
        self.position_embeddings = torch.nn.Parameter(torch.randn(1, 4, 16))

    def forward(self, x):
        return self.patches(x) + self.position_embeddings


@pytest.mark.parametrize("op", ["aten.conv2d.default"])
def test_a_weight_added_after_a_deferred_transpose_is_used_in_torch_order(op):
    # The transpose(1, 2) is deferred, and a weight cannot be transposed: the sum must
    # happen in torch's order (the transpose dropped gave a broadcast error: IJepa, Hiera).
    check_module(_Embeddings(), _randn(2, 3, 8, 8))
