"""The helper functions of generated model.py files: torch semantics that MLX lacks, in MLX.

This module is their one source. The C++ code generator embeds this file when it is built
(cpp/src/ops/helpers.cpp) and copies into each model.py only the functions the model calls,
with the functions those call, so that a package still needs nothing but MLX. Each
function may use ``mx``, ``nn``, ``math`` and the other functions here, nothing else; the
op tables in cpp/src/ops/ say which op calls which (``call.helper("name")``). Sections
follow those tables' families.

Import it to use a helper directly, as the templates do: ``from torch2mlx.mlx_helpers import
pool_windows``. Tests: tests/test_mlx_helpers.py, and every op test through generated code.
"""

import math

import mlx.core as mx

# ---------------------------------------------------------------------------------------
# Elementwise ops (elementwise.cpp)


def trunc_divide(a, b):
    # torch's integer div(rounding_mode="trunc") rounds toward zero; mx.floor_divide floors.
    q = mx.floor_divide(a, b)
    return mx.where((q * b != a) & ((a < 0) != (b < 0)), q + 1, q)


def floor_divide(a, b):
    # torch's (and Python's) float floor division: floor of the exact quotient, which
    # floor(a / b) misses when a / b rounds up to a whole number (1 // 0.1 == 9).
    q = a / b
    mod = fmod(a, b)
    div = (a - mod) / b
    div = mx.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1, div)
    floor = mx.floor(div)
    floor = mx.where(div - floor > 0.5, floor + 1, floor)
    return mx.where(b == 0, q, mx.where(div != 0, floor, q * 0))


def fmod(a, b):
    # C fmod: the remainder takes the sign of the dividend (mx.remainder follows the divisor).
    r = mx.remainder(a, b)
    return mx.where((r != 0) & ((r < 0) != (a < 0)), r - b, r)


def copysign(a, b):
    # The sign bit of b, also of -0.0: an int view of the same width.
    b = mx.array(b, dtype=a.dtype) if not isinstance(b, mx.array) else b
    negative = mx.view(b, {2: mx.int16, 4: mx.int32, 8: mx.int64}[b.dtype.size]) < 0
    return mx.where(negative, -mx.abs(a), mx.abs(a))


def xlogy(x, y):
    # 0 where x == 0 (even for y == 0), NaN where y is NaN.
    return mx.where(mx.isnan(y), y, mx.where(x == 0, 0, x * mx.log(y)))


def fmax(a, b):
    # max ignoring NaNs: NaN only where both are NaN.
    return mx.where(mx.isnan(a), b, mx.where(mx.isnan(b), a, mx.maximum(a, b)))


def fmin(a, b):
    # min ignoring NaNs: NaN only where both are NaN.
    return mx.where(mx.isnan(a), b, mx.where(mx.isnan(b), a, mx.minimum(a, b)))


def logaddexp2(a, b):
    return mx.logaddexp(a * math.log(2), b * math.log(2)) / math.log(2)


