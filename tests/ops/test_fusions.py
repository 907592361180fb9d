"""The fusion passes end to end: models written as transformers writes them convert into
MLX's fast kernels and match torch (the C++ tests in cpp/tests/test_fusions.cpp check the
matching itself, and its near misses)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from torch2mlx.conversion import convert


def _convert(model, inputs, path, atol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(model, inputs, path, tolerance=(atol, 0.0), quiet=True)
    errors = [output["max_abs_error"] for output in result.report["outputs"]]
    assert result.passed, f"max abs errors {errors}"
    return result.model_py.read_text()


class Rotary(torch.nn.Module):
    """apply_rotary_pos_emb of transformers' Llama, from an inv_freq buffer and arange."""

    def __init__(self, dims: int, base: float, start: int = 0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.int64).float() / dims))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.start = start

    def forward(self, q, k):  # [batch, heads, length, dims]
        length = q.shape[2]
        positions = torch.arange(self.start, self.start + length)[None, :, None].float()
        freqs = positions * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos().to(q.dtype)[:, None]
        sin = emb.sin().to(q.dtype)[:, None]

        def rotate_half(x):
            half = x.shape[-1] // 2
            return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


# (dims, base, length, start, dtype, atol)
ROPE_CASES = [
    (16, 10000.0, 12, 0, torch.float32, 1e-5),
    (64, 500000.0, 24, 0, torch.float32, 1e-5),
    (32, 10000.0, 7, 5, torch.float32, 1e-5),  # positions from 5: mx.fast.rope's offset
    (16, 10000.0, 9, 0, torch.float16, 1e-2),
]


@pytest.mark.parametrize("op", ["mlx.fast.rope"])
@pytest.mark.parametrize("dims, base, length, start, dtype, atol", ROPE_CASES)
def test_rotary_embedding_becomes_mx_fast_rope(
    op, dims, base, length, start, dtype, atol, tmp_path
):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, length, dims, generator=generator).to(dtype)
    k = torch.randn(2, 2, length, dims, generator=generator).to(dtype)
    source = _convert(Rotary(dims, base, start).eval(), (q, k), tmp_path / "pkg", atol)
    assert source.count("mx.fast.rope(") == 2, source
    assert f"base={base}" in source and f"offset={start}" in source
    assert "mx.cos" not in source and "mx.concatenate" not in source


@pytest.mark.parametrize("op", ["mlx.fast.rope"])
def test_scaled_rotary_tables_stay_unfused_and_correct(op, tmp_path):
    # Frequencies that are not base ** (-2i/d) (a Llama 3-style rescaling): no mx.fast.rope,
    # the ops stay, and the result is still torch's.
    model = Rotary(16, 10000.0).eval()
    model.inv_freq[4:] /= 8.0
    q, k = torch.randn(1, 2, 6, 16), torch.randn(1, 2, 6, 16)
    source = _convert(model, (q, k), tmp_path / "pkg", 1e-5)
    assert "mx.fast.rope(" not in source


class RMSNorm(torch.nn.Module):
    """LlamaRMSNorm: statistics in float32, the weight applied in the input's dtype."""

    def __init__(self, size: int, weight: bool = True, eps: float = 1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(size) + 0.5) if weight else None
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype) if self.weight is not None else x.to(dtype)


@pytest.mark.parametrize(
    "weight, dtype, atol",
    [(True, torch.float32, 1e-5), (False, torch.float32, 1e-5), (True, torch.float16, 1e-2)],
)
def test_written_out_rms_norm_becomes_mx_fast_rms_norm(weight, dtype, atol, tmp_path):
    model = RMSNorm(32, weight).eval().to(dtype)
    x = torch.randn(2, 5, 32).to(dtype)
    source = _convert(model, (x,), tmp_path / "pkg", atol)
    assert "mx.fast.rms_norm(" in source and "mx.rsqrt" not in source, source


class GroupedAttention(torch.nn.Module):
    """transformers' repeat_kv before scaled_dot_product_attention, causal or masked."""

    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal

    def forward(self, q, k, v, mask=None):
        def repeat_kv(x, times):
            batch, heads, length, dims = x.shape
            x = x[:, :, None].expand(batch, heads, times, length, dims)
            return x.reshape(batch, heads * times, length, dims)

        repeats = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(
            q, repeat_kv(k, repeats), repeat_kv(v, repeats), attn_mask=mask, is_causal=self.causal
        )


@pytest.mark.parametrize("causal", [True, False])
def test_repeated_keys_and_values_go_to_mx_fast_attention_unrepeated(causal, tmp_path):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 10, 16, generator=generator)
    k = torch.randn(2, 2, 10, 16, generator=generator)
    v = torch.randn(2, 2, 10, 16, generator=generator)
    inputs = (q, k, v) if causal else (q, k, v, torch.rand(10, 10, generator=generator) > 0.3)
    source = _convert(GroupedAttention(causal).eval(), inputs, tmp_path / "pkg", 1e-5)
    assert "def expand" not in source and "mx.reshape" not in source, source
    if causal:
        assert '"causal"' in source and "causal_mask" not in source
