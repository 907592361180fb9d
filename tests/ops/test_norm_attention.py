"""Numerical checks of the normalisation, linear algebra, attention, embedding, distance and
FFT ops (cpp/src/ops/norm_attention.cpp) against torch eager.

Each test's first parameter is the ATen overload it covers, so that test ids name it.
Optional tensor arguments that are None go through small lambdas: the harness reads a None
positional argument as "the next tensor input".
"""

from __future__ import annotations

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


def check_module(module: torch.nn.Module, *inputs, atol=1e-5):
    """Exports ``module`` itself (its parameters and buffers stay parameters), loads its state
    dict into the generated model and compares with torch."""
    import mlx.core as mx

    module = module.eval()
    with torch.no_grad():
        expected = module(*inputs)
    generated = generate(module, inputs)
    state = module.state_dict()
    for _name, _source, layout, _groups in generated["weights"]:
        assert layout == "keep", "no op of this family stores weights permuted"
    weights = [
        (name, mx.array(state[source].numpy())) for name, source, _, _ in generated["weights"]
    ]
    namespace: dict = {"__name__": "module_test"}
    exec(compile(generated["source"], "model.py", "exec"), namespace)
    model = namespace["Model"]()
    model.load_weights(weights)
    actual = model(*(mx.array(x.numpy()) for x in inputs))
    mx.eval(actual)
    assert_close(expected, actual, atol)
    return generated["source"]


# --- layer and RMS norm -----------------------------------------------------------------

# (op, input shape, normalized_shape, weight, bias, dtype)
LAYER_NORM_CASES = [
    ("aten.layer_norm.default", (2, 5, 8), [8], True, True, torch.float32),
    ("aten.layer_norm.default", (2, 5, 8), [8], False, False, torch.float32),
    ("aten.layer_norm.default", (2, 5, 8), [8], True, False, torch.float32),
    ("aten.layer_norm.default", (2, 5, 8), [5, 8], True, True, torch.float32),
    ("aten.layer_norm.default", (3, 4, 5, 6), [4, 5, 6], False, False, torch.float32),
    ("aten.layer_norm.default", (8,), [8], True, True, torch.float32),
    ("aten.layer_norm.default", (0, 8), [8], True, True, torch.float32),
    ("aten.layer_norm.default", (2, 5, 8), [8], True, True, torch.float16),
    ("aten.native_layer_norm.default", (2, 5, 8), [8], True, True, torch.float32),
    ("aten.native_layer_norm.default", (2, 5, 8), [5, 8], False, False, torch.float32),
    ("aten.native_layer_norm.default", (3, 4, 6), [6], True, False, torch.float32),
]


@pytest.mark.parametrize("op, shape, normalized, weight, bias, dtype", LAYER_NORM_CASES)
def test_layer_norm(op, shape, normalized, weight, bias, dtype):
    overload = aten_op(op)
    w = _randn(*normalized, dtype=dtype) if weight else None
    b = _randn(*normalized, dtype=dtype) if bias else None

    def norm(x, *params):
        values = iter(params)
        return overload(
            x, normalized, next(values) if weight else None, next(values) if bias else None, 1e-5
        )

    params = [t for t in (w, b) if t is not None]
    check_op(norm, _randn(*shape, dtype=dtype), *params)


@pytest.mark.parametrize("op", ["aten.layer_norm.default", "aten.native_layer_norm.default"])
def test_layer_norm_noncontiguous(op):
    overload = aten_op(op)
    check_op(overload, _randn(2, 7, 6), [6], _randn(6), _randn(6), 1e-6)
    check_op(lambda x: overload(x, [6], None, None, 1e-5), _randn(2, 6, 6), transpose_inputs=True)


# (op, input shape, normalized_shape, weight, eps, dtype)
RMS_NORM_CASES = [
    ("aten.rms_norm.default", (2, 5, 8), [8], True, None, torch.float32),
    ("aten.rms_norm.default", (2, 5, 8), [8], False, 1e-6, torch.float32),
    ("aten.rms_norm.default", (2, 5, 8), [5, 8], True, None, torch.float32),
    ("aten.rms_norm.default", (2, 5, 8), [5, 8], False, 1e-3, torch.float32),
    ("aten.rms_norm.default", (0, 8), [8], True, None, torch.float32),
    ("aten.rms_norm.default", (2, 5, 8), [8], True, None, torch.float16),
    ("aten.rms_norm.default", (2, 5, 8), [8], True, 1e-5, torch.float16),
]


