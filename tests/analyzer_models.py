"""Crafted models for the analyzer: one per blocker kind and per hazard.

Each line a finding must point at carries a marker comment (``# <- kind``); the tests find
the line by its marker, so the models can move without the tests changing. Each factory
returns (model, example_inputs, dynamic_shapes or None), as the zoo's do; the CLI takes
``tests.analyzer_models:<name>_cli`` (which returns (model, inputs)).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim

try:
    import mlx.core as mx_module  # a compiled extension module, for the hazard scan
except ImportError:  # pragma: no cover
    mx_module = None

_LIBRARY = torch.library.Library("t2mtest", "FRAGMENT")
_LIBRARY.define("scale(Tensor x) -> Tensor")
_LIBRARY.impl("scale", lambda x: x * 2, "CompositeExplicitAutograd")
_LIBRARY.impl("scale", lambda x: torch.empty_like(x), "Meta")


class Clean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Item(nn.Module):
    def forward(self, x):
        scale = x.abs().max().item()  # <- item
        return x / scale


class Numpy(nn.Module):
    def forward(self, x):
        values = x.numpy()  # <- numpy
        return torch.from_numpy(values * 2)


class Tolist(nn.Module):
    def forward(self, x):
        sizes = x[0].tolist()  # <- tolist
        return x * len(sizes)


class BranchOnValue(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # <- tensor_control_flow
            return x * 2
        return x - 1


class BranchOnShape(nn.Module):
    """Control flow on shapes and flags is fine: nothing to report."""

    def __init__(self) -> None:
        super().__init__()
        self.double = True

    def forward(self, x):
        if x.shape[0] > 1 and self.double:
            return x * 2
        return x


class StepCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(1))

    def forward(self, x):
        self.steps += 1  # <- attribute_mutation
        return x + self.steps


class WritesInput(nn.Module):
    def forward(self, x, state=None):
        if state is not None:
            state.flags[0] = True  # a Python object's state, not a tensor: not reported
        x.mul_(2)  # <- input_mutation
        return x + 1


class LocalInPlace(nn.Module):
    """In-place updates of temporaries: harmless, functionalization removes them."""

    def forward(self, x):
        y = x * 2
        y[:, 0] = 0  # <- inplace_local
        y.relu_()  # <- inplace_local_2
        return y


def _print_shape(module, inputs, output):  # <- hook
    return output


class Hooked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc.register_forward_hook(_print_shape)

    def forward(self, x):
        return self.fc(x)


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class AutogradFunction(nn.Module):
    def forward(self, x):
        return _Square.apply(x)  # <- autograd_function


class CompiledExtension(nn.Module):
    def forward(self, x):
        import mlx.core as mx

        return x + float(mx_module.exp(mx.array(1.0)))  # <- compiled_extension


class CustomKernel(nn.Module):
    def forward(self, x):
        return torch.ops.t2mtest.scale(x) + 1  # <- custom_kernel


class UnsupportedOp(nn.Module):
    def forward(self, x):
        return torch.nonzero(x > 0)  # <- unsupported_op


class Decomposed(nn.Module):
    """cdist has no direct translation; torch's decomposition of it translates."""

    def forward(self, x, y):
        return torch.cdist(x, y)


class DynamicGuard(nn.Module):
    def forward(self, x):
        return x.reshape(4, 2, -1)  # <- dynamic_dim_guard


class Scale(nn.Module):
    """A module that owns a parameter and has no registry row: translated op by op."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(8))

    def forward(self, x):
        return x * self.gain


class WithScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.scale = Scale()
        self.scale2 = Scale()

    def forward(self, x):
        return self.scale2(self.scale(self.fc(x)))


def _x(*shape):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(0)),)


def clean():
    torch.manual_seed(0)
    return Clean().eval(), _x(2, 64), None


def dynamic_guard():
    return DynamicGuard(), _x(8, 3), {"x": {0: Dim("batch", min=2, max=64)}}


FACTORIES = {
    "clean": clean,
    "item": lambda: (Item(), _x(2, 4), None),
    "numpy": lambda: (Numpy(), _x(2, 4), None),
    "tolist": lambda: (Tolist(), _x(2, 4), None),
    "branch_on_value": lambda: (BranchOnValue(), _x(2, 4), None),
    "branch_on_shape": lambda: (BranchOnShape(), _x(2, 4), None),
    "step_counter": lambda: (StepCounter(), _x(2, 1), None),
    "writes_input": lambda: (WritesInput(), _x(2, 4), None),
    "local_in_place": lambda: (LocalInPlace(), _x(2, 4), None),
    "hooked": lambda: (Hooked(), _x(2, 4), None),
    "autograd_function": lambda: (AutogradFunction(), _x(2, 4), None),
    "custom_kernel": lambda: (CustomKernel(), _x(2, 4), None),
    "compiled_extension": lambda: (CompiledExtension(), _x(2, 4), None),
    "unsupported_op": lambda: (UnsupportedOp(), _x(2, 4), None),
    "decomposed": lambda: (Decomposed(), _x(3, 4) + _x(5, 4), None),
    "dynamic_guard": dynamic_guard,
    "with_scale": lambda: (WithScale(), _x(2, 8), None),
}


def clean_cli():
    model, inputs, _ = clean()
    return model, inputs


def clean_model_only():
    return clean()[0]


def unsupported_op_cli():
    model, inputs, _ = FACTORIES["unsupported_op"]()
    return model, inputs
