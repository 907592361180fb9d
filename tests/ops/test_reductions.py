"""Numerical checks of the reduction family (cpp/src/ops/reductions.cpp) against torch.

Each test is parametrized by the full overload name first, so that its id names the op.
The cases of one op run in one test to keep the export/generate/run overhead down.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ops.harness import (
    assert_close,
    bf16,
    bools,
    case,
    check_cases,
    f16,
    f32,
    generate,
    i32,
    i64,
    overload,
    run_renamed,
    run_source,
)

torch.manual_seed(0)


def distinct(*shape, dtype=torch.float32):
    """Values without ties, so that sort and top-k indices are unique."""
    n = 1
    for size in shape:
        n *= size
    return (torch.randperm(n) - n // 2).to(dtype).reshape(shape)


SUM_LIKE = [
    case(f32(3, 4, 5), [1]),
    case(f32(3, 4, 5), [-1, 0], True),
    case(f32(3, 4, 5), dim=None),
    case(f32(3, 4, 5), []),
    case(f32(2, 3, 4), [1], t=True),
    case(f32(0, 4), [0]),
    case(f32(0, 4), [1], True),
    case(f16(4, 6), [1], atol=2e-2),
    case(bf16(4, 6), [0], atol=5e-2),
]

CASES = {
    "aten.sum.dim_IntList": [
        *SUM_LIKE,
        case(i32(3, 4), [1]),
        case(bools(3, 4), [0]),
        case(i64(3, 4), [0], dtype=torch.float32),
        case(torch.tensor(2.5), [0]),
    ],
    "aten.sum.default": [
        case(f32(3, 4)),
        case(f32(0, 3)),
        case(torch.tensor(1.5)),
        case(i32(5)),
        case(bools(2, 3)),
        case(f16(3, 4), atol=2e-2),
        case(f32(3, 4), dtype=torch.float16, atol=2e-2),
        case(f32(3, 4), t=True),
    ],
    "aten.mean.dim": [*SUM_LIKE, case(i32(3, 4), [1], dtype=torch.float32)],
    "aten.mean.default": [
        case(f32(3, 4)),
        case(f32(3, 4), t=True),
        case(f16(3, 4)),
        case(torch.tensor(3.0)),
        case(f32(0, 2)),
    ],
    "aten.amax.default": [
        case(f32(3, 4, 5), [1]),
        case(f32(3, 4, 5), [-1, 0], True),
        case(f32(3, 4, 5)),
        case(f32(2, 3, 4), [1], t=True),
        case(i32(3, 4), [0]),
        case(bools(3, 4), [1]),
        case(f16(3, 4), [1]),
        case(f32(0, 4), [1]),
        case(torch.tensor(2.0), [0]),
    ],
    "aten.amin.default": [
        case(f32(3, 4, 5), [2]),
        case(f32(3, 4, 5), [], True),
        case(f32(2, 3, 4), [-1], t=True),
        case(i64(3, 4), [0], True),
        case(bf16(3, 4), [1]),
    ],
    "aten.max.default": [case(f32(3, 4)), case(i32(5)), case(f32(3, 4), t=True), case(f16(2, 3))],
    "aten.min.default": [case(f32(3, 4)), case(i64(5)), case(torch.tensor(2.0)), case(bools(4))],
    "aten.max.dim": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4, 5), -1, True),
        case(f32(2, 3, 4), 1, t=True),
        case(torch.tensor([[1, 3, 3, 0], [2, 2, 2, 2]], dtype=torch.int32), 1),  # ties: first
        case(f16(3, 4), 0),
        case(torch.tensor(5.0), 0),
    ],
    "aten.min.dim": [
        case(f32(3, 4, 5), 0),
        case(f32(3, 4), -2, True, t=True),
        case(torch.tensor([[1, 0, 0, 3], [2, 2, 2, 2]]), 1),
        case(bf16(3, 4), 1),
    ],
    "aten.argmax.default": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4, 5), -1, True),
        case(f32(3, 4, 5)),
        case(f32(3, 4), dim=None, keepdim=True),
        case(f32(2, 3, 4), 1, t=True),
        case(torch.tensor([[1, 3, 3, 0], [2, 2, 2, 2]], dtype=torch.int32), 1),
        case(f16(3, 4), 0),
        case(torch.tensor(5.0)),
    ],
    "aten.argmin.default": [
        case(f32(3, 4, 5), 0),
        case(f32(3, 4), dim=None),
        case(f32(3, 4), -1, True, t=True),
        case(torch.tensor([[1, 0, 0, 3], [2, 2, 2, 2]]), 1),
    ],
    "aten.prod.default": [
        case(f32(3, 4) * 0.5 + 1),
        case(i32(4)),
        case(bools(3)),
        case(f32(0, 3)),
        case(f32(3, 3), dtype=torch.float16, atol=2e-2),
    ],
    "aten.prod.dim_int": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4), -1, True, t=True),
        case(i64(3, 4), 0),
        case(f16(3, 4), 1, atol=2e-2),
        case(f32(0, 4), 0),
        case(i32(3, 4), 1, dtype=torch.float32),
    ],
    "aten.var.correction": [
        case(f32(3, 4, 5), [1]),
        case(f32(3, 4, 5), dim=None),
        case(f32(3, 4, 5), [0, 2], correction=0, keepdim=True),
        case(f32(3, 4, 5), [-1], correction=2.5),
        case(f32(2, 3, 4), [1], t=True),
        case(f32(100) + 1e4, [0], atol=1e-2),  # a large mean must not cancel
        case(f16(4, 6), [1]),
        case(bf16(4, 6), [1], atol=5e-2),
        case(f32(1, 3), [0]),  # N - correction = 0: nan as in torch
    ],
    "aten.var.dim": [case(f32(3, 4, 5), [1]), case(f32(3, 4), [0], False, True, t=True)],
    "aten.var.default": [case(f32(3, 4)), case(f32(3, 4), False)],
    "aten.std.correction": [
        case(f32(3, 4, 5), [1]),
        case(f32(3, 4, 5), dim=None, correction=0),
        case(f32(2, 3, 4), [-1, 0], keepdim=True, t=True),
        case(f16(4, 6), [1]),
    ],
    "aten.std.dim": [case(f32(3, 4, 5), [1]), case(f32(3, 4), [0], False, True)],
    "aten.std.default": [case(f32(3, 4)), case(f32(5), False)],
    "aten.var_mean.correction": [
        case(f32(3, 4, 5), [1]),
        case(f32(3, 4), dim=None, correction=0, keepdim=True),
        case(f32(2, 3, 4), [-1], t=True),
    ],
    "aten.std_mean.correction": [case(f32(3, 4, 5), [1]), case(f32(3, 4), [0], keepdim=True)],
    "aten.linalg_vector_norm.default": [
        case(f32(3, 4, 5)),
        case(f32(3, 4, 5), 2, [1]),
        case(f32(3, 4, 5), 1, [-1], True),
        case(f32(3, 4), 0, [1]),
        case(f32(3, 4), 3.5, [1], t=True),
        case(f16(3, 4), 2, [1]),
        case(f32(0, 4), 2, [0]),
    ],
    "aten.aminmax.default": [
        case(f32(3, 4)),
        case(f32(3, 4), dim=1),
        case(f32(3, 4), dim=-1, keepdim=True, t=True),
        case(i32(3, 4), dim=0),
    ],
    "aten.count_nonzero.default": [case(i64(3, 4)), case(f32(3, 4), 1), case(bools(3, 4), -1)],
    "aten.count_nonzero.dim_IntList": [case(i64(3, 4, 2), [0, 2]), case(f32(3, 4), [-1], t=True)],
    "aten.all.default": [case(bools(3, 4)), case(torch.ones(3, 4)), case(i32(3)), case(f32(0))],
    "aten.all.dim": [
        case(bools(3, 4), 1),
        case(bools(3, 4), -1, True, t=True),
        case(torch.tensor([[1, 2], [0, 3]], dtype=torch.uint8), 1),
        case(f32(3, 4), 0),
    ],
    "aten.all.dims": [case(bools(3, 4, 2), [0, 2]), case(bools(3, 4), dim=None, keepdim=True)],
    "aten.any.default": [case(bools(3, 4)), case(torch.zeros(3, 4)), case(i64(3)), case(f32(0))],
    "aten.any.dim": [case(bools(3, 4), 1), case(bools(3, 4), -2, True, t=True), case(i32(3, 4), 0)],
    "aten.any.dims": [
        case(bools(3, 4, 2), [0, 2]),
        case(bools(3, 4), [-1], True),
        case(bools(3, 4), dim=None),
        case(torch.zeros(2, 3, dtype=torch.bool), [1]),
    ],
    "aten.logsumexp.default": [
        case(f32(3, 4, 5), [1]),
        case(f32(3, 4, 5), [0, -1], True),
        case(f32(2, 3, 4), [1], t=True),
        case(f32(3, 4) * 50, [1]),  # large values must not overflow
        case(torch.full((2, 3), float("-inf")), [1]),
        case(f16(3, 4), [1]),
        case(i64(3, 4), [1]),
    ],
    "aten.cumsum.default": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4), -1, t=True),
        case(i32(3, 4), 0),
        case(bools(3, 4), 1),
        case(f32(3, 4), 1, dtype=torch.float16, atol=2e-2),
        case(f16(3, 4), 0, atol=2e-2),
        case(f32(0, 4), 0),
        case(torch.tensor(3.0), 0),
    ],
    "aten.cumprod.default": [
        case(f32(3, 4) * 0.5 + 1, 1),
        case(f32(3, 4), -2, t=True),
        case(i64(3, 4), 1),
        case(torch.tensor(3.0), 0),
    ],
    "aten.softmax.int": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4), -1, t=True),
        case(f32(3, 4), 0, torch.float16, atol=1e-2),
        case(f16(3, 4), -1),
        case(torch.tensor(3.0), 0),
        case(f32(0, 4), 1),
    ],
    "aten._softmax.default": [
        case(f32(3, 4, 5), -1, False),
        case(f32(2, 3, 4), 1, False, t=True),
        case(f16(3, 4), 1, False),
        case(bf16(3, 4), 0, False),
        case(f32(3, 4) * 100, 1, False),
    ],
    "aten.log_softmax.int": [
        case(f32(3, 4, 5), 1),
        case(f32(3, 4), -1, t=True),
        case(f32(3, 4), 1, torch.float16, atol=1e-2),
        case(torch.tensor(3.0), 0),
    ],
    "aten._log_softmax.default": [
        case(f32(3, 4, 5), -1, False),
        case(f32(2, 3, 4), 0, False, t=True),
        case(f16(3, 4), 1, False),
        case(f32(3, 4) * 100, 1, False),
    ],
    "aten.sort.default": [
        case(distinct(3, 4, 5), 1),
        case(distinct(3, 4, 5), -1, True),
        case(distinct(3, 4), 0, t=True),
        case(distinct(3, 4, dtype=torch.int32), 1, True),
        case(distinct(3, 4, dtype=torch.float16), 1),
        case(f32(0, 4)),
        case(torch.tensor(2.0)),
    ],
    "aten.sort.stable": [
        case(i32(4, 12), stable=True, dim=1),
        case(i64(4, 12), stable=True, dim=1, descending=True),  # ties keep their order
        case(bools(3, 9), stable=True, dim=-1, descending=True),
        case(torch.randint(0, 4, (3, 9), dtype=torch.uint8), stable=True, descending=True),
        case(distinct(3, 4), stable=False, dim=0, t=True),
    ],
    "aten.argsort.default": [
        case(distinct(3, 4, 5), 1),
        case(distinct(3, 4), -1, True, t=True),
        case(distinct(5, dtype=torch.int64), 0, True),
    ],
    "aten.argsort.stable": [
        case(i32(4, 12), stable=True, dim=1),
        case(i32(4, 12), stable=True, dim=0, descending=True),
    ],
    "aten.topk.default": [
        case(distinct(3, 8), 3),
        case(distinct(3, 8), 2, 0),
        case(distinct(3, 4, 5), 2, -1, False),
        case(distinct(3, 6), 3, -1, True, True, t=True),
        case(distinct(3, 8, dtype=torch.int32), 8),
        case(distinct(4, 8, dtype=torch.float16), 1, 1),
        case(distinct(3, 5), 0),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op(name):
    check_cases(name, CASES[name])


class _TopkUnsorted(torch.nn.Module):
    def forward(self, x):
        return torch.ops.aten.topk.default(x, 4, 1, True, False)


def test_topk_unsorted_has_the_same_elements():
    # sorted=False lets torch return the top k in any order: compare them as sets.
    x = distinct(3, 10)
    source = generate(_TopkUnsorted(), (x,))["source"]
    values, indices = run_source(source, (x,))
    expected = torch.topk(x, 4, 1, True, True)
    np.testing.assert_array_equal(np.sort(np.array(values), 1), expected.values.sort(1).values)
    np.testing.assert_array_equal(np.sort(np.array(indices), 1), expected.indices.sort(1).values)


class _Scan(torch.nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x, 1)


@pytest.mark.parametrize(
    ("name", "inplace"),
    [
        ("aten.cumsum.default", "aten.cumsum_.default"),
        ("aten.cumprod.default", "aten.cumprod_.default"),
    ],
)
def test_inplace_names(name, inplace):
    """The functional op's node renamed to the in-place overload (which normalise_target()
    maps back) translates to the same result."""
    x = f32(3, 4)
    assert_close(
        overload(name)(x, 1), run_renamed(_Scan(overload(name)), (x,), name, inplace), 1e-5
    )