def lerp(start, end, weight):
    # torch's two-sided formula: exact at both ends.
    diff = end - start
    return mx.where(mx.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def sinc(x):
    y = x * math.pi
    return mx.where(x == 0, 1, mx.sin(y) / mx.where(x == 0, 1, y))


def logit(x):
    return mx.log(x / (1 - x))


def elu(x, alpha, scale, input_scale):
    return mx.where(x > 0, x * scale, mx.expm1(x * input_scale) * (alpha * scale))


def softplus(x, beta, threshold):
    # torch switches to the identity above threshold to avoid overflow.
    return mx.where(x * beta > threshold, x, mx.logaddexp(x * beta, 0) / beta)


def softshrink(x, lambd):
    # x * 0 in the middle keeps NaN, as torch does.
    return mx.where(x > lambd, x - lambd, mx.where(x < -lambd, x + lambd, x * 0))


def glu(x, axis):
    a, b = mx.split(x, 2, axis=axis)
    return a * mx.sigmoid(b)


def prelu(x, weight):
    # weight has one slope per channel (axis 1), or a single slope.
    if weight.size > 1 and x.ndim > 1:
        weight = weight.reshape((-1,) + (1,) * (x.ndim - 2))
    return mx.where(x > 0, x, weight * x)


# ---------------------------------------------------------------------------------------
# Reductions (reductions.cpp)


def variance(x, axis, correction, keepdims, root):
    # torch divides by max(N - correction, 0) and accumulates half types in float32.
    dtype = x.dtype
    if dtype in (mx.float16, mx.bfloat16):
        x = x.astype(mx.float32)
    axes = tuple(range(x.ndim)) if axis is None else axis
    count = 1
    for a in axes:
        count *= x.shape[a]
    d = x - mx.mean(x, axis=axes, keepdims=True)
    v = mx.sum(d * d, axis=axes, keepdims=keepdims) / max(count - correction, 0)
    return (mx.sqrt(v) if root else v).astype(dtype)


def vector_norm(x, ord, axis, keepdims):
    # torch.linalg.vector_norm; half types accumulate in float32.
    dtype = x.dtype
    x = mx.abs(x.astype(mx.float32) if dtype in (mx.float16, mx.bfloat16) else x)
    if ord == float("inf"):
        r = mx.max(x, axis=axis, keepdims=keepdims)
    elif ord == float("-inf"):
        r = mx.min(x, axis=axis, keepdims=keepdims)
    elif ord == 0:
        r = mx.sum((x != 0).astype(x.dtype), axis=axis, keepdims=keepdims)
    elif ord == 1:
        r = mx.sum(x, axis=axis, keepdims=keepdims)
    elif ord == 2:
        r = mx.sqrt(mx.sum(x * x, axis=axis, keepdims=keepdims))
    else:
        r = mx.power(mx.sum(mx.power(x, ord), axis=axis, keepdims=keepdims), 1.0 / ord)
    return r.astype(dtype)


def log_softmax(x, axis):
    # Half types are computed in float32, as torch does.
    y = x.astype(mx.float32) if x.dtype in (mx.float16, mx.bfloat16) else x
    return (y - mx.logsumexp(y, axis=axis, keepdims=True)).astype(x.dtype)


def sort(x, axis, descending):
    # (values, int64 indices). Descending sorts an order-reversing key (-x, ~x, not x), so
    # that ties keep their original order as in torch's stable sort.
    if x.ndim == 0:
        return x, mx.zeros((), dtype=mx.int64)
    key = x
    if descending:
        if x.dtype == mx.bool_:
            key = mx.logical_not(x)
        elif mx.issubdtype(x.dtype, mx.integer):
            key = mx.bitwise_invert(x)
        else:
            key = -x
    indices = mx.argsort(key, axis=axis)
    return mx.take_along_axis(x, indices, axis=axis), indices.astype(mx.int64)


def topk(x, k, axis, largest):
    values, indices = sort(x, axis, largest)
    if x.ndim == 0:
        return values, indices
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, k)
    return values[tuple(index)], indices[tuple(index)]


# ---------------------------------------------------------------------------------------
# Shapes and views (shape.cpp)


def pad_mode(x, pad, mode):
    # F.pad's reflect, replicate and circular modes: (left, right) pairs from the last axis.
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode != "circular":
        return mx.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    for axis, (left, right) in enumerate(pairs):
        if left or right:
            size = x.shape[axis]
            parts = [mx.take(x, mx.arange(size - left, size), axis=axis), x]
            parts.append(mx.take(x, mx.arange(0, right), axis=axis))
            x = mx.concatenate(parts, axis=axis)
    return x


def expand(x, size):
    # torch's expand: -1 keeps a size; extra sizes are new leading axes.
    lead = len(size) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return mx.broadcast_to(x, shape)


def split(x, sizes, axis):
    # torch.split: an int is a chunk size (the last chunk may be shorter; an empty axis is
    # one empty chunk), a list gives each chunk's size.
    n = x.shape[axis]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - start) for start in range(0, n, sizes)] if sizes else []
        sizes = sizes or [n]
    out, start = [], 0
    for size in sizes:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + size)
        out.append(x[tuple(index)])
        start += size
    return out