@pytest.mark.parametrize("op, shape, normalized, weight, eps, dtype", RMS_NORM_CASES)
def test_rms_norm(op, shape, normalized, weight, eps, dtype):
    # Seeded: float16 values drawn from whatever state earlier tests left could land where
    # rounding the same sum in another order exceeds the tolerance.
    torch.manual_seed(0)
    x = _randn(*shape, dtype=dtype)
    if weight:
        check_op(
            lambda x, w: aten.rms_norm.default(x, normalized, w, eps),
            x,
            _randn(*normalized, dtype=dtype),
        )
    else:
        check_op(lambda x: aten.rms_norm.default(x, normalized, None, eps), x)


@pytest.mark.parametrize("op", ["aten.rms_norm.default"])
def test_rms_norm_noncontiguous(op):
    check_op(
        lambda x: aten.rms_norm.default(x, [6], None, None), _randn(2, 6, 6), transpose_inputs=True
    )


# --- batch, group and instance norm (channels-last) -------------------------------------


def _stats(channels):
    return torch.randn(channels), torch.rand(channels) + 0.5


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 7), (2, 3, 5, 6), (2, 3, 3, 4, 5), (0, 3, 4, 4)])
@pytest.mark.parametrize("op", ["aten.batch_norm.default"])
def test_batch_norm_eval(op, shape):
    mean, var = _stats(3)
    check_op(
        lambda x, w, b, m, v: aten.batch_norm.default(x, w, b, m, v, False, 0.1, 1e-5, False),
        _randn(*shape),
        _randn(3),
        _randn(3),
        mean,
        var,
    )


@pytest.mark.parametrize("op", ["aten.batch_norm.default"])
def test_batch_norm_variants(op):
    mean, var = _stats(3)
    # No affine parameters, running statistics.
    check_op(
        lambda x, m, v: aten.batch_norm.default(x, None, None, m, v, False, 0.1, 1e-3, False),
        _randn(2, 3, 5, 6),
        mean,
        var,
    )
    # Training mode without running statistics: the batch's own.
    check_op(
        lambda x, w, b: aten.batch_norm.default(x, w, b, None, None, True, 0.1, 1e-5, False),
        _randn(4, 3, 5, 6),
        _randn(3),
        _randn(3),
    )
    # Non-contiguous and float16.
    check_op(
        lambda x, m, v: aten.batch_norm.default(x, None, None, m, v, False, 0.1, 1e-5, False),
        _randn(2, 3, 5, 6),
        mean,
        var,
        transpose_inputs=False,
    )
    check_op(
        lambda x, m, v: aten.batch_norm.default(
            x.transpose(-1, -2), None, None, m, v, False, 0.1, 1e-5, False
        ),
        _randn(2, 3, 5, 6),
        mean,
        var,
    )
    check_op(
        lambda x, m, v: aten.batch_norm.default(x, None, None, m, v, False, 0.1, 1e-5, False),
        _randn(2, 3, 5, 6, dtype=torch.float16),
        mean.half(),
        var.half(),
    )


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 7), (2, 3, 5, 6), (1, 3, 2, 3, 4)])
@pytest.mark.parametrize("op", ["aten._native_batch_norm_legit_no_training.default"])
def test_native_batch_norm_no_training(op, shape):
    mean, var = _stats(3)
    check_op(
        aten._native_batch_norm_legit_no_training.default,
        _randn(*shape),
        _randn(3),
        _randn(3),
        mean,
        var,
        0.1,
        1e-5,
    )
    check_op(
        lambda x, m, v: aten._native_batch_norm_legit_no_training.default(
            x, None, None, m, v, 0.1, 1e-3
        ),
        _randn(*shape),
        mean,
        var,
    )


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 6)])
@pytest.mark.parametrize("op", ["aten._native_batch_norm_legit.default"])
def test_native_batch_norm_legit(op, shape):
    mean, var = _stats(3)
    # Training: batch statistics (the running-statistics update works on clones here).
    check_op(
        lambda x, w, b, m, v: aten._native_batch_norm_legit.default(
            x, w, b, m.clone(), v.clone(), True, 0.1, 1e-5
        ),
        _randn(*shape),
        _randn(3),
        _randn(3),
        mean,
        var,
    )
    # Not training: the running statistics.
    check_op(
        lambda x, m, v: aten._native_batch_norm_legit.default(
            x, None, None, m, v, False, 0.1, 1e-5
        )[0],
        _randn(*shape),
        mean,
        var,
    )


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 7), (2, 3, 5, 6)])
@pytest.mark.parametrize("op", ["aten._native_batch_norm_legit.no_stats"])
def test_native_batch_norm_no_stats(op, shape):
    check_op(
        aten._native_batch_norm_legit.no_stats,
        _randn(*shape),
        _randn(3),
        _randn(3),
        True,
        0.1,
        1e-5,
    )
    check_op(
        lambda x: aten._native_batch_norm_legit.no_stats(x, None, None, True, 0.1, 1e-5),
        _randn(*shape),
    )


