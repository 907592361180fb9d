"""Numerical checks of the indexing family (cpp/src/ops/indexing.cpp) against torch.

Each test is parametrized by the full overload name first, so that its id names the op.
The cases of one op run in one test to keep the export/generate/run overhead down.
"""

from __future__ import annotations

import pytest
import torch
from tests.ops.harness import (
    Fn,
    assert_close,
    bools,
    case,
    check_cases,
    f32,
    generate,
    i64,
    run_renamed,
    run_source,
)

torch.manual_seed(0)


def idx(*values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


def rand_index(high, *shape):
    return torch.randint(0, high, shape)


def distinct_rows(rows, high, cols):
    """A (rows, cols) index whose columns hold distinct values: a scatter along dim 0
    without two writes to one place (torch leaves the winner undefined)."""
    return torch.stack([torch.randperm(high)[:rows] for _ in range(cols)], 1)


def check_fn(fn, *tensors, atol=1e-5):
    """check_op for calls whose arguments the harness cannot template (None in a list)."""
    with torch.no_grad():
        expected = fn(*tensors)
    actual = run_source(generate(Fn(fn), tensors)["source"], tensors)
    assert_close(expected, actual, atol)


def check_renamed(fn, tensors, functional: str, inplace: str):
    """Exports the functional op, renames its node to the in-place overload (which
    normalise_target() maps back) and checks that the result is unchanged."""
    with torch.no_grad():
        expected = fn(*tensors)
    assert_close(expected, run_renamed(Fn(fn), tensors, functional, inplace), 1e-5)


X = f32(4, 5)
CASES = {
    "aten.index.Tensor": [
        case(X, [idx(0, 3, 1)]),
        case(X, [idx(-1, 2)]),
        case(X, [idx(0, 3, 1), idx(4, 0, 2)]),
        case(X, [rand_index(4, 3, 1), rand_index(5, 1, 2)]),
        case(X, [torch.tensor(2)]),
        case(X, [idx(1, 2, dtype=torch.int32)]),
        case(f32(2, 3, 4), [idx(1, 0), idx(2, -1)]),
        case(i64(4, 2), [rand_index(4, 2, 3)]),
        case(X, [idx(dtype=torch.int64)]),
    ],
    "aten.index_put.default": [
        case(X, [idx(0, 3, 1)], f32(3, 5)),
        case(X, [idx(0, 3, 1)], f32(5)),
        case(X, [idx(0, -1)], torch.tensor(2.0)),
        case(X, [idx(0, 3, 1), idx(4, 0, 2)], f32(3)),
        case(X, [idx(0, 0, 1)], f32(3, 5), True),
        case(X, [idx(0, 0, 1), idx(2, 2, 2)], f32(3), True),
        case(i64(4, 5), [idx(1, 2)], i64(2, 5)),
        case(X, [torch.tensor([True, False, True, False])], f32(2, 5)),
        case(X, [torch.tensor([True, False, True, False])], torch.tensor(7.0)),
        case(X, [X > 0], torch.tensor(0.0)),
        case(X, [torch.tensor([True, False, True, True])], f32(3, 5), True),
    ],
    "aten.index_select.default": [
        case(X, 0, idx(0, 3, 3)),
        case(X, -1, idx(4, 1)),
        case(X, 1, torch.tensor(2)),
        case(X, 0, idx(dtype=torch.int64)),
        case(f32(2, 3, 4), 1, idx(2, 0, 1, 2)),
        case(i64(4, 5), 0, idx(1, dtype=torch.int32)),
    ],
    "aten.index_add.default": [
        case(X, 0, idx(0, 0, 3), f32(3, 5)),
        case(X, 1, idx(4, 1), f32(4, 2), alpha=2.0),
        case(X, -1, idx(0, 0), f32(4, 2)),
        case(i64(4, 5), 0, idx(1, 1), i64(2, 5)),
    ],
    "aten.gather.default": [
        case(X, 1, rand_index(5, 4, 3)),
        case(X, 0, rand_index(4, 2, 3)),
        case(X, -1, rand_index(5, 4, 5)),
        case(f32(2, 3, 4), 1, rand_index(3, 2, 2, 4)),
        case(f32(3, 4), 1, rand_index(4, 3, 3), t=True),
        case(i64(4, 5), 0, rand_index(4, 4, 5)),
        case(X, 1, rand_index(5, 4, 0)),
    ],
    "aten.scatter.src": [
        case(X, 0, distinct_rows(2, 4, 5), f32(2, 5)),
        case(X, 0, distinct_rows(2, 4, 3), f32(3, 5)),  # src larger than index
        case(X, 1, distinct_rows(5, 5, 4).T.contiguous(), f32(4, 5)),
        case(X, -2, distinct_rows(4, 4, 5), f32(4, 5)),
        case(f32(4, 3), 0, distinct_rows(2, 4, 3), f32(2, 3), t=True),
        case(i64(4, 5), 0, distinct_rows(1, 4, 5), i64(1, 5)),
    ],
    "aten.scatter.value": [
        case(X, 0, distinct_rows(2, 4, 5), 1.5),
        case(X, 1, distinct_rows(3, 5, 4).T.contiguous(), -2.0),
        case(i64(4, 5), 0, distinct_rows(2, 4, 5), 9),
    ],
    "aten.scatter.reduce": [
        case(X, 0, rand_index(4, 3, 5), f32(3, 5), reduce="add"),
        case(X, 1, rand_index(5, 4, 6), f32(4, 6), reduce="multiply"),
    ],
    "aten.scatter.value_reduce": [
        case(X, 0, rand_index(4, 3, 5), 2.0, reduce="add"),
        case(X, 0, rand_index(4, 3, 5), 3.0, reduce="multiply"),
    ],
    "aten.scatter_add.default": [
        case(X, 0, rand_index(4, 6, 5), f32(6, 5)),
        case(X, 1, rand_index(5, 4, 2), f32(4, 3)),
        case(f32(4, 3), -1, rand_index(3, 4, 3), f32(4, 3), t=True),
        case(i64(4, 5), 0, rand_index(4, 3, 5), i64(3, 5)),
    ],
    "aten.scatter_reduce.two": [
        case(X, 0, rand_index(4, 6, 5), f32(6, 5), reduce, include_self=include)
        for reduce in ("sum", "prod", "mean", "amax", "amin")
        for include in (True, False)
    ]
    + [
        case(i64(4, 5), 0, rand_index(4, 6, 5), i64(6, 5), "mean", include_self=False),
        case(i64(4, 5), 1, rand_index(5, 4, 7), i64(4, 7), "amax"),
        case(f32(4, 3), 0, rand_index(4, 3, 3), f32(3, 3), "sum", t=True),
    ],
    "aten.slice_scatter.default": [
        case(f32(5, 4), f32(2, 4), 0, 1, 3),
        case(f32(5, 4), f32(5, 2), 1, 2),
        case(f32(5, 4), f32(3, 4), 0, 0, 2**63 - 1, 2),
        case(f32(5, 4), f32(5, 2), -1, -2),
        case(f32(5, 4), f32(5, 4)),
        case(i64(5, 4), i64(1, 4), 0, 4, 5),
    ],
    "aten.select_scatter.default": [
        case(f32(3, 4), f32(4), 0, 1),
        case(f32(3, 4), f32(3), 1, -1),
        case(f32(2, 3, 4), f32(2, 4), 1, 2),
        case(i64(3, 4), i64(4), 0, 0),
    ],
    "aten.masked_scatter.default": [
        case(X, X > 0, f32(20)),
        case(X, bools(5), f32(4, 5)),
        case(X, X > 0, f32(30)),
        case(i64(4, 5), bools(4, 5), i64(20)),
        case(X, torch.zeros(4, 5, dtype=torch.bool), f32(0)),
        case(f32(3, 4), bools(3, 4), f32(3, 4), t=True),
    ],
    "aten.copy.default": [
        case(X, f32(4, 5)),
        case(X, f32(5)),
        case(X, i64(4, 5)),
        case(i64(4, 5), f32(4, 5) * 3),
        case(f32(3, 4), f32(3, 4), t=True),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op(name):
    check_cases(name, CASES[name])


INDEX_WITH_NONE = [
    (lambda x, i: torch.ops.aten.index.Tensor(x, [None, i]), (f32(3, 5), idx(4, 0, 2))),
    (lambda x, i: torch.ops.aten.index.Tensor(x, [None, i]), (f32(2, 5, 3), rand_index(5, 2, 2))),
    # Separated index tensors put the indexed axis first.
    (
        lambda x, i, j: torch.ops.aten.index.Tensor(x, [i, None, j]),
        (f32(2, 3, 4), idx(1, 0), idx(3, -1)),
    ),
    (
        lambda x, i, j: torch.ops.aten.index.Tensor(x, [None, i, j]),
        (f32(2, 3, 4), idx(1, 0), idx(3, 1)),
    ),
]
INDEX_PUT_WITH_NONE = [
    (
        lambda x, i, v: torch.ops.aten.index_put.default(x, [None, i], v),
        (f32(3, 5), idx(4, 0), f32(3, 2)),
    ),
    (
        lambda x, i, v: torch.ops.aten.index_put.default(x, [None, i], v, True),
        (f32(3, 5), idx(4, 4), f32(2)),
    ),
]


@pytest.mark.parametrize(
    ("name", "fn", "tensors"),
    [("aten.index.Tensor", fn, tensors) for fn, tensors in INDEX_WITH_NONE]
    + [("aten.index_put.default", fn, tensors) for fn, tensors in INDEX_PUT_WITH_NONE],
)
def test_none_entries(name, fn, tensors):
    check_fn(fn, *tensors)


def test_boolean_mask_index_is_refused():
    # "aten.index.Tensor" with a mask: its result size depends on the data.
    with pytest.raises(Exception, match="data-dependent"):
        generate(Fn(lambda x: x[x > 0]), (f32(3, 4),))


def test_index_put_does_not_change_its_input():
    # MLX item assignment rebinds the array it is applied to: the helper must copy first.
    def fn(x, i, v):
        return torch.ops.aten.index_put.default(x, [i], v), x * 1

    check_fn(fn, f32(4, 3), idx(1, 2), f32(2, 3))


@pytest.mark.parametrize(
    ("name", "inplace", "fn", "tensors"),
    [
        (
            "aten.index_put.default",
            "aten.index_put_.default",
            lambda x, i, v: torch.ops.aten.index_put.default(x, [i], v, True),
            (X, idx(0, 0), f32(2, 5)),
        ),
        (
            "aten.scatter.src",
            "aten.scatter_.src",
            lambda x, i, s: torch.ops.aten.scatter.src(x, 0, i, s),
            (X, distinct_rows(2, 4, 5), f32(2, 5)),
        ),
        (
            "aten.scatter.value",
            "aten.scatter_.value",
            lambda x, i: torch.ops.aten.scatter.value(x, 0, i, 2.0),
            (X, distinct_rows(2, 4, 5)),
        ),
        (
            "aten.scatter_add.default",
            "aten.scatter_add_.default",
            lambda x, i, s: torch.ops.aten.scatter_add.default(x, 1, i, s),
            (X, rand_index(5, 4, 3), f32(4, 3)),
        ),
        (
            "aten.scatter_reduce.two",
            "aten.scatter_reduce_.two",
            lambda x, i, s: torch.ops.aten.scatter_reduce.two(x, 0, i, s, "amax"),
            (X, rand_index(4, 3, 5), f32(3, 5)),
        ),
        (
            "aten.index_add.default",
            "aten.index_add_.default",
            lambda x, i, s: torch.ops.aten.index_add.default(x, 0, i, s),
            (X, idx(1, 1), f32(2, 5)),
        ),
        (
            "aten.masked_scatter.default",
            "aten.masked_scatter_.default",
            lambda x, m, s: torch.ops.aten.masked_scatter.default(x, m, s),
            (X, X > 0, f32(20)),
        ),
        (
            "aten.copy.default",
            "aten.copy_.default",
            lambda x, s: torch.ops.aten.copy.default(x, s),
            (X, f32(5)),
        ),
    ],
)
def test_inplace_names(name, inplace, fn, tensors):
    check_renamed(fn, tensors, name, inplace)
