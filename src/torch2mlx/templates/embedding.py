"""torch.nn.EmbeddingBag: sums, averages or takes the max of embedding rows per bag.

Parameter: weight (num_embeddings, embedding_dim), as in torch and mlx.nn.Embedding.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class EmbeddingBag(nn.Module):
    """torch.nn.EmbeddingBag (inference).

    Call with a 2-d `input` (B, N): each row is a bag; or a 1-d `input` with `offsets`:
    bag i is input[offsets[i]:offsets[i+1]] (the last bag runs to the end, or with
    include_last_offset=True the last offset is the end). Entries equal to padding_idx
    are left out (and not counted by "mean"); empty bags give zeros.
    per_sample_weights (same shape as input) scales each row, mode "sum" only.
    max_norm rescales looked-up rows whose norm exceeds it, as torch's in-place renorm
    does (the stored weight is not changed).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: mx.array | None = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ):
        super().__init__()
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', not {mode!r}")
        if padding_idx is not None and padding_idx < 0:
            padding_idx += num_embeddings
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.mode = mode
        self.include_last_offset = include_last_offset
        self.padding_idx = padding_idx
        if _weight is None:
            _weight = mx.random.normal((num_embeddings, embedding_dim))
        self.weight = _weight

    def _lookup(self, indices: mx.array) -> mx.array:
        rows = self.weight[indices]
        if self.max_norm is not None:  # torch.embedding_renorm_
            p = self.norm_type
            norm = (mx.abs(rows) ** p).sum(axis=-1, keepdims=True) ** (1 / p)
            scale = mx.where(norm > self.max_norm, self.max_norm / (norm + 1e-7), 1)
            rows = rows * scale
        return rows

    def __call__(
        self,
        input: mx.array,
        offsets: mx.array | None = None,
        per_sample_weights: mx.array | None = None,
    ) -> mx.array:
        if per_sample_weights is not None and self.mode != "sum":
            raise ValueError("per_sample_weights needs mode='sum' (as in torch)")
        # Flatten to one index per entry, with the bag it belongs to and whether it counts.
        if input.ndim == 2:
            if offsets is not None:
                raise ValueError("offsets must be None for 2-d input")
            num_bags, width = input.shape
            bag = mx.repeat(mx.arange(num_bags), width)
            keep = mx.ones(bag.shape, dtype=mx.bool_)
        else:
            if offsets is None:
                raise ValueError("1-d input needs offsets")
            starts = offsets[:-1] if self.include_last_offset else offsets
            num_bags = starts.shape[0]
            position = mx.arange(input.shape[0])
            # the bag of an entry is the last one starting at or before it
            bag = (starts[None, :] <= position[:, None]).sum(axis=1) - 1
            keep = position < offsets[-1] if self.include_last_offset else position >= 0
        indices = input.reshape(-1)
        if self.padding_idx is not None:
            keep = keep & (indices != self.padding_idx)

        rows = self._lookup(indices)
        if per_sample_weights is not None:
            rows = rows * per_sample_weights.reshape(-1, 1)
        out_shape = (num_bags, rows.shape[-1])
        counts = mx.zeros((num_bags,)).at[bag].add(keep.astype(mx.float32))[:, None]
        if self.mode == "max":
            rows = mx.where(keep[:, None], rows, -mx.inf)
            out = mx.full(out_shape, -mx.inf, rows.dtype).at[bag].maximum(rows)
            return mx.where(counts > 0, out, 0)
        out = mx.zeros(out_shape, rows.dtype).at[bag].add(mx.where(keep[:, None], rows, 0))
        if self.mode == "mean":
            out = out / mx.maximum(counts, 1).astype(out.dtype)
        return out