# (op, input shape, groups, affine)
GROUP_NORM_CASES = [
    ("aten.group_norm.default", (2, 6, 5, 4), 3, True),
    ("aten.group_norm.default", (2, 6, 5, 4), 1, False),
    ("aten.group_norm.default", (2, 6, 7), 6, True),
    ("aten.group_norm.default", (2, 4), 2, True),
    ("aten.group_norm.default", (1, 4, 2, 3, 4), 2, False),
    ("aten.native_group_norm.default", (2, 6, 5, 4), 3, True),
    ("aten.native_group_norm.default", (2, 6, 7), 2, False),
    ("aten.native_group_norm.default", (3, 8, 2, 2, 2), 4, True),
]


@pytest.mark.parametrize("op, shape, groups, affine", GROUP_NORM_CASES)
def test_group_norm(op, shape, groups, affine):
    channels = shape[1]
    params = (_randn(channels), _randn(channels)) if affine else ()
    if op == "aten.group_norm.default":

        def norm(x, *p):
            return aten.group_norm.default(x, groups, *(p or (None, None)), 1e-5)

    else:
        spatial = int(torch.tensor(shape[2:]).prod()) if len(shape) > 2 else 1

        def norm(x, *p):
            return aten.native_group_norm.default(
                x, *(p or (None, None)), shape[0], channels, spatial, groups, 1e-5
            )

    check_op(norm, _randn(*shape), *params)


@pytest.mark.parametrize("op", ["aten.group_norm.default"])
def test_group_norm_float16_noncontiguous(op):
    check_op(
        lambda x, w, b: aten.group_norm.default(x, 2, w, b, 1e-5),
        _randn(2, 4, 5, 5, dtype=torch.float16),
        _randn(4).half(),
        _randn(4).half(),
    )
    check_op(
        lambda x: aten.group_norm.default(x, 2, None, None, 1e-5),
        _randn(2, 4, 5, 6),
        transpose_inputs=True,
    )


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 5, 6), (1, 3, 2, 3, 4)])
@pytest.mark.parametrize("op", ["aten.instance_norm.default"])
def test_instance_norm(op, shape):
    mean, var = _stats(3)
    check_op(
        lambda x, w, b: aten.instance_norm.default(x, w, b, None, None, True, 0.1, 1e-5, False),
        _randn(*shape),
        _randn(3),
        _randn(3),
    )
    check_op(
        lambda x: aten.instance_norm.default(x, None, None, None, None, True, 0.1, 1e-5, False),
        _randn(*shape),
    )
    check_op(
        lambda x, m, v: aten.instance_norm.default(x, None, None, m, v, False, 0.1, 1e-5, False),
        _randn(*shape),
        mean,
        var,
    )


# --- linear algebra ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5), (2, 2, 3, 5), (0, 5)])
@pytest.mark.parametrize("op", ["aten.linear.default"])
def test_linear(op, shape):
    check_op(aten.linear.default, _randn(*shape), _randn(4, 5), _randn(4))
    check_op(aten.linear.default, _randn(*shape), _randn(4, 5))


@pytest.mark.parametrize("op", ["aten.linear.default"])
def test_linear_noncontiguous_float16(op):
    check_op(aten.linear.default, _randn(2, 5, 5), _randn(4, 5), transpose_inputs=True)
    check_op(aten.linear.default, _randn(2, 3, 5).half(), _randn(4, 5).half(), _randn(4).half())


