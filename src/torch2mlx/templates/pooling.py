"""Pooling: torch.nn.{Max,Avg}Pool{1,2,3}d and Adaptive{Avg,Max}Pool{1,2,3}d, channels-last.

mlx.nn's pooling layers lack dilation, ceil_mode, count_include_pad=False,
divisor_override and adaptive pooling. All of them reduce over boxes, and a box is a
product of one window per spatial axis, so every template here pools one axis at a
time: the window of each output position is a list of input indices (padding is left
out of the list), then

- max: gather each window (short windows repeat their first index) and take the max;
- average: multiply by an (outputs, inputs) matrix holding 1 / divisor inside each window.

Inputs are (N, *spatial, C) or unbatched (*spatial, C); there are no parameters.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ._utils import ntuple


def _max_over_windows(x: mx.array, axis: int, windows: list[list[int]]) -> mx.array:
    if not all(windows):  # a window wholly in the padding gives -inf, as in torch
        shape = list(x.shape)
        shape[axis] = 1
        empty = [x.shape[axis]]  # index of the -inf slice appended below
        x = mx.concatenate([x, mx.full(shape, -mx.inf, x.dtype)], axis=axis)
        windows = [w or empty for w in windows]
    width = max(len(w) for w in windows)
    index = np.array([w + w[:1] * (width - len(w)) for w in windows])
    y = mx.take(x, mx.array(index.reshape(-1)), axis=axis)
    y = y.reshape(*x.shape[:axis], len(windows), width, *x.shape[axis + 1 :])
    return y.max(axis=axis + 1)


def _mean_over_windows(
    x: mx.array, axis: int, windows: list[list[int]], divisors: list[float]
) -> mx.array:
    matrix = np.zeros((x.shape[axis], len(windows)), np.float32)
    for i, (w, d) in enumerate(zip(windows, divisors, strict=True)):
        matrix[w, i] = 1 / d
    y = mx.moveaxis(x, axis, -1) @ mx.array(matrix).astype(x.dtype)
    return mx.moveaxis(y, -1, axis)


def _sliding_windows(length, kernel, stride, padding, dilation, ceil_mode):
    """Input indices of each output of a sliding window (torch's pooling_output_shape).
    Also returns each window's extent clipped to the padded input, for count_include_pad."""
    span = dilation * (kernel - 1) + 1
    room = length + 2 * padding - span
    count = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (count - 1) * stride >= length + padding:
        count -= 1  # the last window would start inside the right padding
    windows, extents = [], []
    for o in range(count):
        start = o * stride - padding
        taps = (start + j * dilation for j in range(kernel))
        windows.append([t for t in taps if 0 <= t < length])
        extents.append(min(start + span, length + padding) - start)
    return windows, extents


def _adaptive_windows(length: int, size: int) -> list[list[int]]:
    """torch's adaptive bins: start = floor(i*L/size), end = ceil((i+1)*L/size)."""
    return [list(range(i * length // size, -(-(i + 1) * length // size))) for i in range(size)]


class _PoolNd(nn.Module):
    ndim = 0

    def _axes(self, x: mx.array) -> range:
        if x.ndim not in (self.ndim + 1, self.ndim + 2):
            raise ValueError(f"expected (N, *spatial, C) with {self.ndim} spatial axes")
        return range(x.ndim - 1 - self.ndim, x.ndim - 1)


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
        for i, axis in enumerate(self._axes(x)):
            windows, _ = _sliding_windows(
                x.shape[axis],
                self.kernel_size[i],
                self.stride[i],
                self.padding[i],
                self.dilation[i],
                self.ceil_mode,
            )
            x = _max_over_windows(x, axis, windows)
        return x


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
        for i, axis in enumerate(self._axes(x)):
            windows, extents = _sliding_windows(
                x.shape[axis],
                self.kernel_size[i],
                self.stride[i],
                self.padding[i],
                1,
                self.ceil_mode,
            )
            if self.divisor_override:
                divisors = [1] * len(windows)
            elif self.count_include_pad:
                # torch counts the padding, but not the part past it that ceil_mode adds
                divisors = extents
            else:
                divisors = [len(w) for w in windows]
            x = _mean_over_windows(x, axis, windows, divisors)
        if self.divisor_override:
            x = x / self.divisor_override
        return x


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
        for i, axis in enumerate(self._axes(x)):
            size = self.output_size[i] or x.shape[axis]
            windows = _adaptive_windows(x.shape[axis], size)
            x = self._reduce(x, axis, windows)
        return x


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    def __init__(self, output_size):
        super().__init__(output_size)

    def _reduce(self, x, axis, windows):
        return _mean_over_windows(x, axis, windows, [len(w) for w in windows])


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    def _reduce(self, x, axis, windows):
        return _max_over_windows(x, axis, windows)


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
