"""Per-op numerical checks: one ATen overload, captured by torch.export, translated by the
op registry, run in MLX, compared with torch's eager result on the same inputs.

``check_op(torch.ops.aten.add.Tensor, x, y, alpha=2)`` exports a module whose forward
calls the overload with the tensor arguments as model inputs (constants stay constants),
generates model.py with the C++ code generator, runs it, and asserts closeness.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from torch2mlx import _core

_counter = itertools.count()
_TENSOR = object()  # marks where the next tensor input goes in an argument template
ATOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


class _OpModule(torch.nn.Module):
    def __init__(self, op, template: list, kwargs: dict, transpose_inputs: bool):
        super().__init__()
        self.op = op
        self.template = template
        self.kwargs = kwargs
        self.transpose_inputs = transpose_inputs

    def forward(self, *tensors):
        inputs = iter(tensors)
        args = []
        for item in self.template:
            if item is _TENSOR:
                tensor = next(inputs)
                args.append(tensor.transpose(-1, -2) if self.transpose_inputs else tensor)
            elif isinstance(item, list) and any(part is _TENSOR for part in item):
                args.append([next(inputs) if part is _TENSOR else part for part in item])
            else:
                args.append(item)
        return self.op(*args, **self.kwargs)


def overload(name: str):
    """torch.ops.aten.<op>.<overload> for "aten.<op>.<overload>"."""
    _, op, variant = name.split(".")
    return getattr(getattr(torch.ops.aten, op), variant)


def case(*args, t=False, atol=None, **kwargs):
    """One call of a family test: positional args, keyword args, and check_op options
    (``t``: inputs arrive non-contiguous; ``atol``: None for the dtype's default)."""
    return args, kwargs, {"transpose_inputs": t, "atol": atol}


def check_cases(name: str, cases: list) -> None:
    """check_op of overload ``name`` for every case() in ``cases``."""
    for args, kwargs, options in cases:
        check_op(overload(name), *args, **options, **kwargs)


# Random inputs of the dtypes the family tests cover.
def f32(*shape):
    return torch.randn(*shape)


def f16(*shape):
    return torch.randn(*shape).half()


def bf16(*shape):
    return torch.randn(*shape).bfloat16()


def i32(*shape):
    return torch.randint(-5, 6, shape, dtype=torch.int32)


def i64(*shape):
    return torch.randint(-5, 6, shape)


def bools(*shape):
    return torch.rand(*shape) > 0.5


class Fn(torch.nn.Module):
    """A module whose forward is ``fn``: exports calls check_op cannot template."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *tensors):
        return self.fn(*tensors)


def run_renamed(module: torch.nn.Module, tensors: tuple, functional: str, renamed: str):
    """Exports ``module``, renames its ``functional`` nodes to ``renamed`` (an in-place or
    other overload name a program may hold) in the serialized JSON, generates and runs it."""
    from torch._export.serde.serialize import serialize

    text = serialize(torch.export.export(module, tensors)).exported_program.decode()
    assert f'"torch.ops.{functional}"' in text
    text = text.replace(f'"torch.ops.{functional}"', f'"torch.ops.{renamed}"')
    return run_source(_core.generate_model(text, "op-test")["source"], tensors)


def generate(module: torch.nn.Module, inputs: tuple, dynamic_shapes=None, decompose=False):
    """model.py source (and the generator's report) for ``module`` on ``inputs``."""
    from torch._export.serde.serialize import serialize

    program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
    if decompose:
        program = program.run_decompositions()
    artifact = serialize(program)
    return _core.generate_model(artifact.exported_program.decode(), "op-test")


def run_source(source: str, inputs: tuple) -> Any:
    """Executes generated model.py and calls Model on numpy inputs."""
    import mlx.core as mx

    namespace: dict = {"__name__": f"op_test_{next(_counter)}"}
    exec(compile(source, "model.py", "exec"), namespace)
    model = namespace["Model"]()
    arrays = []
    for value in inputs:
        if isinstance(value, torch.Tensor):
            if value.dtype == torch.bfloat16:
                arrays.append(mx.array(value.float().numpy()).astype(mx.bfloat16))
            else:
                arrays.append(mx.array(value.contiguous().numpy()))
        else:
            arrays.append(value)
    out = model(*arrays)
    mx.eval(out)
    return out


def _as_numpy(value):
    import mlx.core as mx

    if isinstance(value, torch.Tensor):
        return value.detach().float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    if isinstance(value, mx.array):
        return np.array(value.astype(mx.float32) if value.dtype == mx.bfloat16 else value)
    return np.asarray(value)


def assert_close(expected, actual, atol: float, rtol: float = 0.0, path: str = "out") -> None:
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)), f"{path}: expected a sequence, got {type(actual)}"
        assert len(expected) == len(actual), f"{path}: {len(expected)} vs {len(actual)} outputs"
        for index, (e, a) in enumerate(zip(expected, actual, strict=False)):
            assert_close(e, a, atol, rtol, f"{path}[{index}]")
        return
    e, a = _as_numpy(expected), _as_numpy(actual)
    assert e.shape == a.shape, f"{path}: shape {a.shape}, torch {e.shape}"
    if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
        assert a.dtype == e.dtype or np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_, (
            f"{path}: dtype {a.dtype}, torch {e.dtype}"
        )
        np.testing.assert_array_equal(a, e, err_msg=path)
    else:
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=path, equal_nan=True)


def check_op(
    op,
    *args,
    atol: float | None = None,
    rtol: float = 0.0,
    transpose_inputs=False,
    decompose=False,
    check_dtype=True,
    **kwargs,
):
    """Asserts that the MLX translation of ``op(*args, **kwargs)`` matches torch.

    Tensor arguments (also inside lists) become model inputs. ``transpose_inputs`` passes
    each tensor transposed in its last two dims and transposes it back inside the graph, so
    that the op sees a non-contiguous input. Returns the generated source.
    """
    tensors = []
    template: list = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            tensors.append(arg.transpose(-1, -2).contiguous() if transpose_inputs else arg)
            template.append(_TENSOR)
        elif isinstance(arg, (list, tuple)) and any(isinstance(a, torch.Tensor) for a in arg):
            template.append([_TENSOR if isinstance(a, torch.Tensor) else a for a in arg])
            tensors.extend(a for a in arg if isinstance(a, torch.Tensor))
        else:
            template.append(arg)
    module = _OpModule(op, template, kwargs, transpose_inputs)
    with torch.no_grad():
        expected = module(*tensors)
    generated = generate(module, tuple(tensors), decompose=decompose)
    actual = run_source(generated["source"], tuple(tensors))
    if atol is None:
        dtypes = [t.dtype for t in tensors if t.is_floating_point()]
        atol = max((ATOL.get(d, 1e-5) for d in dtypes), default=1e-5)
    assert_close(expected, actual, atol, rtol)
    if check_dtype:
        _check_dtypes(expected, actual)
    return generated["source"]


def _check_dtypes(expected, actual) -> None:
    import mlx.core as mx

    if isinstance(expected, (tuple, list)):
        for e, a in zip(expected, actual, strict=False):
            _check_dtypes(e, a)
        return
    if isinstance(expected, torch.Tensor) and isinstance(actual, mx.array):
        name = str(expected.dtype).removeprefix("torch.")
        got = str(actual.dtype).removeprefix("mlx.core.")
        # MLX has no float64 on every device and sums ints as int32; accept the same kind.
        same_kind = (name.startswith("float") or name == "bfloat16") == (
            got.startswith("float") or got == "bfloat16"
        )
        assert name == got or same_kind, f"dtype {got}, torch {name}"