# (op, shapes of the two operands)
MATMUL_CASES = [
    ("aten.matmul.default", (4,), (4,)),
    ("aten.matmul.default", (4,), (4, 3)),
    ("aten.matmul.default", (3, 4), (4,)),
    ("aten.matmul.default", (3, 4), (4, 5)),
    ("aten.matmul.default", (2, 3, 4), (4,)),
    ("aten.matmul.default", (4,), (2, 4, 5)),
    ("aten.matmul.default", (2, 1, 3, 4), (5, 4, 2)),
    ("aten.matmul.default", (2, 3, 4), (4, 6)),
    ("aten.matmul.default", (0, 3, 4), (4, 6)),
    ("aten.mm.default", (3, 4), (4, 5)),
    ("aten.mm.default", (1, 7), (7, 1)),
    ("aten.bmm.default", (2, 3, 4), (2, 4, 5)),
    ("aten.bmm.default", (0, 3, 4), (0, 4, 5)),
]


@pytest.mark.parametrize("op, a, b", MATMUL_CASES)
def test_matmul(op, a, b):
    overload = aten_op(op)
    check_op(overload, _randn(*a), _randn(*b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op", ["aten.matmul.default", "aten.mm.default", "aten.bmm.default"])
def test_matmul_noncontiguous_float16(op):
    overload = aten_op(op)
    a, b = ((2, 4, 4), (2, 4, 4)) if op == "aten.bmm.default" else ((4, 4), (4, 4))
    check_op(overload, _randn(*a), _randn(*b), transpose_inputs=True, rtol=1e-5)
    check_op(overload, _randn(*a).half(), _randn(*b).half())


# (op, self shape, operand shapes, beta, alpha)
ADDMM_CASES = [
    ("aten.addmm.default", (3, 5), (3, 4), (4, 5), 1, 1),
    ("aten.addmm.default", (5,), (3, 4), (4, 5), 0.5, 2.0),
    ("aten.addmm.default", (3, 1), (3, 4), (4, 5), 2, 1),
    ("aten.addmm.default", (3, 5), (3, 4), (4, 5), 0, 1.5),
    ("aten.baddbmm.default", (2, 3, 5), (2, 3, 4), (2, 4, 5), 1, 1),
    ("aten.baddbmm.default", (3, 5), (2, 3, 4), (2, 4, 5), 0.25, -1.0),
    ("aten.baddbmm.default", (2, 3, 5), (2, 3, 4), (2, 4, 5), 0, 1),
]


@pytest.mark.parametrize("op, self_shape, a, b, beta, alpha", ADDMM_CASES)
def test_addmm(op, self_shape, a, b, beta, alpha):
    overload = aten_op(op)
    bias = _randn(*self_shape)
    if beta == 0:
        bias[..., 0] = float("nan")  # beta=0 ignores self, NaN included
    check_op(overload, bias, _randn(*a), _randn(*b), beta=beta, alpha=alpha, rtol=1e-5)


@pytest.mark.parametrize(
    "op, equation, shapes",
    [
        ("aten.einsum.default", "ij,jk->ik", [(3, 4), (4, 5)]),
        ("aten.einsum.default", "bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("aten.einsum.default", "i,j->ij", [(3,), (4,)]),
        ("aten.einsum.default", "bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        ("aten.einsum.default", "...ij->...ji", [(2, 3, 4)]),
        ("aten.einsum.default", "ij->", [(3, 4)]),
        ("aten.einsum.default", "ii->i", [(4, 4)]),
        ("aten.einsum.default", "ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ],
)
def test_einsum(op, equation, shapes):
    check_op(aten.einsum.default, equation, [_randn(*s) for s in shapes], rtol=1e-5)


# --- attention --------------------------------------------------------------------------

# (op, q, k, v shapes, mask kind, is_causal, scale, enable_gqa)
ATTENTION_CASES = [
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 5, 8),
        (2, 3, 6, 8),
        (2, 3, 6, 8),
        None,
        False,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 5, 8),
        (2, 3, 6, 8),
        (2, 3, 6, 8),
        "float",
        False,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 5, 8),
        (2, 3, 6, 8),
        (2, 3, 6, 8),
        "bool",
        False,
        0.3,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 5, 8),
        (2, 3, 5, 8),
        (2, 3, 5, 8),
        None,
        True,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 4, 8),
        (2, 3, 6, 8),
        (2, 3, 6, 8),
        None,
        True,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (1, 4, 5, 8),
        (1, 2, 5, 8),
        (1, 2, 5, 8),
        None,
        True,
        None,
        True,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (1, 6, 5, 8),
        (1, 2, 7, 8),
        (1, 2, 7, 8),
        "float",
        False,
        None,
        True,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (3, 5, 8),
        (3, 6, 8),
        (3, 6, 8),
        None,
        False,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (3, 5, 8),
        (3, 6, 8),
        (3, 6, 8),
        "float3d",
        False,
        0.5,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (3, 5, 8),
        (3, 5, 8),
        (3, 5, 8),
        None,
        True,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 2, 3, 5, 8),
        (2, 2, 3, 6, 8),
        (2, 2, 3, 6, 8),
        "bool",
        False,
        None,
        False,
    ),
    (
        "aten.scaled_dot_product_attention.default",
        (2, 3, 5, 8),
        (2, 3, 6, 8),
        (2, 3, 6, 4),
        None,
        False,
        None,
        False,
    ),
]


