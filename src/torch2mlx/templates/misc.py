"""Shape and resampling modules: torch.nn.Upsample, PixelShuffle, PixelUnshuffle, Flatten,
Unflatten and Identity. None has parameters.

Upsample, PixelShuffle and PixelUnshuffle take channels-last input (N, *spatial, C). They
keep torch's module logic (sizes, scale factors, which axes torch resamples at all) and call
the functions generated code calls for the same ops (torch2mlx.mlx_helpers: upsample,
adaptive_pool for "area", pixel_shuffle, pixel_unshuffle).
Flatten and Unflatten act on the array as given: in a channels-last model a Flatten after a
convolution sees (N, H, W, C) where torch saw (N, C, H, W), so the translator must move
the channels back first (or permute the next Linear's weight) to keep torch's order.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import adaptive_pool, pixel_shuffle, pixel_unshuffle, upsample

from ._utils import ntuple

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _resample_axis(x, axis, out_size, scale_factor, mode, align_corners):
    """torch's interpolation along spatial `axis` alone: the helpers on a view of x in which
    that axis is the only spatial one."""
    if mode == "area":  # torch's "area" is adaptive average pooling
        sizes = tuple(out_size if a == axis else None for a in range(1, x.ndim - 1))
        return adaptive_pool(x, sizes, "mean")
    shape = x.shape
    flat = x.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    mode = "linear" if mode in _LINEAR_MODES else mode
    scales = None if scale_factor is None else (scale_factor,)
    y = upsample(flat, (out_size,), scales, mode, align_corners)
    return y.reshape(*shape[:axis], out_size, *shape[axis + 1 :])


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
            # torch's 2-d nearest kernel ignores the scale when the output is exactly twice
            # the input (9 -> 18 with scale_factor=2.05); 1-d and 3-d ones apply it
            scale = None if nearest_2d and sizes[i] == 2 * in_sizes[i] else scales[i]
            x = _resample_axis(x, 1 + i, sizes[i], scale, self.mode, self.align_corners)
        return x


class PixelShuffle(nn.Module):
    """torch.nn.PixelShuffle on channels-last (*, H, W, C * r * r) -> (*, H * r, W * r, C).

    torch's input channel c * r * r + i * r + j goes to output channel c at (h*r+i, w*r+j).
    """

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def __call__(self, x: mx.array) -> mx.array:
        # the helper takes torch's layout (*, C, H, W)
        return mx.moveaxis(pixel_shuffle(mx.moveaxis(x, -1, -3), self.upscale_factor), -3, -1)


class PixelUnshuffle(nn.Module):
    """torch.nn.PixelUnshuffle on channels-last (*, H * r, W * r, C) -> (*, H, W, C * r * r)."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def __call__(self, x: mx.array) -> mx.array:
        r = self.downscale_factor
        return mx.moveaxis(pixel_unshuffle(mx.moveaxis(x, -1, -3), r), -3, -1)


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
