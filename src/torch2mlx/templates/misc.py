"""Shape and resampling modules: torch.nn.Upsample, PixelShuffle, PixelUnshuffle, Flatten,
Unflatten and Identity. None has parameters.

Upsample, PixelShuffle and PixelUnshuffle take channels-last input (N, *spatial, C).
Flatten and Unflatten act on the array as given: in a channels-last model a Flatten after a
convolution sees (N, H, W, C) where torch saw (N, C, H, W), so the translator must move
the channels back first (or permute the next Linear's weight) to keep torch's order.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from torch2mlx.mlx_helpers import adaptive_pool

from ._utils import ntuple

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _source_coordinates(out_size, in_size, scale_factor, align_corners, mode):
    """torch's source coordinate of each output position along one axis (UpSample.h),
    computed in float32 as torch does for float32 inputs."""
    f32 = np.float32
    dst = np.arange(out_size, dtype=f32)
    if mode in _LINEAR_MODES and align_corners:
        scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
        return dst * scale
    # torch uses 1 / scale_factor when it was given (and not recomputed), else in / out
    scale = f32(1.0 / scale_factor) if scale_factor else f32(in_size) / f32(out_size)
    if mode == "nearest":
        return dst * scale
    if mode == "nearest-exact":
        return (dst + f32(0.5)) * scale
    return np.maximum((dst + f32(0.5)) * scale - f32(0.5), f32(0))  # linear, half-pixel


def _resample_axis(x, axis, out_size, scale_factor, mode, align_corners, exact_2x=False):
    in_size = x.shape[axis]
    if mode == "area":  # torch's "area" is adaptive average pooling, here along one axis
        sizes = tuple(out_size if a == axis else None for a in range(1, x.ndim - 1))
        return adaptive_pool(x, sizes, "mean")
    src = _source_coordinates(out_size, in_size, scale_factor, align_corners, mode)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    if exact_2x and out_size == 2 * in_size:
        # torch's 2-d "nearest" kernel (nearest_idx) ignores the scale when the output is
        # exactly twice the input, e.g. 7 -> 14 with scale_factor=2.1; 1-d and 3-d don't.
        low = np.arange(out_size) // 2
    if mode.startswith("nearest"):
        return mx.take(x, mx.array(low), axis=axis)
    high = np.minimum(low + 1, in_size - 1)
    frac = np.clip(src - low, 0, 1).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = out_size
    frac = mx.array(frac.reshape(shape)).astype(x.dtype)
    x_low = mx.take(x, mx.array(low), axis=axis)
    x_high = mx.take(x, mx.array(high), axis=axis)
    return x_low * (1 - frac) + x_high * frac


class Upsample(nn.Module):
    """torch.nn.Upsample (and F.interpolate) on channels-last (N, *spatial, C).

    Modes: "nearest", "nearest-exact", "linear"/"bilinear"/"trilinear" (align_corners
    either way) and "area". The number of spatial axes is x.ndim - 2, as in torch.
    """

    def __init__(
        self,
        size=None,
        scale_factor=None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("give exactly one of size and scale_factor")
        if mode not in ("nearest", "nearest-exact", "area", *_LINEAR_MODES):
            raise NotImplementedError(f"Upsample mode {mode!r} is not supported")
        if align_corners is not None and mode not in _LINEAR_MODES:
            raise ValueError("align_corners only applies to linear modes (as in torch)")
        self.size = size
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = bool(align_corners)
        self.recompute_scale_factor = recompute_scale_factor

    def __call__(self, x: mx.array) -> mx.array:
        n = x.ndim - 2
        if self.mode in _LINEAR_MODES and _LINEAR_MODES[self.mode] != n:
            raise ValueError(f"mode {self.mode!r} needs {_LINEAR_MODES[self.mode] + 2}-d input")
        in_sizes = x.shape[1:-1]
        if self.size is not None:
            sizes, scales = ntuple(self.size, n, "size"), (None,) * n
        else:
            scales = ntuple(self.scale_factor, n, "scale_factor")
            sizes = tuple(math.floor(i * s) for i, s in zip(in_sizes, scales, strict=True))
            if self.recompute_scale_factor or self.mode == "area":
                scales = (None,) * n  # use in / out, as torch does then
        nearest_2d = self.mode == "nearest" and n == 2
        for i in range(n):
            # torch leaves an axis of unchanged size alone, whatever the scale factor, in
            # its linear, area and 2-d nearest kernels (1-d and 3-d nearest apply the scale)
            skips_same_size = self.mode in _LINEAR_MODES or self.mode == "area" or nearest_2d
            if sizes[i] == in_sizes[i] and (skips_same_size or scales[i] in (None, 1)):
                continue
            x = _resample_axis(
                x, 1 + i, sizes[i], scales[i], self.mode, self.align_corners, nearest_2d
            )
        return x


class PixelShuffle(nn.Module):
    """torch.nn.PixelShuffle on channels-last (*, H, W, C * r * r) -> (*, H * r, W * r, C).

    torch's input channel c * r * r + i * r + j goes to output channel c at (h*r+i, w*r+j).
    """

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def __call__(self, x: mx.array) -> mx.array:
        r = self.upscale_factor
        *lead, h, w, c = x.shape
        x = x.reshape(*lead, h, w, c // (r * r), r, r)
        k = len(lead)
        x = x.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)  # (*, h, i, w, j, c)
        return x.reshape(*lead, h * r, w * r, c // (r * r))


class PixelUnshuffle(nn.Module):
    """torch.nn.PixelUnshuffle on channels-last (*, H * r, W * r, C) -> (*, H, W, C * r * r)."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def __call__(self, x: mx.array) -> mx.array:
        r = self.downscale_factor
        *lead, hr, wr, c = x.shape
        x = x.reshape(*lead, hr // r, r, wr // r, r, c)
        k = len(lead)
        x = x.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)  # (*, h, w, c, i, j)
        return x.reshape(*lead, hr // r, wr // r, c * r * r)


class Flatten(nn.Module):
    """torch.nn.Flatten: flattens axes start_dim..end_dim of the array as given."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def __call__(self, x: mx.array) -> mx.array:
        return mx.flatten(x, self.start_dim, self.end_dim)


class Unflatten(nn.Module):
    """torch.nn.Unflatten: splits axis `dim` into `unflattened_size` (one entry may be -1)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def __call__(self, x: mx.array) -> mx.array:
        return mx.unflatten(x, self.dim, self.unflattened_size)


class Identity(nn.Module):
    """torch.nn.Identity: ignores its constructor arguments and returns its input."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, x: mx.array) -> mx.array:
        return x