@pytest.mark.parametrize("op, q, k, v, mask, is_causal, scale, gqa", ATTENTION_CASES)
def test_attention(op, q, k, v, mask, is_causal, scale, gqa):
    tensors = [_randn(*q), _randn(*k), _randn(*v)]
    if mask == "float":
        tensors.append(_randn(q[-2], k[-2]))
    elif mask == "float3d":
        tensors.append(_randn(q[0], q[-2], k[-2]))
    elif mask == "bool":
        allowed = torch.rand(q[-2], k[-2]) > 0.4
        allowed[:, 0] = True  # every query sees a key (test_attention_query_that_sees_no_key)
        tensors.append(allowed)

    def sdpa(query, key, value, attn_mask=None):
        return aten.scaled_dot_product_attention.default(
            query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=gqa
        )

    check_op(sdpa, *tensors, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_attention_query_that_sees_no_key(kind):
    # Left padding masks every key of the first queries: torch returns zeros there, where
    # a softmax over nothing would average the values (mx.fast) or give NaN.
    allowed = torch.rand(5, 6, generator=torch.Generator().manual_seed(2)) > 0.4
    allowed[1:, 0] = True
    allowed[0] = False
    mask = allowed if kind == "bool" else torch.zeros(5, 6).masked_fill(~allowed, float("-inf"))

    def sdpa(query, key, value, attn_mask):
        return aten.scaled_dot_product_attention.default(query, key, value, attn_mask)

    check_op(sdpa, _randn(2, 3, 5, 8), _randn(2, 3, 6, 8), _randn(2, 3, 6, 8), mask, atol=1e-5)


@pytest.mark.parametrize("op", ["aten.scaled_dot_product_attention.default"])
def test_attention_over_an_empty_head_scales_as_torch(op):
    # torch's default scale is 1 / sqrt(E) in C++, inf for E = 0 (every score is then equal
    # and the values are averaged); in Python `0 ** -0.5` raises ZeroDivisionError.
    def sdpa(query, key, value):
        return aten.scaled_dot_product_attention.default(query, key, value)

    source = check_op(sdpa, _randn(1, 2, 3, 0), _randn(1, 2, 4, 0), _randn(1, 2, 4, 5), atol=1e-5)
    assert "scalar_power(tensors.shape[-1], -0.5)" in source


@pytest.mark.parametrize("op", ["aten.scaled_dot_product_attention.default"])
def test_attention_noncontiguous_float16(op):
    def sdpa(query, key, value):
        return aten.scaled_dot_product_attention.default(query, key, value, is_causal=True)

    check_op(
        sdpa,
        _randn(1, 2, 6, 6),
        _randn(1, 2, 6, 6),
        _randn(1, 2, 6, 6),
        transpose_inputs=True,
        rtol=1e-4,
    )
    check_op(sdpa, *(_randn(1, 2, 5, 8, dtype=torch.float16) for _ in range(3)))


# --- embeddings -------------------------------------------------------------------------


@pytest.mark.parametrize("indices", [(7,), (2, 5), (2, 3, 4), (0,)])
@pytest.mark.parametrize("op", ["aten.embedding.default"])
def test_embedding(op, indices):
    weight = _randn(10, 4)
    check_op(aten.embedding.default, weight, torch.randint(0, 10, indices))
    check_op(aten.embedding.default, weight, torch.randint(0, 10, indices), 2)  # padding_idx
    check_op(aten.embedding.default, weight.half(), torch.randint(0, 10, indices))


# (op, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx)
EMBEDDING_BAG_CASES = [
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 4], 0, False, False, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 3, 3, 6], 1, False, False, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 2, 5], 2, False, False, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 2, 5], 0, True, False, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 2, 5, 8], 1, False, True, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 5, 4, 3, 2, 9], [0, 2, 5, 8], 0, True, True, -1),
    ("aten._embedding_bag.default", [1, 2, 4, 2, 4, 3, 2, 9], [0, 3, 5], 1, False, False, 2),
    ("aten._embedding_bag.default", [2, 2, 4, 5, 4, 3, 2, 9], [0, 2, 5], 2, False, False, 2),
]


