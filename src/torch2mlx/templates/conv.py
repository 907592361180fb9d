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

The layers hold torch's arguments and call the functions generated code calls for the same
ops (torch2mlx.mlx_helpers: pad_mode for padding_mode, conv_padded for "same"/"valid",
conv_grouped for grouped 3-d convolutions, conv_transpose), so that torch's convolution
semantics are written once.
"""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import (
    conv_grouped,
    conv_padded,
    conv_transpose,
    pad_mode,
    same_padding,
)

from ._utils import ntuple

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


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
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.kernel_size = ntuple(kernel_size, n, "kernel_size")
        self.stride = ntuple(stride, n, "stride")
        self.dilation = ntuple(dilation, n, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        if padding == "same" and any(s != 1 for s in self.stride):
            raise ValueError("padding='same' needs stride 1 (as in torch)")
        self.padding = padding if isinstance(padding, str) else ntuple(padding, n, "padding")
        if padding_mode != "zeros":
            # torch's _reversed_padding_repeated_twice: F.pad's list, last axis first.
            if padding == "same":
                pairs = same_padding(self.kernel_size, self.dilation)
            else:
                pairs = [(p, p) for p in ((0,) * n if padding == "valid" else self.padding)]
            self.mode_padding = tuple(v for pair in reversed(pairs) for v in pair)

        scale = math.sqrt(1 / (in_channels // groups * math.prod(self.kernel_size)))
        shape = (out_channels, *self.kernel_size, in_channels // groups)
        self.weight = mx.random.uniform(-scale, scale, shape)
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        batched = x.ndim == self.ndim + 2
        if not batched:
            x = x[None]
        padding = self.padding
        if self.padding_mode != "zeros":  # as torch: F.pad in that mode, then no padding
            x = pad_mode(x, (0, 0, *self.mode_padding), self.padding_mode)  # (C is last)
            padding = (0,) * self.ndim
        if isinstance(padding, str):  # "same" or "valid"
            conv = partial(conv_padded, stride=self.stride, dilation=self.dilation, padding=padding)
        else:
            conv = partial(
                mx.conv_general, stride=self.stride, padding=padding, kernel_dilation=self.dilation
            )
        if self.groups > 1 and self.ndim == 3:  # MLX groups 1-d and 2-d convolutions only
            y = conv_grouped(conv, x, self.weight, self.groups)
        else:
            y = conv(x, self.weight, groups=self.groups)
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
        y = conv_transpose(
            x, self.weight, self.stride, self.padding, output_padding, self.dilation, self.groups
        )
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
