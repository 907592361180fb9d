"""torch.nn.Conv{1,2,3}d and ConvTranspose{1,2,3}d, channels-last, with what mlx.nn lacks.

mlx.nn has convolutions, but not all of torch's options. These templates add
padding="same"/"valid", asymmetric "same" padding, padding_mode "reflect"/"replicate"/
"circular", groups for transposed convolutions and for 3-d convolutions, output_padding,
and ConvTranspose's `output_size` argument.

Layout (the project's rule: channels-last inside). Inputs are (N, *spatial, C), or unbatched
(*spatial, C); outputs likewise. Both kinds hold `weight` in MLX's layout
(out_channels, *kernel_size, in_channels // groups) and `bias` (out_channels,).
From torch's weight `w`:

- ConvNd, torch (O, I/g, *K):          w.permute(0, 2, ..., n + 1, 1)
- ConvTransposeNd, torch (I, O/g, *K): w.reshape(g, I/g, O/g, *K)
                                         .permute(0, 2, 3, ..., n + 2, 1)
                                         .reshape(O, *K, I/g)
  (for groups == 1 this is just w.permute(1, 2, ..., n + 1, 0)).

mx.conv_transpose*d with groups > 1 expects exactly this regular-conv layout: output
channels of group j are rows j*O/g ... (j+1)*O/g - 1, each seeing its group's I/g inputs.
"""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ._utils import ntuple

# torch padding_mode -> numpy.pad mode (numpy pads the index vector we gather with).
_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_spatial(x: mx.array, low: tuple, high: tuple, mode: str) -> mx.array:
    """Pad the spatial axes of channels-last `x` (N, *spatial, C) as torch's F.pad(mode=...)."""
    for i, (lo, hi) in enumerate(zip(low, high, strict=True)):
        if lo == 0 and hi == 0:
            continue
        axis = 1 + i
        if mode == "zeros":
            widths = [(0, 0)] * x.ndim
            widths[axis] = (lo, hi)
            x = mx.pad(x, widths)
        else:
            index = np.pad(np.arange(x.shape[axis]), (lo, hi), mode=_NUMPY_PAD_MODES[mode])
            x = mx.take(x, mx.array(index), axis=axis)
    return x


def _grouped(conv, x: mx.array, weight: mx.array, groups: int) -> mx.array:
    """conv(x, weight, groups=groups); MLX only groups 1-d and 2-d convolutions, so 3-d
    grouped convolutions run one group at a time."""
    if groups == 1 or x.ndim < 5:
        return conv(x, weight, groups=groups)
    xs = mx.split(x, groups, axis=-1)
    ws = mx.split(weight, groups, axis=0)
    return mx.concatenate([conv(a, w, groups=1) for a, w in zip(xs, ws, strict=True)], axis=-1)