@pytest.mark.parametrize("op, indices, offsets, mode, weighted, last, padding", EMBEDDING_BAG_CASES)
def test_embedding_bag(op, indices, offsets, mode, weighted, last, padding):
    weight = _randn(10, 3)
    tensors = [weight, torch.tensor(indices), torch.tensor(offsets)]
    if weighted:
        tensors.append(_randn(len(indices)))

    def bag(w, i, o, psw=None):
        return aten._embedding_bag.default(w, i, o, False, mode, False, psw, last, padding)[0]

    check_op(bag, *tensors)


# --- distances --------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 1.0, 2.0, 3.0, float("inf")])
@pytest.mark.parametrize("shapes", [((4, 3), (5, 3)), ((2, 4, 3), (2, 6, 3))])
@pytest.mark.parametrize("op", ["aten._cdist_forward.default"])
def test_cdist(op, p, shapes):
    a, b = shapes
    check_op(
        lambda x1, x2: aten._cdist_forward.default(x1, x2, p, None),
        _randn(*a),
        _randn(*b),
        rtol=1e-5,
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 0.5, float("inf")])
@pytest.mark.parametrize("op", ["aten._pdist_forward.default"])
def test_pdist(op, p):
    check_op(aten._pdist_forward.default, _randn(5, 3), p, rtol=1e-5)
    check_op(aten._pdist_forward.default, _randn(1, 3), p)


# --- FFT --------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", [0, 1, 2])
@pytest.mark.parametrize("dims, onesided", [([2], True), ([1, 2], True), ([0, 2], False)])
@pytest.mark.parametrize("op", ["aten._fft_r2c.default"])
def test_fft_r2c(op, normalization, dims, onesided):
    check_op(
        aten._fft_r2c.default, _randn(4, 6, 8), dims, normalization, onesided, atol=1e-4, rtol=1e-5
    )


