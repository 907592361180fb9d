"""Normalization: torch.nn.BatchNorm{1,2,3}d, InstanceNorm{1,2,3}d, GroupNorm, LayerNorm and
RMSNorm, with torch's parameter and buffer names, for channels-last inputs.

Names: weight and bias (when affine), running_mean and running_var (when
track_running_stats). torch's `num_batches_tracked` only matters in training: the weight
converter drops it. The running statistics are frozen (parameters(), but not
trainable_parameters()), as in mlx.nn.BatchNorm.

These are inference templates: BatchNorm uses the running statistics when it has them (torch
eval mode) and the batch's statistics otherwise, exactly as torch does in eval mode.
BatchNorm, InstanceNorm and GroupNorm hold the parameters and call the functions generated
code calls for the same ops (torch2mlx.mlx_helpers: batch_norm, instance_norm, group_norm),
so that their arithmetic is written once.

LayerNorm and RMSNorm exist in mlx.nn, but only over one trailing axis, with an
always-present weight (and, for RMSNorm, a fixed eps): these follow torch's
normalized_shape, elementwise_affine, bias and eps=None.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import batch_norm, group_norm, instance_norm


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

    def _running(self):
        return self.get("running_mean"), self.get("running_var")


class _BatchNorm(_NormBase):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def __call__(self, x: mx.array) -> mx.array:
        # Without running statistics, the batch's own (biased) ones, as torch does
        mean, var = self._running()
        return batch_norm(x, mean, var, *self._affine(), self.eps)[0]


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
        if self.track_running_stats:
            # torch's eval mode normalizes with the running statistics, as batch norm does
            return batch_norm(x, *self._running(), *self._affine(), self.eps)[0]
        # each sample and channel over its own spatial axes
        if x.ndim == self.ndim + 1:  # unbatched: a batch of one for the call
            return instance_norm(x[None], *self._affine(), self.eps)[0]
        return instance_norm(x, *self._affine(), self.eps)


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
        return group_norm(x, self.num_groups, self.get("weight"), self.get("bias"), self.eps)[0]


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
