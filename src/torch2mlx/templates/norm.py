"""Normalization: torch.nn.BatchNorm{1,2,3}d, InstanceNorm{1,2,3}d, GroupNorm, LayerNorm and
RMSNorm, with torch's parameter and buffer names, for channels-last inputs.

Names: weight and bias (when affine), running_mean and running_var (when
track_running_stats). torch's `num_batches_tracked` only matters in training: the weight
converter drops it. The running statistics are frozen (parameters(), but not
trainable_parameters()), as in mlx.nn.BatchNorm.

These are inference templates: BatchNorm uses the running statistics when it has them (torch
eval mode) and the batch's statistics otherwise, exactly as torch does in eval mode.

LayerNorm and RMSNorm exist in mlx.nn, but only over one trailing axis, with an
always-present weight (and, for RMSNorm, a fixed eps): these follow torch's
normalized_shape, elementwise_affine, bias and eps=None.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def _normalize(x, mean, var, eps, weight, bias):
    y = (x - mean) * mx.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class _NormBase(nn.Module):
    """Shared state of BatchNorm and InstanceNorm (torch's _NormBase)."""

    ndim = 0  # spatial axes

    def __init__(self, num_features, eps, momentum, affine, track_running_stats):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum  # unused: inference only
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = mx.ones((num_features,))
            self.bias = mx.zeros((num_features,))
        if track_running_stats:
            self.running_mean = mx.zeros((num_features,))
            self.running_var = mx.ones((num_features,))
            self.freeze(keys=["running_mean", "running_var"], recurse=False)

    def _affine(self):
        return self.get("weight"), self.get("bias")


class _BatchNorm(_NormBase):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def __call__(self, x: mx.array) -> mx.array:
        if self.track_running_stats:
            mean, var = self.running_mean, self.running_var
        else:  # torch normalizes with the batch's own (biased) statistics
            axes = tuple(range(x.ndim - 1))
            mean, var = x.mean(axis=axes), x.var(axis=axes)
        return _normalize(x, mean, var, self.eps, *self._affine())


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d on (N, C) or (N, L, C)."""


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d on (N, H, W, C)."""


class BatchNorm3d(_BatchNorm):
    """torch.nn.BatchNorm3d on (N, D, H, W, C)."""


class _InstanceNorm(_NormBase):
    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def __call__(self, x: mx.array) -> mx.array:
        if self.track_running_stats:  # torch eval mode uses the running statistics
            mean, var = self.running_mean, self.running_var
        else:  # each sample and channel over its own spatial axes; works unbatched too
            axes = tuple(range(x.ndim - 1 - self.ndim, x.ndim - 1))
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
        return _normalize(x, mean, var, self.eps, *self._affine())


class InstanceNorm1d(_InstanceNorm):
    """torch.nn.InstanceNorm1d on (N, L, C) or (L, C)."""

    ndim = 1


class InstanceNorm2d(_InstanceNorm):
    """torch.nn.InstanceNorm2d on (N, H, W, C) or (H, W, C)."""

    ndim = 2


class InstanceNorm3d(_InstanceNorm):
    """torch.nn.InstanceNorm3d on (N, D, H, W, C) or (D, H, W, C)."""

    ndim = 3


class GroupNorm(nn.Module):
    """torch.nn.GroupNorm on channels-last (N, *, C): group g holds the contiguous channels
    g * C/G ... (g+1) * C/G - 1, as in torch (mlx.nn.GroupNorm with pytorch_compatible=True)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups = num_groups
        self.eps = eps
        if affine:
            self.weight = mx.ones((num_channels,))
            self.bias = mx.zeros((num_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        n, c, g = x.shape[0], x.shape[-1], self.num_groups
        groups = x.reshape(n, -1, g, c // g)
        mean = groups.mean(axis=(1, 3), keepdims=True)
        var = groups.var(axis=(1, 3), keepdims=True)
        y = _normalize(groups, mean, var, self.eps, None, None).reshape(x.shape)
        if "weight" in self:
            y = y * self.weight + self.bias
        return y


def _shape(normalized_shape) -> tuple:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(normalized_shape)


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm: normalizes over the trailing axes `normalized_shape`; weight and
    bias have that shape (weight only with bias=False, none with elementwise_affine=False)."""

    def __init__(
        self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias=True
    ):
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        if elementwise_affine:
            self.weight = mx.ones(self.normalized_shape)
            if bias:
                self.bias = mx.zeros(self.normalized_shape)

    def __call__(self, x: mx.array) -> mx.array:
        k = len(self.normalized_shape)
        flat = x.reshape(*x.shape[: x.ndim - k], -1)  # mx.fast works on the last axis
        weight, bias = self.get("weight"), self.get("bias")
        weight = None if weight is None else weight.reshape(-1)
        bias = None if bias is None else bias.reshape(-1)
        return mx.fast.layer_norm(flat, weight, bias, self.eps).reshape(x.shape)


class RMSNorm(nn.Module):
    """torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the trailing axes
    `normalized_shape`; eps=None means the input dtype's machine epsilon, as in torch."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        if elementwise_affine:
            self.weight = mx.ones(self.normalized_shape)

    def __call__(self, x: mx.array) -> mx.array:
        eps = self.eps if self.eps is not None else mx.finfo(x.dtype).eps
        k = len(self.normalized_shape)
        flat = x.reshape(*x.shape[: x.ndim - k], -1)
        weight = self.get("weight")
        weight = None if weight is None else weight.reshape(-1)
        return mx.fast.rms_norm(flat, weight, eps).reshape(x.shape)
