"""Pooling: torch.nn.{Max,Avg}Pool{1,2,3}d and Adaptive{Avg,Max}Pool{1,2,3}d, channels-last.

mlx.nn's pooling layers lack dilation, ceil_mode, count_include_pad=False,
divisor_override and adaptive pooling. These layers hold torch's arguments and call the
functions generated code calls for the same ops (torch2mlx.mlx_helpers: max_pool,
avg_pool, adaptive_pool), so that torch's pooling semantics are written once.

Inputs are (N, *spatial, C) or unbatched (*spatial, C); there are no parameters.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import adaptive_pool, avg_pool, max_pool

from ._utils import ntuple


class _PoolNd(nn.Module):
    ndim = 0

    def _pool(self, x: mx.array, pool) -> mx.array:
        """``pool`` of a batched x; an unbatched one gets a batch of one for the call."""
        if x.ndim not in (self.ndim + 1, self.ndim + 2):
            raise ValueError(f"expected (N, *spatial, C) with {self.ndim} spatial axes")
        if x.ndim == self.ndim + 1:
            return pool(x[None])[0]
        return pool(x)


class _MaxPoolNd(_PoolNd):
    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool return_indices=True is not supported")
        n = self.ndim
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride if stride is not None else kernel_size, n, "stride")
        self.padding = ntuple(padding, n, "padding")
        self.dilation = ntuple(dilation, n, "dilation")
        self.ceil_mode = ceil_mode

    def __call__(self, x: mx.array) -> mx.array:
        options = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        return self._pool(x, lambda batched: max_pool(batched, *options))


class _AvgPoolNd(_PoolNd):
    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        super().__init__()
        n = self.ndim
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride if stride is not None else kernel_size, n, "stride")
        self.padding = ntuple(padding, n, "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def __call__(self, x: mx.array) -> mx.array:
        options = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )
        return self._pool(x, lambda batched: avg_pool(batched, *options))


class MaxPool1d(_MaxPoolNd):
    """torch.nn.MaxPool1d on (N, L, C)."""

    ndim = 1


class MaxPool2d(_MaxPoolNd):
    """torch.nn.MaxPool2d on (N, H, W, C)."""

    ndim = 2


class MaxPool3d(_MaxPoolNd):
    """torch.nn.MaxPool3d on (N, D, H, W, C)."""

    ndim = 3


class AvgPool1d(_AvgPoolNd):
    """torch.nn.AvgPool1d on (N, L, C) (torch's AvgPool1d has no divisor_override)."""

    ndim = 1


class AvgPool2d(_AvgPoolNd):
    """torch.nn.AvgPool2d on (N, H, W, C)."""

    ndim = 2


class AvgPool3d(_AvgPoolNd):
    """torch.nn.AvgPool3d on (N, D, H, W, C)."""

    ndim = 3


class _AdaptivePoolNd(_PoolNd):
    def __init__(self, output_size, return_indices=False):
        super().__init__()
        if return_indices:
            raise NotImplementedError("AdaptiveMaxPool return_indices=True is not supported")
        # None in output_size keeps that axis' input size, as in torch.
        self.output_size = ntuple(output_size, self.ndim, "output_size")

    def __call__(self, x: mx.array) -> mx.array:
        return self._pool(x, lambda batched: adaptive_pool(batched, self.output_size, self.reduce))


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    reduce = "mean"

    def __init__(self, output_size):
        super().__init__(output_size)


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    reduce = "max"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool1d on (N, L, C)."""

    ndim = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool2d on (N, H, W, C)."""

    ndim = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool3d on (N, D, H, W, C)."""

    ndim = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool1d on (N, L, C)."""

    ndim = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool2d on (N, H, W, C)."""

    ndim = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool3d on (N, D, H, W, C)."""

    ndim = 3
