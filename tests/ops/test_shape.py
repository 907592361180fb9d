"""Numerical checks of the shape family (cpp/src/ops/shape.cpp) against torch.

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
    f16,
    f32,
    i64,
    run_renamed,
)

torch.manual_seed(0)


BIG = 2**63 - 1  # what torch.export writes for an open-ended slice

VIEW = [
    case(f32(2, 3, 4), [6, 4]),
    case(f32(2, 3, 4), [-1]),
    case(f32(2, 3, 4), [2, -1, 2]),
    case(f32(6), [1, 6, 1]),
    case(torch.tensor(3.0), [1, 1]),
    case(f32(1), []),
    case(f32(0, 4), [2, 0, 2]),
    case(i64(2, 6), [3, 4]),
    case(f16(2, 6), [12]),
]
PERMUTE = [
    case(f32(2, 3, 4), [2, 0, 1]),
    case(f32(2, 3, 4), [-1, -3, -2]),
    case(f32(2, 3, 4), [1, 0, 2], t=True),
    case(torch.tensor(1.0), []),
    case(bools(2, 0), [1, 0]),
]
TRANSPOSE = [
    case(f32(2, 3, 4), 0, 2),
    case(f32(2, 3, 4), -1, 1, t=True),
    case(f32(5), 0, -1),
    case(i64(3, 0), 0, 1),
]
UNSQUEEZE = [
    case(f32(2, 3), 0),
    case(f32(2, 3), -1),
    case(f32(2, 3), 1, t=True),
    case(torch.tensor(2.0), 0),
    case(i64(0, 2), 2),
]
SQUEEZE_DIM = [
    case(f32(2, 1, 3), 1),
    case(f32(2, 1, 3), 0),  # size 2: a no-op in torch
    case(f32(2, 1, 1), -1),
    case(f32(1, 3, 1), 0, t=True),
    case(torch.tensor(2.0), 0),
    case(f32(0, 1), 1),
]
SQUEEZE_DIMS = [
    case(f32(2, 1, 3, 1), [1, 3]),
    case(f32(2, 1, 3, 1), [0, -1]),
    case(f32(1, 1), [0, 1], t=True),
    case(torch.tensor(2.0), [0]),
]
SQUEEZE_ALL = [case(f32(1, 2, 1, 3)), case(f32(1, 1)), case(f32(2, 3)), case(f32(1, 3, 1), t=True)]
EXPAND = [
    case(f32(3, 1), [3, 4]),
    case(f32(3, 1), [2, 3, 5]),
    case(f32(1, 4), [-1, 4]),
    case(f32(1, 4), [5, -1, 4]),
    case(f32(1, 3), [4, 2, 3], t=True),
    case(torch.tensor(1.0), [2, 2]),
    case(f32(1, 2), [0, 2]),
    case(bools(1, 3), [2, 3]),
]
CAT = [
    case([f32(2, 3), f32(4, 3)]),
    case([f32(2, 3), f32(2, 1), f32(2, 2)], 1),
    case([f32(2, 3), f32(2, 3)], -1, t=True),
    case([f32(2, 0), f32(2, 3)], 1),
    case([i64(2), i64(3)]),
    case([f16(1, 2), f16(1, 2)], 0),
]
SPLIT = [
    case(f32(5, 3), 2),
    case(f32(6, 3), 3, 0),
    case(f32(3, 7), 3, -1),
    case(f32(3, 4), 10, 1, t=True),
    case(f32(0, 3), 2),
]
SPLIT_SIZES = [
    case(f32(5, 3), [2, 3]),
    case(f32(3, 6), [1, 0, 5], 1),
    case(f32(3, 4), [2, 1, 1], -1, t=True),
]
SLICE = [
    case(f32(5, 4), 0, 1, 3),
    case(f32(5, 4), 1, 0, BIG),
    case(f32(5, 4), 1, 1, BIG, 2),
    case(f32(5, 4), 0, -3, -1),
    case(f32(5, 4), -1, -100, 100),
    case(f32(5, 4), 0, 2, 1),
    case(f32(5, 4), 0, 0, BIG, 3, t=True),
    case(f32(5, 4), 0, start=None, end=2),
    case(i64(0, 4), 1, 1, 3),
]
SELECT = [
    case(f32(3, 4), 0, 1),
    case(f32(3, 4), 1, -1),
    case(f32(2, 3, 4), -2, 2, t=True),
    case(f32(5), 0, 4),
    case(bools(3, 2), 1, 0),
]
IDENTITY = [case(f32(2, 3)), case(f32(2, 3), t=True), case(i64(0, 2)), case(torch.tensor(1.0))]
TO_DTYPES = [
    (f32(2, 3) * 4, torch.int32),
    (f32(2, 3) * 4, torch.int64),
    (f32(2, 3), torch.float16),
    (f32(2, 3), torch.bfloat16),
    (f32(2, 3), torch.bool),
    (i64(2, 3), torch.float32),
    (i64(2, 3), torch.bool),
    (bools(2, 3), torch.float32),
    (f16(2, 3), torch.float32),
    (torch.tensor(2.7), torch.int32),
]
FLIP = [
    case(f32(2, 3, 4), [0]),
    case(f32(2, 3, 4), [-1, 1]),
    case(f32(2, 3), [0, 1], t=True),
    case(f32(2, 3), []),
    case(i64(0, 3), [0]),
    case(torch.tensor(1.0), []),
]
PAD = [
    case(f32(2, 3), [1, 2]),
    case(f32(2, 3, 4), [1, 0, 0, 2], 1.5),
    case(f32(2, 3), [-1, 1]),
    case(f32(2, 5), [-1, -2, 1, 0], t=True),
    case(i64(2, 3), [2, 2], 7),
    case(f32(0, 3), [1, 1]),
    case(f16(2, 3), [0, 0, 1, 1], -1.0),
]

CASES = {
    "aten.view.default": VIEW,
    "aten.view_copy.default": VIEW[:3],
    "aten._unsafe_view.default": VIEW[:3],
    "aten.reshape.default": [*VIEW, case(f32(2, 3), [6], t=True)],
    "aten.permute.default": PERMUTE,
    "aten.permute_copy.default": PERMUTE[:2],
    "aten.transpose.int": TRANSPOSE,
    "aten.transpose_copy.int": TRANSPOSE[:2],
    "aten.t.default": [
        case(f32(2, 3)),
        case(f32(3)),
        case(torch.tensor(1.0)),
        case(f32(2, 3), t=True),
    ],
    "aten.unsqueeze.default": UNSQUEEZE,
    "aten.unsqueeze_copy.default": UNSQUEEZE[:2],
    "aten.squeeze.default": SQUEEZE_ALL,
    "aten.squeeze.dim": SQUEEZE_DIM,
    "aten.squeeze.dims": SQUEEZE_DIMS,
    "aten.squeeze_copy.default": SQUEEZE_ALL[:2],
    "aten.squeeze_copy.dim": SQUEEZE_DIM[:2],
    "aten.squeeze_copy.dims": SQUEEZE_DIMS[:2],
    "aten.flatten.using_ints": [
        case(f32(2, 3, 4)),
        case(f32(2, 3, 4), 1),
        case(f32(2, 3, 4, 5), 1, -2),
        case(f32(2, 3, 4), -2, -1, t=True),
        case(torch.tensor(2.0)),
        case(f32(2, 0, 3), 0, 1),
    ],
    "aten.unflatten.int": [
        case(f32(2, 12), 1, [3, 4]),
        case(f32(2, 12), -1, [2, -1, 3]),
        case(f32(6, 2), 0, [2, 3], t=True),
        case(f32(0, 4), 1, [2, 2]),
    ],
    "aten.expand.default": EXPAND,
    "aten.expand_copy.default": EXPAND[:3],
    "aten.cat.default": CAT,
    "aten.concat.default": CAT[:2],
    "aten.stack.default": [
        case([f32(2, 3), f32(2, 3)]),
        case([f32(2, 3), f32(2, 3), f32(2, 3)], 2),
        case([f32(2, 3), f32(2, 3)], -1, t=True),
        case([torch.tensor(1.0), torch.tensor(2.0)]),
        case([i64(0, 2), i64(0, 2)], 1),
    ],
    "aten.split.Tensor": SPLIT,
    "aten.split_copy.Tensor": SPLIT[:2],
    "aten.split_with_sizes.default": SPLIT_SIZES,
    "aten.split_with_sizes_copy.default": SPLIT_SIZES[:2],
    "aten.chunk.default": [
        case(f32(5, 3), 2),
        case(f32(6, 3), 4),
        case(f32(3, 7), 3, -1),
        case(f32(3, 4), 2, 0, t=True),
        case(f32(0, 3), 3),
    ],
    "aten.unbind.int": [
        case(f32(3, 4)),
        case(f32(3, 4), 1),
        case(f32(2, 3, 4), -1, t=True),
        case(i64(2, 0), 0),
    ],
    "aten.slice.Tensor": SLICE,
    "aten.slice_copy.Tensor": SLICE[:3],
    "aten.narrow.default": [
        case(f32(5, 4), 0, 1, 3),
        case(f32(5, 4), 1, -3, 2),
        case(f32(5, 4), -1, 0, 4, t=True),
        case(f32(5, 4), 0, 2, 0),
    ],
    "aten.select.int": SELECT,
    "aten.select_copy.int": SELECT[:2],
    "aten.alias.default": IDENTITY,
    "aten.alias_copy.default": IDENTITY[:2],
    "aten.clone.default": IDENTITY,
    "aten.contiguous.default": IDENTITY,
    "aten.detach.default": IDENTITY,
    "aten.lift_fresh_copy.default": IDENTITY[:2],
    "aten._to_copy.default": [case(x, dtype=d) for x, d in TO_DTYPES] + [case(f32(3, 2), t=True)],
    "aten.to.dtype": [case(x, d) for x, d in TO_DTYPES] + [case(f32(3, 2), torch.int32, t=True)],
    "aten.to.dtype_layout": [
        case(f32(2, 3), dtype=torch.float16),
        case(i64(2), dtype=torch.float32),
    ],
    "aten.type_as.default": [
        case(f32(2, 3), i64(1)),
        case(i64(2, 3), f16(1)),
        case(bools(2, 3), f32(2, 3)),
        case(f32(2, 3), f32(3, 2), t=True),
    ],
    "aten.repeat.default": [
        case(f32(2, 3), [2, 1]),
        case(f32(2, 3), [1, 2, 3]),
        case(f32(3), [0]),
        case(torch.tensor(1.0), [3, 2]),
        case(f32(2, 3), [2, 2], t=True),
        case(bools(2, 1), [1, 3]),
    ],
    "aten.repeat_interleave.self_int": [
        case(f32(2, 3), 2),
        case(f32(2, 3), 3, 1),
        case(f32(2, 3), 2, -2, t=True),
        case(i64(2, 3), 2, 0),
        case(f32(0, 3), 2, 0),
    ],
    "aten.flip.default": FLIP,
    "aten.roll.default": [
        case(f32(3, 4), [1]),
        case(f32(3, 4), [-2], [1]),
        case(f32(3, 4), [1, 5], [0, -1]),
        case(f32(3, 4), [2], [0], t=True),
        case(f32(2, 3, 4), [7]),
        case(i64(0, 3), [1], [1]),
    ],
    "aten.tril.default": [
        case(f32(4, 5)),
        case(f32(4, 5), 1),
        case(f32(2, 3, 3), -1),
        case(f32(4, 3), 2, t=True),
        case(i64(3, 3)),
        case(bools(3, 3), 0),
        case(f32(0, 3)),
    ],
    "aten.triu.default": [
        case(f32(4, 5)),
        case(f32(4, 5), -1),
        case(f32(2, 3, 3), 1),
        case(f32(4, 3), -2, t=True),
        case(i64(3, 3), 1),
    ],
    "aten.diagonal.default": [
        case(f32(3, 4)),
        case(f32(3, 4), 1),
        case(f32(3, 4), -1),
        case(f32(2, 3, 4), 0, 1, 2),
        case(f32(2, 3, 4), 1, -1, 0),
        case(f32(3, 4), 0, 1, 0, t=True),
        case(f32(3, 4), 10),
    ],
    "aten.constant_pad_nd.default": PAD,
    "aten.pad.default": [
        case(f32(2, 3), [1, 2]),
        case(f32(2, 3), [1, 0, 0, 2], "constant", 2.5),
        case(i64(2, 3), [-1, 1], value=3.0),
    ],
    "aten.unfold.default": [
        case(f32(10), 0, 3, 2),
        case(f32(2, 7), 1, 3, 1),
        case(f32(6, 3), 0, 2, 2, t=True),
        case(f32(2, 5, 3), -2, 5, 1),
        case(torch.tensor(1.0), 0, 1, 1),
    ],
    "aten.view.dtype": [
        case(f32(2, 3), torch.int32),
        case(i64(2, 3), torch.float64),
        case(f16(2, 4), torch.int16),
    ],
    "aten.as_strided.default": [
        case(f32(3, 4), [2, 2], [1, 2]),
        case(f32(3, 4), [3, 3], [4, 1], 1),
        case(f32(12), [2, 2, 3], [6, 3, 1]),
        case(f32(4, 4), [4], [5]),
    ],
    "aten.masked_fill.Scalar": [
        case(f32(2, 3), bools(2, 3), 1.5),
        case(f32(2, 3), bools(3), -2),
        case(i64(2, 3), bools(2, 3), 1.7),
        case(bools(2, 3), bools(2, 3), True),
        case(f16(2, 3), bools(2, 3), 0.25),
        case(f32(3, 2), bools(3, 2), 0.0, t=True),
        case(torch.tensor(1.0), torch.tensor(True), 2.0),
        case(f32(0, 2), bools(0, 2), 1.0),
    ],
    "aten.masked_fill.Tensor": [
        case(f32(2, 3), bools(2, 3), torch.tensor(1.5)),
        case(i64(2, 3), bools(3), torch.tensor(2)),
        case(f16(2, 3), bools(2, 3), torch.tensor(0.5)),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op(name):
    check_cases(name, CASES[name])


@pytest.mark.parametrize(
    ("name", "inplace", "fn", "tensors"),
    [
        (
            "aten.masked_fill.Scalar",
            "aten.masked_fill_.Scalar",
            lambda x, m: torch.ops.aten.masked_fill.Scalar(x, m, 2.0),
            (f32(2, 3), bools(2, 3)),
        ),
        (
            "aten.unsqueeze.default",
            "aten.unsqueeze_.default",
            lambda x: torch.ops.aten.unsqueeze.default(x, 1),
            (f32(2, 3),),
        ),
        (
            "aten.squeeze.dim",
            "aten.squeeze_.dim",
            lambda x: torch.ops.aten.squeeze.dim(x, 1),
            (f32(2, 1, 3),),
        ),
        ("aten.t.default", "aten.t_.default", lambda x: torch.ops.aten.t.default(x), (f32(2, 3),)),
        (
            "aten.tril.default",
            "aten.tril_.default",
            lambda x: torch.ops.aten.tril.default(x, 1),
            (f32(3, 3),),
        ),
        (
            "aten.detach.default",
            "aten.detach_.default",
            lambda x: torch.ops.aten.detach.default(x),
            (f32(3, 3),),
        ),
    ],
)
def test_inplace_names(name, inplace, fn, tensors):
    """The functional op's node renamed to the in-place overload (which normalise_target()
    maps back) translates to the same result."""
    with torch.no_grad():
        expected = fn(*tensors)
    assert_close(expected, run_renamed(Fn(fn), tensors, name, inplace), 0)
