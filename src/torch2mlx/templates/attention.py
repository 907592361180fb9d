"""torch.nn.MultiheadAttention with torch's parameters, masks and return values.

Parameters (torch's names and shapes, E = embed_dim):

    in_proj_weight (3E, E)                    query/key/value rows stacked, when
                                              kdim == vdim == embed_dim; otherwise
    q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight (E, vdim)
    in_proj_bias (3E,)                        when bias=True
    bias_k, bias_v (1, 1, E)                  when add_bias_kv=True
    out_proj.weight (E, E), out_proj.bias (E,)

Masks follow torch: a boolean mask is True where attention is NOT allowed (MLX's boolean
masks mean the opposite, so they are turned into additive -inf masks here); a float mask
is added to the scores. attn_mask is (L, S) or (N * num_heads, L, S); key_padding_mask is
(N, S). Inputs are (L, N, E), (N, L, E) with batch_first=True, or unbatched (L, E).

Without need_weights the attention is the function generated code calls for
F.scaled_dot_product_attention (torch2mlx.mlx_helpers.attention), so a query that may see no
key gets zeros, as in torch (mx.fast alone gives NaN). Causal masks come from
mlx_helpers.causal_mask.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from torch2mlx import mlx_helpers


def additive_mask(mask: mx.array | None, dtype) -> mx.array | None:
    """torch's _canonical_mask: a bool mask (True = masked out) becomes 0 / -inf."""
    if mask is None:
        return None
    if mask.dtype == mx.bool_:
        return mx.where(mask, -mx.inf, 0).astype(dtype)
    return mask.astype(dtype)


def causal_mask(length: int, dtype=mx.float32) -> mx.array:
    """torch's nn.Transformer.generate_square_subsequent_mask: -inf above the diagonal."""
    positions = mx.zeros((length, 0))  # the helper reads the lengths only
    return additive_mask(mx.logical_not(mlx_helpers.causal_mask(positions, positions)), dtype)


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention (inference: dropout is ignored).

    __call__(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None), weights
    (N, L, S) averaged over heads or (N, num_heads, L, S).

    is_causal is a hint in torch: attn_mask must then be given, and is used. Here a
    missing attn_mask with is_causal=True becomes the causal mask (torch raises).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        kdim = kdim if kdim is not None else embed_dim
        vdim = vdim if vdim is not None else embed_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.add_zero_attn = add_zero_attn
        self.batch_first = batch_first

        scale = math.sqrt(1 / embed_dim)
        e = embed_dim
        if kdim == vdim == embed_dim:
            self.in_proj_weight = mx.random.uniform(-scale, scale, (3 * e, e))
        else:
            self.q_proj_weight = mx.random.uniform(-scale, scale, (e, e))
            self.k_proj_weight = mx.random.uniform(-scale, scale, (e, kdim))
            self.v_proj_weight = mx.random.uniform(-scale, scale, (e, vdim))
        if bias:
            self.in_proj_bias = mx.zeros((3 * e,))
        if add_bias_kv:
            self.bias_k = mx.random.normal((1, 1, e)) * scale
            self.bias_v = mx.random.normal((1, 1, e)) * scale
        self.out_proj = nn.Linear(e, e, bias=bias)

    def _project(self, query, key, value):
        if "in_proj_weight" in self:
            w_q, w_k, w_v = mx.split(self.in_proj_weight, 3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        q, k, v = query @ w_q.T, key @ w_k.T, value @ w_v.T
        if "in_proj_bias" in self:
            b_q, b_k, b_v = mx.split(self.in_proj_bias, 3)
            q, k, v = q + b_q, k + b_k, v + b_v
        return q, k, v

    def _split_heads(self, x):  # (N, L, E) -> (N, heads, L, head_dim)
        n, length, _ = x.shape
        return x.reshape(n, length, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def __call__(
        self,
        query: mx.array,
        key: mx.array,
        value: mx.array,
        key_padding_mask: mx.array | None = None,
        need_weights: bool = True,
        attn_mask: mx.array | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        batched = query.ndim == 3
        if not batched:  # (L, E): a batch of one
            query, key, value = query[None], key[None], value[None]
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask[None]
            if attn_mask is not None and attn_mask.ndim == 3:
                attn_mask = attn_mask[None]  # (heads, L, S) -> (1, heads, L, S)
        elif not self.batch_first:
            query, key, value = (a.swapaxes(0, 1) for a in (query, key, value))
        n, length, _ = query.shape  # batch-first from here on
        source = key.shape[1]

        # One additive mask, broadcastable to (N, heads, L, S).
        if is_causal and attn_mask is None:  # masked out: what torch's causal mask hides
            attn_mask = mx.logical_not(mlx_helpers.causal_mask(query, key))
        mask = additive_mask(attn_mask, query.dtype)
        if mask is not None and mask.ndim == 3:  # (N * heads, L, S)
            mask = mask.reshape(n, self.num_heads, length, source)
        padding = additive_mask(key_padding_mask, query.dtype)
        if padding is not None:
            padding = padding[:, None, None, :]
            mask = padding if mask is None else mask + padding

        q, k, v = self._project(query, key, value)
        if "bias_k" in self:  # one more key and value, never masked
            k = mx.concatenate([k, mx.broadcast_to(self.bias_k, (n, 1, self.embed_dim))], 1)
            v = mx.concatenate([v, mx.broadcast_to(self.bias_v, (n, 1, self.embed_dim))], 1)
            mask = _pad_last(mask)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        if self.add_zero_attn:  # one more all-zero key and value, never masked
            zeros = mx.zeros((n, self.num_heads, 1, self.head_dim), dtype=k.dtype)
            k = mx.concatenate([k, zeros], axis=2)
            v = mx.concatenate([v, zeros], axis=2)
            mask = _pad_last(mask)

        scale = 1 / math.sqrt(self.head_dim)
        if need_weights:
            scores = (q * scale) @ k.swapaxes(-1, -2)  # torch scales q first
            if mask is not None:
                scores = scores + mask
            weights = mx.softmax(scores, axis=-1)
            out = weights @ v
            if average_attn_weights:
                weights = weights.mean(axis=1)
        else:
            out = mlx_helpers.attention(q, k, v, scale, mask)
            weights = None

        out = out.transpose(0, 2, 1, 3).reshape(n, length, self.embed_dim)
        out = self.out_proj(out)
        if not batched:
            out = out[0]
            weights = None if weights is None else weights[0]
        elif not self.batch_first:
            out = out.swapaxes(0, 1)
        return out, weights


def _pad_last(mask: mx.array | None) -> mx.array | None:
    """Append a 0 (= attend) column to an additive mask, for an extra key."""
    if mask is None:
        return None
    return mx.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])