def chunk(x, chunks, axis):
    # torch.chunk: chunks of ceil(n / chunks), so there may be fewer than asked for; an
    # empty axis gives `chunks` empty chunks.
    n = x.shape[axis]
    return split(x, -(-n // chunks), axis) if n else [x] * chunks


def unfold(x, axis, size, step):
    # Window w holds elements w * step ... w * step + size - 1 of the axis.
    n = (x.shape[axis] - size) // step + 1
    index = (mx.arange(n)[:, None] * step + mx.arange(size)[None, :]).reshape(-1)
    y = (
        mx.take(x, index, axis=axis)
        if n > 0
        else x[tuple(slice(0, 0) if d == axis else slice(None) for d in range(x.ndim))]
    )
    y = y.reshape((*x.shape[:axis], max(n, 0), size, *x.shape[axis + 1 :]))
    return mx.moveaxis(y, axis + 1, -1)


def flip(x, axes):
    index = [slice(None)] * x.ndim
    for axis in axes:
        index[axis] = slice(None, None, -1)
    return x[tuple(index)]


def pad_constant(x, pad, value):
    # torch's pad list runs from the last axis backwards, (before, after) per axis;
    # negative widths crop.
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    x = x[tuple(slice(max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths))]
    if all(lo <= 0 and hi <= 0 for lo, hi in widths):
        return x
    return mx.pad(x, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=value)


# ---------------------------------------------------------------------------------------
# Indexing and scatter (indexing.cpp)


def index_key(x, indices):
    # torch's index list as an MLX key: None is a whole axis, negative indices wrap.
    key = []
    for axis, i in enumerate(indices):
        if i is None:
            key.append(slice(None))
        elif i.dtype == mx.bool_:
            raise NotImplementedError("boolean-mask indexing has a data-dependent shape")
        else:
            key.append(mx.where(i < 0, i + x.shape[axis], i))
    return tuple(key)


def index(x, indices):
    # Advanced indexing as numpy does it (and torch): separated index tensors move the
    # indexed axes to the front.
    return x[index_key(x, indices)]


def index_put(x, indices, values, accumulate):
    values = values.astype(x.dtype)
    if len(indices) == 1 and indices[0] is not None and indices[0].dtype == mx.bool_:
        # x[mask] = values: the masked rows take values' rows in row-major order, or one
        # broadcast row; the result's shape is static even if the count is not.
        mask = indices[0]
        rest = x.shape[mask.ndim :]
        full = mx.broadcast_to(mask.reshape(mask.shape + (1,) * len(rest)), x.shape)
        if values.ndim > len(rest) and values.shape[0] != 1:
            rows = mx.broadcast_to(values, values.shape[:1] + rest)
            picked = masked_scatter(mx.zeros_like(x), full, rows)
        else:
            picked = mx.broadcast_to(values, x.shape)
        return mx.where(full, x + picked if accumulate else picked, x)
    key = index_key(x, indices)
    if accumulate:
        return x.at[key].add(values)
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[key] = values
    return y


def gather(x, axis, index):
    # torch.gather's index may be smaller than x along the other axes.
    if x.ndim == 0:
        return x
    x = x[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(index.shape))]
    return mx.take_along_axis(x, mx.where(index < 0, index + x.shape[axis], index), axis=axis)


def scatter(x, axis, index, src, reduce, include_self):
    # torch's scatter family: src[i][j] goes to x[index[i][j]][j] (axis 0), over index's
    # shape only. reduce: 'none' replaces; sum/prod/mean/amax/amin (or add/multiply) combine.
    if x.ndim == 0:
        return scatter(
            x.reshape(1),
            0,
            index.reshape(1),
            src.reshape(1) if isinstance(src, mx.array) else src,
            reduce,
            include_self,
        ).reshape(())
    if isinstance(src, mx.array):
        src = src[tuple(slice(0, n) for n in index.shape)].astype(x.dtype)
    else:
        src = mx.full(index.shape, src, dtype=x.dtype)
    index = mx.where(index < 0, index + x.shape[axis], index)
    key = tuple(
        index
        if d == axis
        else mx.arange(n).reshape([-1 if e == d else 1 for e in range(index.ndim)])
        for d, n in enumerate(index.shape)
    )
    reduce = {"add": "sum", "multiply": "prod"}.get(reduce, reduce)
    if reduce in ("none", "amax", "amin"):
        y = mx.array(x)
        if reduce == "none" or not include_self:
            y[key] = src  # any of the scattered values seeds the max/min
        if reduce == "none":
            return y
        return y.at[key].maximum(src) if reduce == "amax" else y.at[key].minimum(src)
    count = mx.zeros(x.shape, dtype=mx.int32).at[key].add(1)
    if not include_self:
        x = mx.where(count > 0, mx.array(1 if reduce == "prod" else 0, dtype=x.dtype), x)
    if reduce == "prod":
        return x.at[key].multiply(src)
    total = x.at[key].add(src)
    if reduce == "sum":
        return total
    count = mx.maximum(count + (1 if include_self else 0), 1).astype(x.dtype)
    if mx.issubdtype(x.dtype, mx.floating):
        return total / count
    return mx.floor_divide(total, count)


def slice_scatter(x, src, axis, start, end, step):
    n = x.shape[axis]

    def clamp(v):
        return None if v is None else max(-n, min(v, n))  # MLX wants 32-bit bounds

    key = [slice(None)] * x.ndim
    key[axis] = slice(clamp(start), clamp(end), step)
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[tuple(key)] = src.astype(x.dtype)
    return y


def select_scatter(x, src, axis, index):
    key = [slice(None)] * x.ndim
    key[axis] = index
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[tuple(key)] = src.astype(x.dtype)
    return y


def masked_scatter(x, mask, source):
    # The True positions of mask (broadcast with x) take source's elements in row-major order:
    # a running count of the mask says which one.
    x, mask = mx.broadcast_arrays(x, mask)
    if source.size == 0:
        return x
    flat = mask.reshape(-1)
    position = mx.maximum(mx.cumsum(flat.astype(mx.int32)) - 1, 0)
    picked = mx.take(source.reshape(-1), position).astype(x.dtype)
    return mx.where(flat, picked, x.reshape(-1)).reshape(x.shape)


# ---------------------------------------------------------------------------------------
# Creation (creation.cpp)


def linspace(start, end, steps, dtype):
    # torch fills the second half backward from end, so that both ends are exact.
    if steps == 1:
        return mx.array([start], dtype=dtype)
    step = (end - start) / (steps - 1)
    i = mx.arange(steps, dtype=mx.float32)
    return mx.where(i < steps // 2, start + step * i, end - step * (steps - 1 - i)).astype(dtype)


def dropout(x, p):
    # Training-mode dropout: zero with probability p, scale the rest by 1 / (1 - p).
    if p == 1:
        return mx.zeros_like(x)
    return x * mx.random.bernoulli(1 - p, x.shape) * (1 / (1 - p))


def native_dropout(x, p, mask_dtype):
    # Training-mode dropout that also returns the keep mask.
    keep = mx.random.bernoulli(1 - p, x.shape) if p < 1 else mx.zeros(x.shape, dtype=mx.bool_)
    return x * keep * (1 / (1 - p) if p < 1 else 0.0), keep.astype(mask_dtype)


# ---------------------------------------------------------------------------------------
# Convolution and pooling (conv_pool.cpp)


def conv_grouped(conv, x, weight, groups, **options):
    # One convolution per group, joined on the channel axis (weights: output channels first).
    parts = zip(mx.split(x, groups, axis=-1), mx.split(weight, groups, axis=0), strict=True)
    return mx.concatenate([conv(a, w, groups=1, **options) for a, w in parts], axis=-1)


def same_padding(kernel, dilation):
    # torch's padding="same", (before, after) per axis: the extra element of an even window
    # goes after.
    totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return [(total // 2, total - total // 2) for total in totals]


def conv_padded(x, weight, stride, dilation, groups, padding):
    # padding="same" or "valid" on a channels-last x.
    kernel = weight.shape[1:-1]
    pads = same_padding(kernel, dilation) if padding == "same" else [(0, 0)] * len(kernel)
    x = mx.pad(x, [(0, 0), *pads, (0, 0)])
    return mx.conv_general(x, weight, stride=stride, kernel_dilation=dilation, groups=groups)


def conv_transpose(x, weight, stride, padding, output_padding, dilation, groups):
    # torch's conv_transpose{1,2,3}d on a channels-last x, MLX's weight (O, *K, I/g). MLX's
    # own padding goes wrong when padding > dilation * (kernel - 1) (mlx 0.32.4: the output
    # is too short), so the whole output is computed and torch's padding cropped off it.
    n = x.ndim - 2
    conv = (mx.conv_transpose1d, mx.conv_transpose2d, mx.conv_transpose3d)[n - 1]

    def per_axis(values):  # mx.conv_transpose1d takes ints, the 2-d and 3-d ones tuples
        return values[0] if n == 1 else tuple(values)

    options = {
        "stride": per_axis(stride),
        "padding": 0,
        "dilation": per_axis(dilation),
        "output_padding": per_axis(output_padding),
    }
    if n == 3 and groups > 1:  # MLX groups 1-d and 2-d convolutions only
        y = conv_grouped(conv, x, weight, groups, **options)
    else:
        y = conv(x, weight, groups=groups, **options)
    crop = tuple(slice(p, y.shape[1 + i] - p) for i, p in enumerate(padding))
    return y[(slice(None), *crop)]


def grouped_transpose_weight(w, groups):
    # torch's (I, O/g, *K) to MLX's (O, *K, I/g), group by group.
    i, o, *k = w.shape
    w = w.reshape(groups, i // groups, o, *k)
    w = mx.transpose(w, (0, 2, *range(3, w.ndim), 1))
    return w.reshape(groups * o, *k, i // groups)


def pool_windows(x, kernel, stride, padding, dilation, ceil_mode, value):
    # Sliding windows over the spatial axes of a channels-last x: (N, *out, *kernel, C).
    pads, out = [(0, 0)], []
    for size, k, s, p, d in zip(x.shape[1:-1], kernel, stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        n = (size + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1  # torch: the last window must start inside the input or left padding
        out.append(n)
        pads.append((p, max((n - 1) * s + span - size - p, 0)))
    pads.append((0, 0))
    x = mx.pad(x, pads, constant_values=value)
    shape = (x.shape[0], *out, *kernel, x.shape[-1])
    if x.size == 0:
        return mx.zeros(shape, dtype=x.dtype)
    strides = [1] * x.ndim
    for axis in range(x.ndim - 2, -1, -1):
        strides[axis] = strides[axis + 1] * x.shape[axis + 1]
    inner = strides[1:-1]
    steps = (
        strides[0],
        *(a * s for a, s in zip(inner, stride, strict=True)),
        *(a * d for a, d in zip(inner, dilation, strict=True)),
        strides[-1],
    )
    # Copied out of the overlapping view: MLX's CPU reductions misread some overlapping
    # as_strided views (mlx 0.32.4: a (2, 7, 3) input, windows of 3 with dilation 2, sums
    # the wrong rows), and every caller reduces or reshapes the windows next.
    return mx.contiguous(mx.as_strided(x, shape, steps))


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):
    windows = pool_windows(x, kernel, stride, padding, dilation, ceil_mode, -float("inf"))
    n = len(kernel)
    return windows.max(axis=tuple(range(1 + n, 1 + 2 * n)))


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    n = len(kernel)
    windows = pool_windows(x, kernel, stride, padding, (1,) * n, ceil_mode, 0)
    total = windows.sum(axis=tuple(range(1 + n, 1 + 2 * n)))
    if divisor:
        return total / divisor
    # Elements per window: padding counts or not; the overhang of ceil_mode never does.
    count = 1
    for axis, (size, k, s, p) in enumerate(
        zip(x.shape[1:-1], kernel, stride, padding, strict=True)
    ):
        start = mx.arange(total.shape[axis + 1]) * s - p
        end = mx.minimum(start + k, size + p)
        if not count_include_pad:
            start, end = mx.maximum(start, 0), mx.minimum(end, size)
        shape = [1] * total.ndim
        shape[axis + 1] = -1
        count = count * (end - start).reshape(shape)
    return total / count.astype(total.dtype)


def adaptive_pool(x, output_size, reduce):
    # Per spatial axis: window i covers [floor(i*L/out), ceil((i+1)*L/out)).
    for axis, out in enumerate(output_size, start=1):
        size = x.shape[axis]
        if out is None or out == size:
            continue
        if size % out == 0:
            x = x.reshape(*x.shape[:axis], out, size // out, *x.shape[axis + 1 :])
            x = getattr(x, reduce)(axis=axis + 1)
            continue
        parts = [
            getattr(
                mx.take(x, mx.arange(i * size // out, -(-(i + 1) * size // out)), axis=axis), reduce
            )(axis=axis, keepdims=True)
            for i in range(out)
        ]
        x = mx.concatenate(parts, axis=axis)
    return x


def upsample(x, size, scales, mode, align_corners):
    # torch's interpolate over the spatial axes of a channels-last x. A given scale sets the
    # sampling step even when the size is given too, as in torch. (A one-element float list
    # renders as a plain float.)
    if isinstance(scales, (int, float)):
        scales = (scales,)
    for axis in range(1, x.ndim - 1):
        length = x.shape[axis]
        given = scales[axis - 1] if scales is not None else None
        out = size[axis - 1] if size is not None else int(length * given)
        scale = 1 / given if given else length / out
        if mode in ("linear", "cubic") and align_corners:
            scale = (length - 1) / (out - 1) if out > 1 else 0.0
        position = mx.arange(out, dtype=mx.float32)
        if mode == "nearest":
            # torch's 2-d kernel (nearest_idx) copies an axis whose size stays and repeats
            # the rows of one that doubles, whatever the scale says; its 1-d and 3-d kernels
            # do not.
            if x.ndim == 4 and out == length:
                continue
            step = 0.5 if x.ndim == 4 and out == 2 * length else scale
            index = mx.floor(position * step).astype(mx.int32)
            x = mx.take(x, mx.minimum(index, length - 1), axis=axis)
            continue
        if mode == "nearest-exact":
            index = mx.floor((position + 0.5) * scale).astype(mx.int32)
            x = mx.take(x, mx.minimum(index, length - 1), axis=axis)
            continue
        if mode == "cubic":
            x = cubic_along(
                x, axis, position * scale if align_corners else (position + 0.5) * scale - 0.5
            )
            continue
        position = (
            position * scale if align_corners else mx.maximum((position + 0.5) * scale - 0.5, 0)
        )
        low = mx.minimum(mx.floor(position).astype(mx.int32), length - 1)
        high = mx.minimum(low + 1, length - 1)
        shape = [1] * x.ndim
        shape[axis] = out
        weight = (position - low).astype(x.dtype).reshape(shape)
        x = mx.take(x, low, axis=axis) * (1 - weight) + mx.take(x, high, axis=axis) * weight
    return x


def cubic_along(x, axis, position):
    # torch's bicubic taps (A = -0.75) at floor(position) - 1 .. + 2, clamped to the edges.
    length, a = x.shape[axis], -0.75
    low = mx.floor(position)
    t = position - low

    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    shape = [1] * x.ndim
    shape[axis] = -1
    out = 0
    for offset, coefficient in zip(
        (-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)), strict=True
    ):
        index = mx.clip(low.astype(mx.int32) + offset, 0, length - 1)
        out = out + mx.take(x, index, axis=axis) * coefficient.astype(x.dtype).reshape(shape)
    return out


def pad_spatial(x, padding, mode):
    # torch lists (left, right) pairs from the last spatial axis backwards; channels are last.
    pairs = [(0, 0)] * x.ndim
    for i in range(len(padding) // 2):
        pairs[x.ndim - 2 - i] = (padding[2 * i], padding[2 * i + 1])
    return mx.pad(x, pairs, mode=mode)


def pixel_shuffle(x, r):
    *batch, c, h, w = x.shape
    n = len(batch)
    x = x.reshape(*batch, c // (r * r), r, r, h, w)
    x = mx.transpose(x, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return x.reshape(*batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(x, r):
    *batch, c, h, w = x.shape
    n = len(batch)
    x = x.reshape(*batch, c, h // r, r, w // r, r)
    x = mx.transpose(x, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(*batch, c * r * r, h // r, w // r)


def grid_sample(x, grid, mode, padding_mode, align_corners):
    # F.grid_sample on a channels-last x (N, H, W, C); grid (N, Ho, Wo, 2) holds (x, y) in
    # [-1, 1]. Returns (N, Ho, Wo, C).
    n, h, w, c = x.shape
    grid = grid.astype(mx.float32)

    def source(coord, size):
        # Unnormalised: -1 and 1 are the corner pixels' centres, or their outer edges.
        coord = (coord + 1) / 2 * (size - 1) if align_corners else ((coord + 1) * size - 1) / 2
        if padding_mode == "border":
            coord = mx.clip(coord, 0, size - 1)
        elif padding_mode == "reflection":
            low, span = (0.0, size - 1.0) if align_corners else (-0.5, float(size))
            if span > 0:
                coord = mx.abs(coord - low)
                flips = mx.floor(coord / span)
                extra = coord - flips * span
                coord = mx.where(flips % 2 == 0, extra + low, span - extra + low)
            else:
                coord = mx.zeros_like(coord)
            coord = mx.clip(coord, 0, size - 1)
        return coord

    ix, iy = source(grid[..., 0], w), source(grid[..., 1], h)
    flat = x.reshape(n, h * w, c)
    batch = mx.arange(n).reshape(n, 1, 1)

    def tap(px, py):
        inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
        index = mx.clip(py, 0, h - 1) * w + mx.clip(px, 0, w - 1)
        return flat[batch, index.astype(mx.int32)] * inside[..., None].astype(x.dtype)

    if mode == "nearest":
        return tap(mx.round(ix), mx.round(iy))
    x0, y0 = mx.floor(ix), mx.floor(iy)
    wx, wy = (ix - x0)[..., None].astype(x.dtype), (iy - y0)[..., None].astype(x.dtype)
    top = tap(x0, y0) * (1 - wx) + tap(x0 + 1, y0) * wx
    bottom = tap(x0, y0 + 1) * (1 - wx) + tap(x0 + 1, y0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def col2im(x, output_size, kernel, dilation, padding, stride):
    # F.fold: (N, C*kh*kw, L) blocks summed back into (N, C, H, W).
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = output_size, kernel, dilation, padding, stride
    rows = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    cols = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, c = x.shape[0], x.shape[1] // (kh * kw)
    hp, wp = h + 2 * ph, w + 2 * pw
    y = (mx.arange(kh) * dh).reshape(kh, 1, 1, 1) + (mx.arange(rows) * sh).reshape(1, 1, rows, 1)
    z = (mx.arange(kw) * dw).reshape(1, kw, 1, 1) + (mx.arange(cols) * sw).reshape(1, 1, 1, cols)
    target = (y * wp + z).reshape(-1)
    values = mx.transpose(x.reshape(n, c, -1), (2, 0, 1))
    out = mx.zeros((hp * wp, n, c), dtype=x.dtype).at[target].add(values)
    out = mx.transpose(out, (1, 2, 0)).reshape(n, c, hp, wp)[:, :, ph : ph + h, pw : pw + w]
    return out[0] if unbatched else out


def im2col(x, kernel, dilation, padding, stride):
    # F.unfold: (N, C, H, W) to (N, C*kh*kw, L), through the pooling windows.
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    windows = pool_windows(
        mx.transpose(x, (0, 2, 3, 1)), kernel, stride, padding, dilation, False, 0
    )
    n, rows, cols, kh, kw, c = windows.shape
    out = mx.transpose(windows, (0, 5, 3, 4, 1, 2)).reshape(n, c * kh * kw, rows * cols)
    return out[0] if unbatched else out


# ---------------------------------------------------------------------------------------
# Normalisation and attention (norm_attention.cpp)


def layer_norm_nd(x, dims, weight, bias, eps):
    # LayerNorm over the last `dims` axes: (output, mean, 1 / std) as native_layer_norm.
    axes = tuple(range(-dims, 0))
    mean = x.mean(axis=axes, keepdims=True)
    rstd = mx.rsqrt(mx.var(x, axis=axes, keepdims=True) + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    return (y + bias if bias is not None else y), mean, rstd


def rms_norm_nd(x, dims, weight, eps):
    axes = tuple(range(-dims, 0))
    y = x * mx.rsqrt(mx.mean(mx.square(x), axis=axes, keepdims=True) + eps)
    return y * weight if weight is not None else y


def batch_norm(x, mean, var, weight, bias, eps):
    # Channels-last batch norm: (output, mean, 1 / std). Without running statistics, the
    # batch's own (biased variance), as torch normalises in training mode.
    if mean is None:
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axis=axes), mx.var(x, axis=axes)
    rstd = mx.rsqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    return (y + bias if bias is not None else y), mean, rstd


def group_norm(x, groups, weight, bias, eps):
    # Channels-last: torch's group j holds channels [j*C/G, (j+1)*C/G).
    # Returns (output, mean, 1 / std), the statistics of shape (N, groups).
    shape = x.shape
    g = x.reshape(shape[0], -1, groups, shape[-1] // groups)
    mean = g.mean(axis=(1, 3), keepdims=True)
    rstd = mx.rsqrt(mx.var(g, axis=(1, 3), keepdims=True) + eps)
    y = ((g - mean) * rstd).reshape(shape)
    if weight is not None:
        y = y * weight
    y = y + bias if bias is not None else y
    return y, mean.reshape(shape[0], groups), rstd.reshape(shape[0], groups)


def instance_norm(x, weight, bias, eps):
    # Channels-last: statistics per sample and channel, over the spatial axes.
    axes = tuple(range(1, x.ndim - 1))
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) * mx.rsqrt(mx.var(x, axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def causal_mask(q, k):
    # torch's is_causal: query i sees keys 0..i (aligned to the top left).
    return mx.tril(mx.ones((q.shape[-2], k.shape[-2]), dtype=mx.bool_))


def attention(q, k, v, scale, mask):
    # F.scaled_dot_product_attention: boolean masks keep True, float masks are added, and
    # "causal" is mx.fast's own. Key and value may have fewer heads than the query
    # (enable_gqa): mx.fast groups them the same way.
    # Inputs of any rank (..., L, E) go through mx.fast as (B, H, L, E).
    lead = q.shape[:-2]
    if q.ndim != 4:
        q = q.reshape(-1, 1, *q.shape[-2:])
        k = k.reshape(-1, 1, *k.shape[-2:])
        v = v.reshape(-1, 1, *v.shape[-2:])
        if mask is not None:
            mask = mx.broadcast_to(mask, (*lead, q.shape[-2], k.shape[-2]))
            mask = mask.reshape(-1, 1, q.shape[-2], k.shape[-2])
    if isinstance(mask, mx.array) and mask.dtype != mx.bool_:
        mask = mask.astype(q.dtype)
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    if isinstance(mask, mx.array):
        # A query that may see no key (a left-padded row) gets zeros from torch; mx.fast
        # averages the values instead.
        seen = mask if mask.dtype == mx.bool_ else mask > -mx.inf
        out = mx.where(mx.any(seen, axis=-1, keepdims=True), out, 0)
    return out.reshape(*lead, *out.shape[-2:])


def embedding_bag(
    weight, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx
):
    # F.embedding_bag on 1-d indices: bag b sums (averages, maxes) rows offsets[b]..offsets[b+1].
    # Entries equal to padding_idx are left out; empty bags give zeros.
    bags = offsets.shape[0] - (1 if include_last_offset else 0)
    starts = offsets[:bags]
    position = mx.arange(indices.shape[0])
    bag = (position[:, None] >= starts[None, :]).sum(axis=1) - 1
    if include_last_offset:
        bag = mx.where(position < offsets[-1], bag, bags)  # past the last offset: dropped
    keep = (bag >= 0) & (bag < bags)
    if padding_idx >= 0:
        keep = keep & (indices != padding_idx)
    bag = mx.where(keep, bag, bags)  # a spare row collects what is left out
    rows = mx.take(weight, indices, axis=0)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights[:, None]
    shape = (bags + 1, weight.shape[1])
    if mode == "max":
        out = mx.full(shape, -float("inf"), dtype=weight.dtype).at[bag].maximum(rows)
        return mx.where(mx.isinf(out) & (out < 0), 0, out)[:bags]
    out = mx.zeros(shape, dtype=weight.dtype).at[bag].add(rows)[:bags]
    if mode == "mean":
        count = mx.zeros((bags + 1,), dtype=weight.dtype).at[bag].add(keep.astype(weight.dtype))
        out = out / mx.maximum(count[:bags], 1)[:, None]
    return out


def cdist(x1, x2, p):
    # torch.cdist computed directly (torch may use a matmul form for p=2 on large inputs,
    # which differs in the last bits).
    diff = mx.abs(x1[..., :, None, :] - x2[..., None, :, :])
    if p == 0:
        return (diff != 0).sum(axis=-1).astype(x1.dtype)
    if p == float("inf"):
        return diff.max(axis=-1)
    if p == 1:
        return diff.sum(axis=-1)
    if p == 2:
        return mx.sqrt(mx.square(diff).sum(axis=-1))
    return mx.power(mx.power(diff, p).sum(axis=-1), 1 / p)


def pdist(x, p):
    # torch.pdist: distances of rows i < j, in row-major order of the pairs.
    n = x.shape[0]
    pairs = [i * n + j for i in range(n) for j in range(i + 1, n)]
    full = cdist(x, x, p).reshape(-1)
    return (
        mx.take(full, mx.array(pairs, dtype=mx.int32)) if pairs else mx.zeros((0,), dtype=x.dtype)
    )


# ---------------------------------------------------------------------------------------
# Recurrent layers (recurrent.cpp)


def recurrent_layers(x, states, params, has_biases, num_layers, bidirectional, batch_first, step):
    # Runs `step` over time for every layer and direction, as torch's RNN modules do.
    unbatched = x.ndim == 2
    if unbatched:
        x, states = x[None], [s[:, None] for s in states]
    if not batch_first and not unbatched:
        x = x.swapaxes(0, 1)
    directions = 2 if bidirectional else 1
    per = len(params) // (num_layers * directions)
    finals = [[] for _ in states]
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per : (index + 1) * per]
            w_ih, w_hh = weights[0], weights[1]
            b_ih, b_hh = (weights[2], weights[3]) if has_biases else (None, None)
            w_hr = weights[-1] if per in (3, 5) else None
            xs = x @ w_ih.T if b_ih is None else x @ w_ih.T + b_ih
            carry = [s[index] for s in states]
            ys = [None] * x.shape[1]
            order = range(x.shape[1] - 1, -1, -1) if direction else range(x.shape[1])
            for t in order:
                carry = step(xs[:, t], carry, w_hh, b_hh, w_hr)
                ys[t] = carry[0]
            outputs.append(mx.stack(ys, axis=1))
            for final, value in zip(finals, carry, strict=True):
                final.append(value)
        x = mx.concatenate(outputs, axis=-1) if directions == 2 else outputs[0]
    if not batch_first and not unbatched:
        x = x.swapaxes(0, 1)
    finals = [mx.stack(final) for final in finals]
    if unbatched:
        x, finals = x[0], [f[:, 0] for f in finals]
    return x, finals


def lstm(x, states, params, has_biases, num_layers, bidirectional, batch_first):
    # torch.nn.LSTM: gates i, f, g, o; optional projection of h (proj_size).
    def step(xw, carry, w_hh, b_hh, w_hr):
        h, c = carry
        gates = xw + (h @ w_hh.T if b_hh is None else h @ w_hh.T + b_hh)
        i, f, g, o = mx.split(gates, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        return [h if w_hr is None else h @ w_hr.T, c]

    out, (h, c) = recurrent_layers(
        x, states, params, has_biases, num_layers, bidirectional, batch_first, step
    )
    return out, h, c


def gru_or_rnn(x, state, params, has_biases, num_layers, bidirectional, batch_first, cell):
    # torch.nn.GRU (gates r, z, n) and torch.nn.RNN (tanh or relu).
    def step(xw, carry, w_hh, b_hh, w_hr):
        h = carry[0]
        hw = h @ w_hh.T if b_hh is None else h @ w_hh.T + b_hh
        if cell == "gru":
            xr, xz, xn = mx.split(xw, 3, axis=-1)
            hr, hz, hn = mx.split(hw, 3, axis=-1)
            r, z = mx.sigmoid(xr + hr), mx.sigmoid(xz + hz)
            n = mx.tanh(xn + r * hn)
            return [(1 - z) * n + z * h]
        return [mx.tanh(xw + hw) if cell == "tanh" else mx.maximum(xw + hw, 0)]

    out, (h,) = recurrent_layers(
        x, [state], params, has_biases, num_layers, bidirectional, batch_first, step
    )
    return out, h


# ---------------------------------------------------------------------------------------
# Symbolic sizes (symbolic.cpp)


def contiguous_stride(shape, dim):
    # The stride torch gives a contiguous tensor: empty dims count as size 1.
    stride = 1
    for size in shape[dim + 1 :]:
        stride *= max(size, 1)
    return stride


# Python arithmetic on sizes and scalars, as torch's kernels do it in C++ (IEEE doubles):
# a number where Python raises, such as the attention scale of an empty head.


def scalar_power(base, exponent):
    # torch's pow kernel in double: 1 / sqrt(x) for ** -0.5 (so 0.0 ** -0.5 is inf), sqrt
    # for 0.5, products and reciprocals for -2, -1, 2, 3, and C's pow otherwise (a negative
    # base to a fractional power is nan), where Python raises or gives a complex number.
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        return base**exponent
    x = float(base)
    if exponent == 0.5:
        return scalar_sqrt(x)
    if exponent == -0.5:
        return scalar_divide(1.0, scalar_sqrt(x))
    if exponent in (-2, -1, 2, 3):
        product = x * x if exponent in (-2, 2) else x if exponent == -1 else x * x * x
        return product if exponent > 0 else scalar_divide(1.0, product)
    try:
        return math.pow(x, exponent)
    except (ValueError, OverflowError):  # where C's pow gives a number
        if x < 0 and not float(exponent).is_integer():
            return math.nan
        odd = float(exponent).is_integer() and abs(exponent) % 2 == 1
        return math.copysign(math.inf, x) if odd else math.inf


def scalar_divide(a, b):
    # IEEE division: by zero, inf signed by both operands (nan for 0 / 0), where Python
    # raises ZeroDivisionError.
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def scalar_sqrt(x):
    # sqrt below zero is nan, where math.sqrt raises ValueError.
    return math.sqrt(x) if x >= 0 else math.nan
