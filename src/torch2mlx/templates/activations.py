"""Activations whose torch arguments or definitions mlx.nn does not match one to one:
torch.nn.GELU, Hardtanh, Hardsigmoid, Softplus, Softmax, LogSoftmax, Softmin, GLU and PReLU.

Only PReLU has a parameter: weight (num_parameters,), applied along the channel axis,
which is the last axis here (channels-last) where torch uses axis 1.

Softplus, LogSoftmax, GLU and PReLU call the functions generated code calls for the same
ops (torch2mlx.mlx_helpers: softplus, log_softmax, glu, prelu).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import glu, log_softmax, prelu, softplus


def _softmax_dim(dim: int | None, ndim: int) -> int:
    """torch's implicit dim for Softmax(dim=None): 0 for 0-, 1- and 3-d input, else 1."""
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1


class GELU(nn.Module):
    """torch.nn.GELU: approximate="none" is the exact erf form, "tanh" the tanh form
    (MLX calls that one "precise"; its "fast" form has no torch equivalent)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
        self.approximate = approximate

    def __call__(self, x: mx.array) -> mx.array:
        return nn.gelu(x) if self.approximate == "none" else nn.gelu_approx(x)


class Hardtanh(nn.Module):
    """torch.nn.Hardtanh: clip(x, min_val, max_val)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__()
        self.min_val = min_val
        self.max_val = max_val

    def __call__(self, x: mx.array) -> mx.array:
        return mx.clip(x, self.min_val, self.max_val)


class Hardsigmoid(nn.Module):
    """torch.nn.Hardsigmoid: 0 below -3, 1 above 3, x / 6 + 1 / 2 between."""

    def __call__(self, x: mx.array) -> mx.array:
        return mx.clip(x / 6 + 0.5, 0, 1)


class Softplus(nn.Module):
    """torch.nn.Softplus: log(1 + exp(beta * x)) / beta, and x itself where
    beta * x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def __call__(self, x: mx.array) -> mx.array:
        return softplus(x, self.beta, self.threshold)


class Softmax(nn.Module):
    """torch.nn.Softmax (dim=None picks torch's legacy implicit axis)."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def __call__(self, x: mx.array) -> mx.array:
        return mx.softmax(x, axis=_softmax_dim(self.dim, x.ndim))


class LogSoftmax(Softmax):
    """torch.nn.LogSoftmax: x - logsumexp(x) along dim."""

    def __call__(self, x: mx.array) -> mx.array:
        return log_softmax(x, _softmax_dim(self.dim, x.ndim))


class Softmin(Softmax):
    """torch.nn.Softmin: softmax(-x) along dim."""

    def __call__(self, x: mx.array) -> mx.array:
        return mx.softmax(-x, axis=_softmax_dim(self.dim, x.ndim))


class GLU(nn.Module):
    """torch.nn.GLU: the first half of `dim` times the sigmoid of the second half."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def __call__(self, x: mx.array) -> mx.array:
        return glu(x, self.dim)


class PReLU(nn.Module):
    """torch.nn.PReLU on channels-last input: x where x >= 0, else weight * x, with one
    weight per channel (last axis) or a single shared one."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.weight = mx.full((num_parameters,), init)

    def __call__(self, x: mx.array) -> mx.array:
        if x.ndim <= 2:
            return prelu(x, self.weight)
        # The helper wants the channels on axis 1: (M, C) has them there, channels-last.
        return prelu(x.reshape(-1, x.shape[-1]), self.weight).reshape(x.shape)