class _ConvNd(nn.Module):
    ndim = 0  # number of spatial dimensions, set by the subclasses

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        n = self.ndim
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if padding_mode not in ("zeros", *_NUMPY_PAD_MODES):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride, n, "stride")
        self.dilation = ntuple(dilation, n, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        if padding == "valid":
            padding = 0
        if padding == "same":
            if any(s != 1 for s in self.stride):
                raise ValueError("padding='same' needs stride 1 (as in torch)")
            # torch puts the odd pixel of "same" padding at the end.
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            self.low = tuple(t // 2 for t in total)
            self.high = tuple(t - t // 2 for t in total)
        else:
            self.low = self.high = ntuple(padding, n, "padding")

        scale = math.sqrt(1 / (in_channels // groups * math.prod(self.kernel_size)))
        shape = (out_channels, *self.kernel_size, in_channels // groups)
        self.weight = mx.random.uniform(-scale, scale, shape)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        batched = x.ndim == self.ndim + 2
        if not batched:
            x = x[None]
        low, high = self.low, self.high
        if self.padding_mode != "zeros":
            x = pad_spatial(x, low, high, self.padding_mode)
            low = high = (0,) * self.ndim
        conv = partial(
            mx.conv_general,
            stride=self.stride,
            padding=(low, high),
            kernel_dilation=self.dilation,
        )
        y = _grouped(conv, x, self.weight, self.groups)
        if "bias" in self:
            y = y + self.bias
        return y if batched else y[0]


class Conv1d(_ConvNd):
    """torch.nn.Conv1d. Input (N, L, C); weight (O, K, I/groups)."""

    ndim = 1


class Conv2d(_ConvNd):
    """torch.nn.Conv2d. Input (N, H, W, C); weight (O, KH, KW, I/groups)."""

    ndim = 2


class Conv3d(_ConvNd):
    """torch.nn.Conv3d. Input (N, D, H, W, C); weight (O, KD, KH, KW, I/groups)."""

    ndim = 3


_CONV_TRANSPOSE = {1: mx.conv_transpose1d, 2: mx.conv_transpose2d, 3: mx.conv_transpose3d}


class _ConvTransposeNd(nn.Module):
    ndim = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        n = self.ndim
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if padding_mode != "zeros":
            raise ValueError("ConvTranspose only supports padding_mode='zeros' (as in torch)")
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride, n, "stride")
        self.padding = ntuple(padding, n, "padding")
        self.output_padding = ntuple(output_padding, n, "output_padding")
        self.dilation = ntuple(dilation, n, "dilation")
        self.groups = groups

        scale = math.sqrt(1 / (out_channels // groups * math.prod(self.kernel_size)))
        shape = (out_channels, *self.kernel_size, in_channels // groups)
        self.weight = mx.random.uniform(-scale, scale, shape)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))

    def _output_padding(self, x: mx.array, output_size) -> tuple:
        """torch's ConvTranspose._output_padding: the output_padding giving `output_size`."""
        sizes = tuple(output_size)[-self.ndim :]  # torch allows a leading (N, C)
        padding = []
        for i, size in enumerate(sizes):
            k, s, p, d = self.kernel_size[i], self.stride[i], self.padding[i], self.dilation[i]
            smallest = (x.shape[1 + i] - 1) * s - 2 * p + d * (k - 1) + 1
            if not smallest <= size < smallest + s:
                raise ValueError(
                    f"output_size {tuple(sizes)} is impossible: dimension {i} must lie in "
                    f"[{smallest}, {smallest + s - 1}]"
                )
            padding.append(size - smallest)
        return tuple(padding)

    def __call__(self, x: mx.array, output_size=None) -> mx.array:
        batched = x.ndim == self.ndim + 2
        if not batched:
            x = x[None]
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(x, output_size)
        # mx.conv_transpose1d takes ints, the 2-d and 3-d ones tuples
        unpack = (lambda t: t[0]) if self.ndim == 1 else (lambda t: t)
        conv = partial(
            _CONV_TRANSPOSE[self.ndim],
            stride=unpack(self.stride),
            padding=0,
            dilation=unpack(self.dilation),
            output_padding=unpack(output_padding),
        )
        y = _grouped(conv, x, self.weight, self.groups)
        # torch's padding crops the full output on both sides. (MLX's own padding argument
        # goes wrong when padding > dilation * (kernel_size - 1), so crop here.)
        crop = tuple(slice(p, y.shape[1 + i] - p) for i, p in enumerate(self.padding))
        y = y[(slice(None), *crop)]
        if "bias" in self:
            y = y + self.bias
        return y if batched else y[0]


class ConvTranspose1d(_ConvTransposeNd):
    """torch.nn.ConvTranspose1d. Input (N, L, C); weight (O, K, I/groups), see module doc."""

    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    """torch.nn.ConvTranspose2d. Input (N, H, W, C); weight (O, KH, KW, I/groups)."""

    ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    """torch.nn.ConvTranspose3d. Input (N, D, H, W, C); weight (O, KD, KH, KW, I/groups)."""

    ndim = 3
