"""The fusion passes end to end: models written as transformers writes them convert into
MLX's fast kernels and match torch (the C++ tests in cpp/tests/test_fusions.cpp check the
matching itself, and its near misses)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from torch2mlx.conversion import convert


def _convert(model, inputs, path, atol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(model, inputs, path, tolerance=atol, quiet=True)
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


class InterleavedRotary(torch.nn.Module):
    """Rotary embeddings whose pairs are (x[2i], x[2i+1]), as GPT-J (rotate_every_two with
    repeat_interleave'd tables) and Meta's original Llama write them; the complex form
    (view_as_complex) does not export, so the usual real forms stack the rotated halves."""

    def __init__(self, dims: int, base: float, form: str, start: int = 0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.int64).float() / dims))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.form, self.start = form, start

    def forward(self, q, k):  # [batch, heads, length, dims]
        length = q.shape[2]
        positions = torch.arange(self.start, self.start + length).float()
        freqs = positions[:, None] * self.inv_freq  # [length, dims / 2]
        cos, sin = freqs.cos().to(q.dtype), freqs.sin().to(q.dtype)

        def rotate(x):
            x1, x2 = x[..., ::2], x[..., 1::2]
            if self.form == "every_two":
                rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
                return x * cos.repeat_interleave(2, -1) + rotated * sin.repeat_interleave(2, -1)
            return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

        return rotate(q), rotate(k)


# (form, dims, base, length, start, dtype, atol)
INTERLEAVED_CASES = [
    ("every_two", 16, 10000.0, 12, 0, torch.float32, 1e-5),
    ("stacked", 64, 500000.0, 9, 0, torch.float32, 1e-5),
    ("stacked", 32, 10000.0, 7, 5, torch.float32, 1e-5),  # positions from 5: the offset
    ("every_two", 16, 10000.0, 9, 0, torch.float16, 1e-2),
    ("stacked", 16, 10000.0, 9, 0, torch.float16, 1e-2),
]


@pytest.mark.usefixtures("global_rng_kept")
@pytest.mark.parametrize("op", ["mlx.fast.rope"])
@pytest.mark.parametrize("form, dims, base, length, start, dtype, atol", INTERLEAVED_CASES)
def test_interleaved_rotary_embedding_becomes_traditional_mx_fast_rope(
    op, form, dims, base, length, start, dtype, atol, tmp_path
):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, length, dims, generator=generator).to(dtype)
    k = torch.randn(2, 2, length, dims, generator=generator).to(dtype)
    model = InterleavedRotary(dims, base, form, start).eval()
    source = _convert(model, (q, k), tmp_path / "pkg", atol)
    assert source.count("mx.fast.rope(") == 2, source
    assert "traditional=True" in source and f"offset={start}" in source, source
    assert "mx.cos" not in source and "mx.stack" not in source, source


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


class WrittenLayerNorm(torch.nn.Module):
    """Layer norms as model code writes them out, along the last axis or channels-first
    (ConvNeXt), with statistics from a mean of squares, var or var_mean."""

    def __init__(self, channels: int, variance: str, channels_first: bool, affine: bool = True):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(channels) + 0.5) if affine else None
        self.bias = torch.nn.Parameter(torch.randn(channels)) if affine else None
        self.variance, self.axis = variance, 1 if channels_first else -1

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        if self.variance == "var_mean":  # timm's _layer_norm_cf
            var, mean = torch.var_mean(x, dim=self.axis, unbiased=False, keepdim=True)
            x = (x - mean) * torch.rsqrt(var + 1e-6)
        else:
            mean = x.mean(self.axis, keepdim=True)
            if self.variance == "var":
                var = x.var(self.axis, keepdim=True, unbiased=False)
            else:  # HF ConvNext, BERT's original TF-style norm
                var = (x - mean).pow(2).mean(self.axis, keepdim=True)
            x = (x - mean) / torch.sqrt(var + 1e-6)
        x = x.to(dtype)
        if self.weight is None:
            return x
        if self.axis == 1:
            return self.weight[:, None, None] * x + self.bias[:, None, None]
        return self.weight * x + self.bias


class AfterConv(torch.nn.Module):
    """A norm after a convolution, whose output the code generator keeps channels-last."""

    def __init__(self, norm):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = norm

    def forward(self, x):
        return self.norm(self.conv(x))


# (variance, channels_first, affine, after a conv, dtype, atol)
LAYER_NORM_CASES = [
    ("squares", False, True, False, torch.float32, 1e-5),
    ("var", False, False, False, torch.float32, 1e-5),
    ("var_mean", False, True, False, torch.float32, 1e-5),
    ("squares", False, True, False, torch.float16, 1e-2),
    ("squares", True, True, False, torch.float32, 1e-5),
    ("var_mean", True, True, True, torch.float32, 1e-5),
    ("squares", True, True, True, torch.float16, 1e-2),
]


@pytest.mark.usefixtures("global_rng_kept")
@pytest.mark.parametrize("op", ["mlx.fast.layer_norm"])
@pytest.mark.parametrize("variance, channels_first, affine, conv, dtype, atol", LAYER_NORM_CASES)
def test_written_out_layer_norm_becomes_one_mx_fast_layer_norm(
    op, variance, channels_first, affine, conv, dtype, atol, tmp_path
):
    torch.manual_seed(0)
    norm = WrittenLayerNorm(8, variance, channels_first, affine)
    model = (AfterConv(norm) if conv else norm).eval().to(dtype)
    x = torch.randn(2, 3 if conv else 8, 5, 6) if channels_first else torch.randn(2, 5, 8)
    source = _convert(model, (x.to(dtype),), tmp_path / "pkg", atol)
    assert source.count("mx.fast.layer_norm(") == 1, source
    for composed in ("mx.mean", "mx.var", "mx.sqrt", "mx.rsqrt"):
        assert composed not in source, source
    # Channels-last after a conv, the channels are the last axis already: no axis moves.
    assert ("mx.moveaxis" in source) == (channels_first and not conv), source


@pytest.mark.usefixtures("global_rng_kept")
@pytest.mark.parametrize("op", ["aten.layer_norm.default"])
def test_the_unbiased_variance_is_not_a_layer_norm(op, tmp_path):
    class Unbiased(torch.nn.Module):
        def forward(self, x):
            return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5)

    source = _convert(Unbiased().eval(), (torch.randn(2, 5, 8),), tmp_path / "pkg", 1e-5)
    assert "layer_norm" not in source, source


class WrittenActivation(torch.nn.Module):
    """GELU and SiLU as activation modules of model libraries write them."""

    def __init__(self, form: str):
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)
        self.form = form

    def forward(self, x):
        x = self.linear(x)
        if self.form == "erf":  # BERT's original gelu
            return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        if self.form == "new_gelu":  # GPT-2
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))
            return 0.5 * x * (1.0 + torch.tanh(inner))
        if self.form == "fast_gelu":  # transformers' FastGELUActivation
            return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
        return x * torch.sigmoid(x)  # swish


# (op it becomes, form, what model.py calls, dtype, atol)
ACTIVATION_CASES = [
    ("aten.gelu.default", "erf", "nn.gelu(", torch.float32, 1e-5),
    ("aten.gelu.default", "new_gelu", "nn.gelu_approx(", torch.float32, 1e-5),
    ("aten.gelu.default", "fast_gelu", "nn.gelu_approx(", torch.float32, 1e-5),
    ("aten.silu.default", "swish", "nn.silu(", torch.float32, 1e-5),
    ("aten.gelu.default", "erf", "nn.gelu(", torch.float16, 1e-2),
    ("aten.gelu.default", "new_gelu", "nn.gelu_approx(", torch.float16, 1e-2),
    ("aten.silu.default", "swish", "nn.silu(", torch.float16, 1e-2),
]


@pytest.mark.usefixtures("global_rng_kept")
@pytest.mark.parametrize("op, form, call, dtype, atol", ACTIVATION_CASES)
def test_written_out_activations_become_one_call(op, form, call, dtype, atol, tmp_path):
    torch.manual_seed(0)
    model = WrittenActivation(form).eval().to(dtype)
    x = (torch.randn(2, 5, 16) * 3).to(dtype)
    source = _convert(model, (x,), tmp_path / "pkg", atol)
    assert source.count(call) == 1, source
    for composed in ("mx.erf", "mx.tanh", "mx.sigmoid", "mx.power"):
        assert composed not in source, source
