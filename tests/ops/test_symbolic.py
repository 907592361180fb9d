"""Symbolic sizes of dynamic shapes: sym_size and friends, and the Python operators
(_operator.*, torch.sym_*, math.trunc) that torch.export records on them. Each module is
exported with dynamic dims, checked to contain the target, and run at the export size and
at other sizes against torch eager."""

from __future__ import annotations

import math
import operator

import pytest
import torch
from tests.ops import harness
from torch.export import Dim

aten = torch.ops.aten


def _target_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return f"{target.__module__}.{target.__name__}"


def check_dynamic(fn, shapes, sizes, target):
    """Exports fn on x with shapes[0] and dynamic dims, asserts the graph calls target,
    and compares the MLX model with torch at every shape in shapes."""

    class Module(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    module = Module()
    first = torch.randn(*shapes[0])
    dims = {axis: Dim(f"d{axis}", min=low, max=64) for axis, low in sizes.items()}
    program = torch.export.export(module, (first,), dynamic_shapes=({**dims},))
    targets = {
        _target_name(node.target) for node in program.graph.nodes if node.op == "call_function"
    }
    assert target in targets, sorted(targets)
    generated = harness.generate(module, (first,), dynamic_shapes=({**dims},))
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = module(x)
        harness.assert_close(expected, harness.run_source(generated["source"], (x,)), 1e-5)


def _n(x):
    return x.shape[0]


CASES = [
    # target, function of x, shapes, dynamic dims with their minimum
    (
        "aten.sym_size.int",
        lambda x: x.reshape(x.shape[0] * x.shape[1]),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    ("_operator.add", lambda x: torch.arange(_n(x) + 3), [(6,), (3,)], {0: 2}),
    ("_operator.sub", lambda x: torch.arange(_n(x) - 1), [(6,), (3,)], {0: 3}),
    ("_operator.mul", lambda x: x.reshape(_n(x) * x.shape[1]), [(6, 4), (3, 2)], {0: 2, 1: 2}),
    ("_operator.floordiv", lambda x: torch.arange(_n(x) // 2), [(7,), (4,)], {0: 4}),
    ("_operator.mod", lambda x: x * (_n(x) % 3), [(7,), (5,)], {0: 4}),
    (
        "_operator.truediv",
        lambda x: torch.full((torch.sym_int(_n(x) / 2),), 1.0),
        [(8,), (5,)],
        {0: 4},
    ),
    ("_operator.pow", lambda x: torch.arange(_n(x) ** 2), [(6,), (3,)], {0: 2}),
    ("_operator.neg", lambda x: torch.arange(5) * (-_n(x)), [(6,), (3,)], {0: 2}),
    ("_operator.lshift", lambda x: torch.arange(_n(x) << 1), [(6,), (3,)], {0: 2}),
    ("_operator.rshift", lambda x: torch.arange((_n(x) >> 1) + 1), [(6,), (3,)], {0: 2}),
    (
        "_operator.gt",
        lambda x: x * torch.sym_ite(_n(x) > x.shape[1], 1, 2),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.ge",
        lambda x: x * torch.sym_ite(_n(x) >= x.shape[1], 1, 2),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.lt",
        lambda x: x * torch.sym_ite(_n(x) < x.shape[1], 1, 2),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.le",
        lambda x: x * torch.sym_ite(_n(x) <= x.shape[1], 1, 2),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.eq",
        lambda x: x * torch.sym_ite(_n(x) == x.shape[1], 1, 2),
        [(6, 4), (4, 4)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.ne",
        lambda x: x * torch.sym_ite(_n(x) != x.shape[1], 1, 2),
        [(6, 4), (4, 4)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.and_",
        lambda x: x * torch.sym_ite((_n(x) > 3) & (x.shape[1] > 3), 1, 2),
        [(6, 4), (6, 3)],
        {0: 2, 1: 2},
    ),
    (
        "_operator.or_",
        lambda x: x * torch.sym_ite((_n(x) > 3) | (x.shape[1] > 3), 1, 2),
        [(6, 4), (2, 3)],
        {0: 2, 1: 2},
    ),
    (
        "torch.sym_not",
        lambda x: x * torch.sym_ite(torch.sym_not(_n(x) > x.shape[1]), 1, 2),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "torch.sym_ite",
        lambda x: torch.arange(torch.sym_ite(_n(x) > x.shape[1], 3, 5)),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "torch.sym_max",
        lambda x: torch.zeros(torch.sym_max(_n(x), x.shape[1])),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    (
        "torch.sym_min",
        lambda x: torch.zeros(torch.sym_min(_n(x), x.shape[1])),
        [(6, 4), (3, 5)],
        {0: 2, 1: 2},
    ),
    ("torch.sym_float", lambda x: x * torch.sym_float(_n(x)), [(6,), (3,)], {0: 2}),
    ("torch._sym_sqrt", lambda x: x * torch.sym_sqrt(_n(x)), [(9,), (4,)], {0: 2}),
    (
        "math.trunc",
        lambda x: torch.zeros(math.trunc(torch.sym_float(_n(x)) / 2.0)),
        [(8,), (5,)],
        {0: 4},
    ),
]


@pytest.mark.parametrize("op, fn, shapes, sizes", CASES)
def test_symbolic(op, fn, shapes, sizes):
    check_dynamic(fn, shapes, sizes, op)


# Targets export folds away in torch 2.13 (numel, strides, offsets are rewritten into
# sym_size products): a graph with a node of the same arguments is renamed to them in the
# serialized program, as a graph from another torch version would name them.
RENAMED = [
    # target, the target it replaces, fn to export, what the renamed graph computes
    (
        "aten.sym_numel.default",
        "aten.sym_size.int",
        lambda x: x * x.shape[1],
        lambda x: x * x.numel(),
    ),
    (
        "aten.sym_stride.int",
        "aten.sym_size.int",
        lambda x: x * x.shape[0],
        lambda x: x * x.stride(0),
    ),
    (
        "aten.sym_storage_offset.default",
        "aten.sym_size.int",
        lambda x: x * x.shape[1],
        lambda x: x * 0,
    ),
    ("aten.sym_is_contiguous.default", "aten.sym_size.int", lambda x: x * x.shape[1], lambda x: x),
    (
        "torch.sym_int",
        "torch.sym_float",
        lambda x: x * torch.sym_float(x.shape[0]),
        lambda x: x * x.shape[0],
    ),
]


@pytest.mark.parametrize("op, replaced, fn, expected_fn", RENAMED)
def test_symbolic_renamed(op, replaced, fn, expected_fn):
    from torch._export.serde.serialize import serialize

    from torch2mlx import _core

    class Module(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    dims = ({0: Dim("d0", min=2, max=64), 1: Dim("d1", min=2, max=64)},)
    program = torch.export.export(Module(), (torch.randn(6, 4),), dynamic_shapes=dims)
    text = serialize(program).exported_program.decode()
    quoted = f'"torch.ops.{replaced}"' if replaced.startswith("aten") else f'"{replaced}"'
    assert quoted in text
    source = _core.generate_model(text.replace(quoted, quoted.replace(replaced, op)), "op-test")[
        "source"
    ]
    for shape in ((6, 4), (3, 5)):
        x = torch.randn(*shape)
        harness.assert_close(expected_fn(x), harness.run_source(source, (x,)), 1e-5)


def test_operator_pos_and_getitem_emit():
    """operator.pos is a no-op on ints, which export folds away: check the emitter itself."""
    from torch2mlx import _core

    assert "_operator.pos" in _core.supported_ops()
    assert "_operator.getitem" in _core.supported_ops()
    assert operator.pos(3) == 3