@pytest.mark.parametrize("normalization", [0, 1, 2])
@pytest.mark.parametrize("dims, last", [([2], 8), ([2], 9), ([1, 2], 8)])
@pytest.mark.parametrize("op", ["aten._fft_c2r.default"])
def test_fft_c2r(op, normalization, dims, last):
    spectrum = torch.fft.rfftn(_randn(3, 6, last), dim=dims)
    check_op(aten._fft_c2r.default, spectrum, dims, normalization, last, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("normalization", [0, 1, 2])
@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("op", ["aten._fft_c2c.default"])
def test_fft_c2c(op, normalization, forward):
    signal = torch.complex(_randn(3, 8), _randn(3, 8))
    check_op(aten._fft_c2c.default, signal, [1], normalization, forward, atol=1e-4, rtol=1e-5)


# --- modules: parameters and buffers as weights -----------------------------------------


def _batch_norm(module_type, channels):
    module = module_type(channels)
    module.running_mean.normal_()
    module.running_var.uniform_(0.5, 2.0)
    module.weight.data.normal_()
    module.bias.data.normal_()
    return module


MODULES = [
    (
        "aten._native_batch_norm_legit_no_training.default",
        lambda: _batch_norm(torch.nn.BatchNorm2d, 3),
        (2, 3, 5, 6),
    ),
    (
        "aten._native_batch_norm_legit_no_training.default",
        lambda: _batch_norm(torch.nn.BatchNorm1d, 4),
        (5, 4),
    ),
    (
        "aten._native_batch_norm_legit_no_training.default",
        lambda: _batch_norm(torch.nn.BatchNorm1d, 4),
        (2, 4, 7),
    ),
    (
        "aten._native_batch_norm_legit_no_training.default",
        lambda: _batch_norm(torch.nn.BatchNorm3d, 2),
        (1, 2, 3, 4, 5),
    ),
    ("aten.group_norm.default", lambda: torch.nn.GroupNorm(2, 6), (2, 6, 5, 4)),
    ("aten.group_norm.default", lambda: torch.nn.GroupNorm(3, 6, affine=False), (2, 6, 7)),
    ("aten.layer_norm.default", lambda: torch.nn.LayerNorm(8), (2, 5, 8)),
    (
        "aten.layer_norm.default",
        lambda: torch.nn.LayerNorm((5, 8), elementwise_affine=False),
        (2, 5, 8),
    ),
    ("aten.layer_norm.default", lambda: torch.nn.LayerNorm([5, 8], bias=False), (2, 5, 8)),
    ("aten.rms_norm.default", lambda: torch.nn.RMSNorm(8), (2, 5, 8)),
    ("aten.linear.default", lambda: torch.nn.Linear(5, 4), (2, 3, 5)),
    ("aten.linear.default", lambda: torch.nn.Linear(5, 4, bias=False), (5,)),
    ("aten.instance_norm.default", lambda: torch.nn.InstanceNorm2d(3, affine=True), (2, 3, 5, 6)),
]


@pytest.mark.parametrize("op, factory, shape", MODULES)
def test_module(op, factory, shape):
    torch.manual_seed(0)
    check_module(factory(), _randn(*shape))


@pytest.mark.parametrize("op", ["aten.embedding.default"])
def test_embedding_module(op):
    module = torch.nn.Embedding(10, 4, padding_idx=0)
    check_module(module, torch.randint(0, 10, (2, 5)))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("op", ["aten.embedding_bag.padding_idx"])
def test_embedding_bag_module(op, mode):
    module = torch.nn.EmbeddingBag(10, 3, mode=mode, padding_idx=1 if mode == "mean" else None)
    check_module(module, torch.tensor([1, 2, 4, 5, 4, 3, 1, 9]), torch.tensor([0, 3, 3, 5]))
    check_module(module, torch.tensor([[1, 2, 4], [5, 4, 1]]))  # 2-d: one bag per row


@pytest.mark.parametrize(
    "op", ["aten._embedding_bag_forward_only.default", "aten.embedding_bag.default"]
)
def test_embedding_bag_overloads(op):
    overload = aten_op(op)

    def bag(w, i, o):
        return overload(w, i, o, False, 1, False, None, False)[0]

    check_op(bag, _randn(10, 3), torch.tensor([1, 2, 4, 5, 4, 3]), torch.tensor([0, 2, 2]))


class _ConvNorm(torch.nn.Module):
    """A convolution into batch norm and group norm: the norms run channels-last."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3) * 0.3)
        self.bn = _batch_norm(torch.nn.BatchNorm2d, 4)

    def forward(self, x):
        y = torch.nn.functional.conv2d(x, self.weight, padding=1)
        y = torch.nn.functional.batch_norm(
            y, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias
        )
        return torch.nn.functional.group_norm(y, 2)


@pytest.mark.parametrize("op", ["aten._native_batch_norm_legit_no_training.default"])
def test_norms_after_conv_stay_channels_last(op):
    import numpy as np

    module = _ConvNorm().eval()
    x = _randn(2, 3, 6, 6)
    # The conv weight is stored permuted; the norms' parameters are not.
    import mlx.core as mx

    with torch.no_grad():
        expected = module(x)
    generated = generate(module, (x,))
    state = module.state_dict()
    weights = []
    for name, source, layout, _ in generated["weights"]:
        array = state[source].numpy()
        weights.append(
            (name, mx.array(np.moveaxis(array, 1, -1) if layout == "conv_weight" else array))
        )
    namespace: dict = {"__name__": "module_test"}
    exec(compile(generated["source"], "model.py", "exec"), namespace)
    model = namespace["Model"]()
    model.load_weights(weights)
    assert_close(expected, model(mx.array(x.numpy())), 1e-5)
    assert generated["source"].count("mx.transpose(") <= 2
