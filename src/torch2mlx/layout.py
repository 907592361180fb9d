"""Channels-last inside, torch's layout at the edges.

MLX convolutions, pools and channel norms want [N, *spatial, C]; torch hands over and
expects [N, C, *spatial]. A sequential model is translated with one transpose where it
enters a run of channels-last layers and one where it leaves it (before a flatten, a linear
layer over features, or the output), never around every layer.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn


def to_channels_last(x: mx.array) -> mx.array:
    """[N, C, *spatial] -> [N, *spatial, C]; 2-d inputs are already both."""
    if x.ndim < 3:
        return x
    return mx.moveaxis(x, 1, -1)


def to_channels_first(x: mx.array) -> mx.array:
    """[N, *spatial, C] -> [N, C, *spatial]."""
    if x.ndim < 3:
        return x
    return mx.moveaxis(x, -1, 1)


class Sequential(nn.Module):
    """torch.nn.Sequential: children under ``layers`` (as mlx.nn.Sequential names them),
    each told the layout it wants, transposes placed only where the layout changes."""

    def __init__(self, layers: list[Any], layouts: list[str]) -> None:
        super().__init__()
        self.layers = layers
        self._layouts = layouts

    def __call__(self, x: mx.array) -> mx.array:
        channels_last = False
        for layer, layout in zip(self.layers, self._layouts, strict=True):
            if layout == "channels_last" and not channels_last:
                x, channels_last = to_channels_last(x), True
            elif layout == "torch_order" and channels_last:
                x, channels_last = to_channels_first(x), False
            x = layer(x)
        return to_channels_first(x) if channels_last else x
