"""torch.nn.EmbeddingBag: sums, averages or takes the max of embedding rows per bag.

Parameter: weight (num_embeddings, embedding_dim), as in torch and mlx.nn.Embedding. The bags
are the function generated code calls for the same op (torch2mlx.mlx_helpers.embedding_bag).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import embedding_bag, vector_norm


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

    def _renorm_scale(self, indices: mx.array) -> mx.array:
        """torch.embedding_renorm_'s factor for each looked-up row (1 within max_norm)."""
        norm = vector_norm(self.weight[indices], self.norm_type, -1, False)
        return mx.where(norm > self.max_norm, self.max_norm / (norm + 1e-7), 1)

    def __call__(
        self,
        input: mx.array,
        offsets: mx.array | None = None,
        per_sample_weights: mx.array | None = None,
    ) -> mx.array:
        if per_sample_weights is not None and self.mode != "sum":
            raise ValueError("per_sample_weights needs mode='sum' (as in torch)")
        if input.ndim == 2:  # one bag per row
            if offsets is not None:
                raise ValueError("offsets must be None for 2-d input")
            offsets = mx.arange(input.shape[0]) * input.shape[1]
            include_last_offset = False
        else:
            if offsets is None:
                raise ValueError("1-d input needs offsets")
            include_last_offset = self.include_last_offset
        indices = input.reshape(-1)
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights.reshape(-1)
        if self.max_norm is not None:  # a factor per row: it scales as the weights do
            scale = self._renorm_scale(indices)
            per_sample_weights = scale if per_sample_weights is None else per_sample_weights * scale
        padding_idx = -1 if self.padding_idx is None else self.padding_idx
        return embedding_bag(
            self.weight,
            indices,
            offsets,
            self.mode,
            per_sample_weights,
            include_last_offset,
            padding_idx,
        )
