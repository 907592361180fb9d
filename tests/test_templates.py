"""MLX templates against torch: same state dict, same inputs, same outputs.

Each test builds the torch module with seeded random weights, loads its state dict into the
template with load_weights(strict=True) (so names and shapes must match exactly), runs both
on the same input and compares. Spatial templates are channels-last: the test moves torch's
channel axis to the end on the way in and out, and permutes conv weights as conv.py says.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from torch2mlx import templates as T

ATOL = 1e-5

# torch's TransformerEncoder explains when it does or does not take its nested-tensor path
pytestmark = [
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
]


@pytest.fixture(autouse=True)
def _seeded_inference():
    torch.manual_seed(0)
    mx.random.seed(0)
    with torch.no_grad():
        yield


# ---- helpers ------------------------------------------------------------------------------


def to_mx(t: torch.Tensor, channels_last: bool = False) -> mx.array:
    """A torch tensor as an MLX array; channels_last moves torch's channel axis 1 to the end
    (for unbatched inputs the tests move axis 0 themselves)."""
    if channels_last:
        t = t.movedim(1, -1)
    return mx.array(t.detach().contiguous().numpy())


def conv_weight(w: torch.Tensor) -> torch.Tensor:
    """torch Conv (O, I/g, *K) -> template (O, *K, I/g)."""
    return w.permute(0, *range(2, w.ndim), 1)


def conv_transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """torch ConvTranspose (I, O/g, *K) -> template (O, *K, I/g)."""
    i, o_g, *k = w.shape
    w = w.reshape(groups, i // groups, o_g, *k).permute(0, 2, *range(3, 3 + len(k)), 1)
    return w.reshape(groups * o_g, *k, i // groups)


def torch_weights(module: torch.nn.Module, convert=None) -> list[tuple[str, mx.array]]:
    """The state dict as MLX arrays, without num_batches_tracked; `convert(name, tensor)`
    may change a tensor's layout (conv weights)."""
    items = []
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        items.append((name, to_mx(convert(name, t) if convert else t)))
    return items


def load(template, module: torch.nn.Module, convert=None):
    module.eval()
    template.load_weights(torch_weights(module, convert), strict=True)
    return template


def close(got: mx.array, expected: torch.Tensor, channels_last: bool = False, atol=ATOL):
    if channels_last:
        expected = expected.movedim(1, -1)
    np.testing.assert_allclose(np.array(got), expected.numpy(), rtol=1e-5, atol=atol)


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Random values in the 1-d parameters and buffers, which torch initializes to constants
    (biases, norm weights, running statistics); matrices keep torch's random init."""
    for name, t in module.state_dict().items():
        if t.is_floating_point() and t.ndim == 1:
            t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t))
    return module


# ---- load_weights(strict=True) for every template --------------------------------------------

# (class name, constructor kwargs) valid for both torch.nn.<name> and templates.<name>
SAME_ARGS = [
    ("MultiheadAttention", {"embed_dim": 8, "num_heads": 2}),
    ("MultiheadAttention", {"embed_dim": 8, "num_heads": 2, "kdim": 5, "vdim": 7, "bias": False}),
    ("MultiheadAttention", {"embed_dim": 8, "num_heads": 4, "add_bias_kv": True}),
    ("TransformerEncoderLayer", {"d_model": 8, "nhead": 2, "dim_feedforward": 16}),
    ("TransformerDecoderLayer", {"d_model": 8, "nhead": 2, "dim_feedforward": 16, "bias": False}),
    ("Transformer", {"d_model": 8, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 1}),
    ("RNN", {"input_size": 3, "hidden_size": 5, "num_layers": 2, "bidirectional": True}),
    ("LSTM", {"input_size": 3, "hidden_size": 5, "num_layers": 2, "bidirectional": True}),
    ("LSTM", {"input_size": 3, "hidden_size": 5, "num_layers": 2, "proj_size": 2, "bias": False}),
    ("GRU", {"input_size": 3, "hidden_size": 5, "num_layers": 3}),
    ("Conv1d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2}),
    ("Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "bias": False}),
    ("Conv3d", {"in_channels": 2, "out_channels": 4, "kernel_size": 3}),
    ("ConvTranspose1d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2}),
    ("ConvTranspose2d", {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2)}),
    ("ConvTranspose3d", {"in_channels": 2, "out_channels": 4, "kernel_size": 2, "bias": False}),
    ("BatchNorm1d", {"num_features": 5}),
    ("BatchNorm2d", {"num_features": 5, "affine": False}),
    ("BatchNorm3d", {"num_features": 5, "track_running_stats": False}),
    ("InstanceNorm1d", {"num_features": 5}),
    ("InstanceNorm2d", {"num_features": 5, "affine": True, "track_running_stats": True}),
    ("InstanceNorm3d", {"num_features": 5, "affine": True}),
    ("GroupNorm", {"num_groups": 2, "num_channels": 6}),
    ("GroupNorm", {"num_groups": 2, "num_channels": 6, "affine": False}),
    ("LayerNorm", {"normalized_shape": (3, 4)}),
    ("LayerNorm", {"normalized_shape": 4, "bias": False}),
    ("LayerNorm", {"normalized_shape": 4, "elementwise_affine": False}),
    ("RMSNorm", {"normalized_shape": [2, 4]}),
    ("RMSNorm", {"normalized_shape": 4, "elementwise_affine": False}),
    ("EmbeddingBag", {"num_embeddings": 10, "embedding_dim": 3, "padding_idx": 0}),
    ("MaxPool2d", {"kernel_size": 2}),
    ("AvgPool2d", {"kernel_size": 2}),
    ("AdaptiveAvgPool2d", {"output_size": 3}),
    ("AdaptiveMaxPool2d", {"output_size": 3}),
    ("Upsample", {"scale_factor": 2}),
    ("PixelShuffle", {"upscale_factor": 2}),
    ("PixelUnshuffle", {"downscale_factor": 2}),
    ("Flatten", {}),
    ("Unflatten", {"dim": 1, "unflattened_size": (2, 3)}),
    ("Identity", {}),
    ("PReLU", {"num_parameters": 3}),
    ("PReLU", {}),
    ("GELU", {"approximate": "tanh"}),
    ("Softmax", {"dim": 1}),
]


def _layout(name: str, groups: int):
    """The weight conversion the conv templates' docstrings ask for (None for the others)."""
    if name.startswith("ConvTranspose"):
        return lambda k, t: conv_transpose_weight(t, groups) if k == "weight" else t
    if name.startswith("Conv"):
        return lambda k, t: conv_weight(t) if k == "weight" else t
    return None


@pytest.mark.parametrize(("name", "kwargs"), SAME_ARGS, ids=lambda v: str(v)[:40])
def test_names_and_shapes_match_torch(name, kwargs):
    module = getattr(torch.nn, name)(**kwargs)
    template = getattr(T, name)(**kwargs)
    convert = _layout(name, kwargs.get("groups", 1)) or (lambda k, t: t)
    expected = {
        k: tuple(convert(k, t).shape)
        for k, t in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert {k: v.shape for k, v in tree_flatten(template.parameters())} == expected
    load(template, module, convert)


def test_encoder_and_decoder_stacks_have_torch_names():
    enc = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(8, 2, 16), 2, torch.nn.LayerNorm(8)
    )
    dec = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16), 3)
    ours_enc = T.TransformerEncoder(T.TransformerEncoderLayer(8, 2, 16), 2, T.LayerNorm(8))
    ours_dec = T.TransformerDecoder(T.TransformerDecoderLayer(8, 2, 16), 3)
    for module, template in [(enc, ours_enc), (dec, ours_dec)]:
        assert sorted(k for k, _ in tree_flatten(template.parameters())) == sorted(
            module.state_dict()
        )
        load(template, randomize(module))
    # the layers are copies, not one layer shared
    bias = [np.array(layer.linear1.bias) for layer in ours_dec.layers]
    assert not np.array_equal(bias[0], bias[1])


# ---- attention ------------------------------------------------------------------------------


def _masks(kind: str, n: int, heads: int, length: int, source: int):
    """(attn_mask, key_padding_mask) in torch, never masking a whole row."""
    attn = padding = None
    if kind in ("bool", "bool3d", "bool+padding"):
        shape = (n * heads, length, source) if kind == "bool3d" else (length, source)
        attn = torch.rand(shape) > 0.6
        attn[..., 0] = False
    if kind == "float":
        attn = torch.randn(length, source)
    if kind in ("padding", "bool+padding"):
        padding = torch.zeros(n, source, dtype=torch.bool)
        padding[0, -2:] = True
        padding[-1, 1] = True
    if kind == "float padding":
        padding = torch.randn(n, source)
    return attn, padding


def _mx_or_none(t):
    return None if t is None else to_mx(t)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize(
    "masks", ["none", "bool", "bool3d", "float", "padding", "float padding", "bool+padding"]
)
def test_multihead_attention_masks(batch_first, need_weights, masks):
    n, length, source, e, heads = 3, 4, 6, 8, 2
    module = torch.nn.MultiheadAttention(e, heads, batch_first=batch_first).eval()
    randomize(module)
    template = load(T.MultiheadAttention(e, heads, batch_first=batch_first), module)
    shape = (n, length, e) if batch_first else (length, n, e)
    query = torch.randn(shape)
    key = torch.randn((n, source, e) if batch_first else (source, n, e))
    value = torch.randn(key.shape)
    attn, padding = _masks(masks, n, heads, length, source)
    out, weights = module(
        query, key, value, key_padding_mask=padding, attn_mask=attn, need_weights=need_weights
    )
    got, got_weights = template(
        to_mx(query),
        to_mx(key),
        to_mx(value),
        key_padding_mask=_mx_or_none(padding),
        attn_mask=_mx_or_none(attn),
        need_weights=need_weights,
    )
    close(got, out)
    if need_weights:
        close(got_weights, weights)
    else:
        assert got_weights is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kdim": 5, "vdim": 7},
        {"bias": False},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True, "kdim": 5, "vdim": 7},
    ],
    ids=str,
)
@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention_options(kwargs, average):
    n, length, source, e, heads = 2, 3, 5, 8, 4
    module = randomize(torch.nn.MultiheadAttention(e, heads, **kwargs).eval())
    template = load(T.MultiheadAttention(e, heads, **kwargs), module)
    query = torch.randn(length, n, e)
    key = torch.randn(source, n, kwargs.get("kdim", e))
    value = torch.randn(source, n, kwargs.get("vdim", e))
    attn, padding = _masks("bool+padding", n, heads, length, source)
    for need_weights in (True, False):
        out, weights = module(
            query,
            key,
            value,
            key_padding_mask=padding,
            attn_mask=attn,
            need_weights=need_weights,
            average_attn_weights=average,
        )
        got, got_weights = template(
            to_mx(query),
            to_mx(key),
            to_mx(value),
            key_padding_mask=to_mx(padding),
            attn_mask=to_mx(attn),
            need_weights=need_weights,
            average_attn_weights=average,
        )
        close(got, out)
        if need_weights:
            close(got_weights, weights)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_unbatched_and_causal(need_weights):
    length, e, heads = 5, 8, 2
    module = randomize(torch.nn.MultiheadAttention(e, heads).eval())
    template = load(T.MultiheadAttention(e, heads), module)
    x = torch.randn(length, e)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(length)
    out, weights = module(x, x, x, attn_mask=causal, is_causal=True, need_weights=need_weights)
    got, got_weights = template(
        to_mx(x), to_mx(x), to_mx(x), attn_mask=to_mx(causal), is_causal=True,
        need_weights=need_weights,
    )  # fmt: skip
    close(got, out)
    # is_causal without a mask: the template builds the causal mask itself
    got2, _ = template(to_mx(x), to_mx(x), to_mx(x), is_causal=True, need_weights=need_weights)
    close(got2, out)
    if need_weights:
        close(got_weights, weights)
    # unbatched with a per-head 3-d mask and a 1-d key padding mask
    attn = torch.rand(heads, length, length) > 0.5
    attn[..., 0] = False
    padding = torch.tensor([False, False, True, False, True])
    out, weights = module(x, x, x, attn_mask=attn, key_padding_mask=padding)
    got, got_weights = template(
        to_mx(x), to_mx(x), to_mx(x), attn_mask=to_mx(attn), key_padding_mask=to_mx(padding)
    )
    close(got, out)
    close(got_weights, weights)


@pytest.mark.parametrize("masks", ["attn", "padding"])
def test_multihead_attention_query_that_sees_no_key(masks):
    # torch's attention gives such a query zeros (then out_proj's bias); mx.fast gives NaN
    n, length, e, heads = 2, 3, 8, 2
    module = randomize(torch.nn.MultiheadAttention(e, heads).eval())
    template = load(T.MultiheadAttention(e, heads), module)
    x = torch.randn(length, n, e)
    attn = padding = None
    if masks == "attn":
        attn = torch.zeros(length, length, dtype=torch.bool)
        attn[0] = True  # query 0 of every batch
    else:
        padding = torch.tensor([[True] * length, [False] * length])  # all of batch 0
    out, _ = module(x, x, x, attn_mask=attn, key_padding_mask=padding, need_weights=False)
    got, _ = template(
        to_mx(x),
        to_mx(x),
        to_mx(x),
        attn_mask=_mx_or_none(attn),
        key_padding_mask=_mx_or_none(padding),
        need_weights=False,
    )
    assert not torch.isnan(out).any()
    close(got, out)


# ---- transformer ----------------------------------------------------------------------------


def _seq(batch_first, n, length, e):
    return torch.randn((n, length, e) if batch_first else (length, n, e))


LAYER_CASES = [
    {"batch_first": False, "norm_first": False, "bias": True, "activation": "relu"},
    {"batch_first": True, "norm_first": False, "bias": True, "activation": "gelu"},
    {"batch_first": False, "norm_first": True, "bias": False, "activation": "relu"},
    {"batch_first": True, "norm_first": True, "bias": True, "activation": "gelu"},
]


@pytest.mark.parametrize("kwargs", LAYER_CASES, ids=str)
@pytest.mark.parametrize("masks", ["none", "causal", "padding"])
def test_transformer_encoder_layer(kwargs, masks):
    n, length, e = 2, 5, 8
    module = randomize(torch.nn.TransformerEncoderLayer(e, 2, 16, **kwargs).eval())
    template = load(T.TransformerEncoderLayer(e, 2, 16, **kwargs), module)
    src = _seq(kwargs["batch_first"], n, length, e)
    mask = padding = None
    if masks == "causal":
        mask = torch.nn.Transformer.generate_square_subsequent_mask(length)
    if masks == "padding":
        padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out = module(src, src_mask=mask, src_key_padding_mask=padding, is_causal=masks == "causal")
    got = template(
        to_mx(src),
        src_mask=_mx_or_none(mask),
        src_key_padding_mask=_mx_or_none(padding),
        is_causal=masks == "causal",
    )
    close(got, out)


@pytest.mark.parametrize("kwargs", LAYER_CASES, ids=str)
@pytest.mark.parametrize("masks", ["none", "all"])
def test_transformer_decoder_layer(kwargs, masks):
    n, length, source, e = 2, 4, 6, 8
    module = randomize(torch.nn.TransformerDecoderLayer(e, 2, 16, **kwargs).eval())
    template = load(T.TransformerDecoderLayer(e, 2, 16, **kwargs), module)
    tgt = _seq(kwargs["batch_first"], n, length, e)
    memory = _seq(kwargs["batch_first"], n, source, e)
    masks_torch = {}
    if masks == "all":
        memory_mask = torch.rand(length, source) > 0.7
        memory_mask[:, 0] = False
        masks_torch = {
            "tgt_mask": torch.nn.Transformer.generate_square_subsequent_mask(length),
            "memory_mask": memory_mask.float().masked_fill(memory_mask, float("-inf")),
            "tgt_key_padding_mask": torch.tensor([[0.0, 0, 0, 0], [0, 0, -1e9, 0]]),
            "memory_key_padding_mask": torch.tensor([[0.0] * 6, [0, 0, 0, 0, -1e9, -1e9]]),
            "tgt_is_causal": False,
        }
    out = module(tgt, memory, **masks_torch)
    masks_mx = {k: v if isinstance(v, bool) else to_mx(v) for k, v in masks_torch.items()}
    got = template(to_mx(tgt), to_mx(memory), **masks_mx)
    close(got, out)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_stacks(batch_first, norm_first):
    n, length, source, e = 2, 4, 5, 8
    kwargs = {"batch_first": batch_first, "norm_first": norm_first}
    layer = torch.nn.TransformerEncoderLayer(e, 2, 16, **kwargs)
    encoder = randomize(torch.nn.TransformerEncoder(layer, 2, torch.nn.LayerNorm(e)).eval())
    decoder = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(e, 2, 16, **kwargs), 2)
    randomize(decoder.eval())
    ours_encoder = T.TransformerEncoder(
        T.TransformerEncoderLayer(e, 2, 16, **kwargs), 2, T.LayerNorm(e)
    )
    ours_decoder = T.TransformerDecoder(T.TransformerDecoderLayer(e, 2, 16, **kwargs), 2)
    load(ours_encoder, encoder)
    load(ours_decoder, decoder)

    src = _seq(batch_first, n, source, e)
    tgt = _seq(batch_first, n, length, e)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    causal = torch.nn.Transformer.generate_square_subsequent_mask(length)
    memory = encoder(src, src_key_padding_mask=padding)
    got_memory = ours_encoder(to_mx(src), src_key_padding_mask=to_mx(padding))
    # torch's nested-tensor fast path leaves zeros at padded positions: compare the rest
    keep = ~padding if batch_first else ~padding.T
    close(np.array(got_memory)[keep.numpy()], memory[keep])
    out = decoder(tgt, memory, tgt_mask=causal, memory_key_padding_mask=padding)
    got = ours_decoder(
        to_mx(tgt), to_mx(memory), tgt_mask=to_mx(causal), memory_key_padding_mask=to_mx(padding)
    )
    close(got, out)


@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer(batch_first):
    n, length, source, e = 2, 4, 5, 8
    kwargs = {"d_model": e, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 2,
              "dim_feedforward": 16, "batch_first": batch_first}  # fmt: skip
    module = randomize(torch.nn.Transformer(**kwargs).eval())
    template = load(T.Transformer(**kwargs), module)
    src, tgt = _seq(batch_first, n, source, e), _seq(batch_first, n, length, e)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(length)
    out = module(src, tgt, tgt_mask=causal, tgt_is_causal=True)
    got = template(to_mx(src), to_mx(tgt), tgt_mask=to_mx(causal), tgt_is_causal=True)
    close(got, out)
    assert np.array_equal(np.array(T.Transformer.generate_square_subsequent_mask(4)), causal)


@pytest.mark.parametrize("activation", ["relu", "gelu", torch.nn.GELU(), torch.nn.ReLU()], ids=str)
def test_transformer_from_torch(activation):
    n, length, source, e = 2, 4, 5, 8
    kwargs = {"d_model": e, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 1,
              "dim_feedforward": 16, "batch_first": True, "norm_first": True, "bias": False,
              "layer_norm_eps": 1e-3, "activation": activation}  # fmt: skip
    module = randomize(torch.nn.Transformer(**kwargs).eval())
    template = load(T.Transformer.from_torch(module), module)
    src, tgt = torch.randn(n, source, e), torch.randn(n, length, e)
    close(template(to_mx(src), to_mx(tgt)), module(src, tgt))
    for part in (module.encoder, module.decoder, module.encoder.layers[0]):
        load(getattr(T, type(part).__name__).from_torch(part), part)
    layer = module.decoder.layers[0]
    ours = load(T.TransformerDecoderLayer.from_torch(layer), layer)
    close(ours(to_mx(tgt), to_mx(src)), layer(tgt, src))
    with pytest.raises(NotImplementedError, match="activation"):
        tanh_layer = torch.nn.TransformerEncoderLayer(e, 2, 16, activation=torch.tanh)
        T.TransformerEncoderLayer.from_torch(tanh_layer)


# ---- recurrent ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("batch_first", "bias"), [(False, True), (True, False)])
def test_recurrent(kind, num_layers, bidirectional, batch_first, bias):
    length, n, size, hidden = 5, 3, 4, 6
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional,
              "batch_first": batch_first, "bias": bias}  # fmt: skip
    if kind.startswith("RNN"):
        kwargs["nonlinearity"] = kind[4:].lower()
    name = kind[:3] if kind.startswith("RNN") else kind
    module = getattr(torch.nn, name)(size, hidden, **kwargs).eval()
    template = load(getattr(T, name)(size, hidden, **kwargs), module)
    x = torch.randn((n, length, size) if batch_first else (length, n, size))
    out, state = module(x)
    got, got_state = template(to_mx(x))
    close(got, out)
    if kind == "LSTM":
        close(got_state[0], state[0])
        close(got_state[1], state[1])
    else:
        close(got_state, state)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batched", [True, False])
def test_recurrent_initial_state(name, batched):
    length, n, size, hidden, layers = 4, 2, 3, 5, 2
    module = getattr(torch.nn, name)(size, hidden, layers, bidirectional=True).eval()
    template = load(getattr(T, name)(size, hidden, layers, bidirectional=True), module)
    lead = (n,) if batched else ()
    x = torch.randn(length, *lead, size)
    h0 = torch.randn(layers * 2, *lead, hidden)
    hx = (h0, torch.randn(layers * 2, *lead, hidden)) if name == "LSTM" else h0
    out, state = module(x, hx)
    got, got_state = template(to_mx(x), tuple(map(to_mx, hx)) if name == "LSTM" else to_mx(hx))
    close(got, out)
    for a, b in zip(got_state, state, strict=True):
        close(a, b)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_recurrent_batch_first_state_and_unbatched_without_state(name):
    length, n, size, hidden, layers = 4, 2, 3, 5, 2
    kwargs = {"num_layers": layers, "bidirectional": True, "batch_first": True}
    module = getattr(torch.nn, name)(size, hidden, **kwargs).eval()
    template = load(getattr(T, name)(size, hidden, **kwargs), module)

    def check(got, expected):  # (output, h_n) or (output, (h_n, c_n))
        close(got[0], expected[0])
        states = [r[1] if name == "LSTM" else (r[1],) for r in (got, expected)]
        for a, b in zip(*states, strict=True):
            close(a, b)

    # batch_first: the state stays (layers * D, N, H)
    x = torch.randn(n, length, size)
    hx = tuple(torch.randn(layers * 2, n, hidden) for _ in range(2 if name == "LSTM" else 1))
    got = template(to_mx(x), tuple(map(to_mx, hx)) if name == "LSTM" else to_mx(hx[0]))
    check(got, module(x, hx if name == "LSTM" else hx[0]))
    # unbatched (L, H_in) with zeros for the missing state (layers * D, H)
    check(template(to_mx(x[0])), module(x[0]))


@pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_projection(bidirectional):
    length, n, size, hidden, proj = 4, 2, 3, 6, 2
    kwargs = {"num_layers": 2, "proj_size": proj, "bidirectional": bidirectional}
    module = torch.nn.LSTM(size, hidden, **kwargs).eval()
    template = load(T.LSTM(size, hidden, **kwargs), module)
    x = torch.randn(length, n, size)
    out, (h, c) = module(x)
    got, (got_h, got_c) = template(to_mx(x))
    close(got, out)
    close(got_h, h)
    close(got_c, c)


# ---- convolutions ---------------------------------------------------------------------------

CONV_CASES = [
    {},
    {"stride": 2, "padding": 1, "dilation": 2, "groups": 2, "bias": False},
    {"padding": "same", "kernel_size": 4, "dilation": 2},
    {"padding": "valid", "stride": 2},
    {"padding": 2, "padding_mode": "reflect", "groups": 2},
    {"padding": 1, "padding_mode": "replicate", "stride": 2},
    {"padding": 2, "padding_mode": "circular", "dilation": 2},
    {"padding": "same", "padding_mode": "reflect", "kernel_size": 4},
    {"groups": 4, "out_channels": 8, "padding": 1},  # depthwise
    # "same" through conv_padded, grouped (3-d: one convolution per group)
    {"padding": "same", "kernel_size": 2, "groups": 2},
    {"padding": "same", "padding_mode": "circular", "groups": 2, "kernel_size": 4},
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv(ndim, case):
    kwargs = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **case}
    name = f"Conv{ndim}d"
    module = getattr(torch.nn, name)(**kwargs).eval()
    template = load(getattr(T, name)(**kwargs), module, _layout(name, 1))
    x = torch.randn(2, 4, *(7, 6, 5)[:ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


def test_conv_unbatched_and_tuple_padding():
    kwargs = {"in_channels": 3, "out_channels": 4, "kernel_size": (3, 2), "padding": (2, 1)}
    module = torch.nn.Conv2d(**kwargs).eval()
    template = load(T.Conv2d(**kwargs), module, _layout("Conv2d", 1))
    x = torch.randn(3, 6, 5)
    got = template(to_mx(x.movedim(0, -1)))
    close(got, module(x).movedim(0, -1))


CONV_TRANSPOSE_CASES = [
    {},
    {"stride": 2, "padding": 1, "output_padding": 1},
    {"stride": 2, "groups": 2, "dilation": 2, "bias": False},
    {"stride": 3, "padding": 2, "output_padding": 2, "groups": 2, "out_channels": 4},
    {"groups": 4, "out_channels": 8},
    # padding > dilation * (kernel_size - 1), where MLX's own padding argument goes wrong
    {"kernel_size": 1, "stride": 2, "padding": 1},
    {"kernel_size": 2, "stride": 3, "padding": 2, "output_padding": 2, "groups": 2},
]


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=str)
def test_conv_transpose(ndim, case):
    kwargs = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **case}
    name = f"ConvTranspose{ndim}d"
    module = getattr(torch.nn, name)(**kwargs).eval()
    template = load(getattr(T, name)(**kwargs), module, _layout(name, kwargs.get("groups", 1)))
    x = torch.randn(2, 4, *(5, 4, 3)[:ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


def test_conv_transpose_output_size():
    module = torch.nn.ConvTranspose2d(4, 6, 3, stride=3, padding=1).eval()
    template = load(
        T.ConvTranspose2d(4, 6, 3, stride=3, padding=1), module, _layout("ConvTranspose2d", 1)
    )
    x = torch.randn(2, 4, 5, 4)
    out = module(x, output_size=(14, 12))
    close(template(to_mx(x, channels_last=True), output_size=(14, 12)), out, channels_last=True)
    with pytest.raises(ValueError, match="output_size"):
        template(to_mx(x, channels_last=True), output_size=(20, 12))


# ---- pooling --------------------------------------------------------------------------------

SPATIAL = {1: (11,), 2: (9, 10), 3: (7, 6, 5)}

MAX_POOL_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2},
    {"kernel_size": 2, "stride": 3, "dilation": 3, "ceil_mode": True, "padding": 1},
]


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=str)
def test_max_pool(ndim, case):
    name = f"MaxPool{ndim}d"
    module, template = getattr(torch.nn, name)(**case), getattr(T, name)(**case)
    x = torch.randn(2, 3, *SPATIAL[ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


def test_max_pool_window_in_padding_only():
    # 1 row, padding 1, dilation 3: some windows see only padding, and torch gives -inf
    kwargs = {"kernel_size": 2, "stride": 3, "padding": 1, "dilation": 3, "ceil_mode": True}
    x = torch.randn(2, 3, 1, 6)
    expected = torch.nn.MaxPool2d(**kwargs)(x)
    assert torch.isinf(expected).any()
    close(T.MaxPool2d(**kwargs)(to_mx(x, channels_last=True)), expected, channels_last=True)


AVG_POOL_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": (3, 2, 2), "stride": (2, 1, 3), "padding": (1, 0, 1)},
    {"kernel_size": 3, "padding": 1, "divisor_override": 5},
]


@pytest.mark.parametrize(
    ("ndim", "case"),
    # torch's AvgPool1d has no divisor_override
    [(n, c) for n in (1, 2, 3) for c in AVG_POOL_CASES if n > 1 or "divisor_override" not in c],
    ids=str,
)
def test_avg_pool(ndim, case):
    case = {k: v[:ndim] if isinstance(v, tuple) else v for k, v in case.items()}
    name = f"AvgPool{ndim}d"
    module, template = getattr(torch.nn, name)(**case), getattr(T, name)(**case)
    x = torch.randn(2, 3, *SPATIAL[ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("kind", ["Avg", "Max"])
@pytest.mark.parametrize("size", [1, 3, 4, (5, None, 2), 13], ids=str)
def test_adaptive_pool(ndim, kind, size):
    size = size[:ndim] if isinstance(size, tuple) else size
    name = f"Adaptive{kind}Pool{ndim}d"
    module, template = getattr(torch.nn, name)(size), getattr(T, name)(size)
    x = torch.randn(2, 3, *SPATIAL[ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)
    # unbatched: (C, *spatial) in torch, (*spatial, C) here
    close(template(to_mx(x[0].movedim(0, -1))), module(x[0]).movedim(0, -1))


# ---- upsampling, pixel shuffle, shapes ------------------------------------------------------

UPSAMPLE_CASES = [
    (2, {"scale_factor": 2}),
    (2, {"scale_factor": 1.5}),
    (2, {"scale_factor": (2.3, 0.7)}),
    (2, {"scale_factor": 1.7, "recompute_scale_factor": True}),
    (2, {"size": (13, 6)}),
    (2, {"size": 7, "mode": "nearest-exact"}),
    (2, {"scale_factor": 1.5, "mode": "nearest-exact"}),
    (2, {"size": (13, 6), "mode": "bilinear", "align_corners": False}),
    (2, {"size": (13, 6), "mode": "bilinear", "align_corners": True}),
    (2, {"scale_factor": 2, "mode": "bilinear"}),
    (2, {"scale_factor": 2.5, "mode": "bilinear", "align_corners": True}),
    (2, {"scale_factor": (0.6, 3), "mode": "bilinear", "align_corners": False}),
    (2, {"size": (4, 3), "mode": "area"}),
    # torch quirks: its 2-d nearest kernel makes 9 -> 18 with scale 2.05 an exact 2x (1-d
    # and 3-d ones apply the scale), and its linear kernels leave same-size axes alone
    (2, {"scale_factor": 2.05}),
    (1, {"scale_factor": 2.05}),
    (3, {"scale_factor": (1.1, 2.05, 1.0)}),
    (2, {"scale_factor": (1.05, 1.7), "mode": "bilinear"}),
    (1, {"scale_factor": 3, "mode": "linear", "align_corners": False}),
    (1, {"size": 20}),
    (3, {"size": (5, 9, 4), "mode": "trilinear", "align_corners": True}),
    (3, {"scale_factor": 2, "mode": "trilinear"}),
    # one output position (align_corners: scale 0), nearest-exact on every axis of 3-d
    (1, {"size": 1, "mode": "linear", "align_corners": True}),
    (3, {"scale_factor": (0.5, 1.5, 2), "mode": "nearest-exact"}),
]


@pytest.mark.parametrize(("ndim", "kwargs"), UPSAMPLE_CASES, ids=str)
def test_upsample(ndim, kwargs):
    module, template = torch.nn.Upsample(**kwargs), T.Upsample(**kwargs)
    x = torch.randn(2, 3, *SPATIAL[ndim])
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle(r):
    x = torch.randn(2, 5 * r * r, 4, 3)
    shuffled = torch.nn.PixelShuffle(r)(x)
    close(T.PixelShuffle(r)(to_mx(x, channels_last=True)), shuffled, channels_last=True)
    back = T.PixelUnshuffle(r)(to_mx(shuffled, channels_last=True))
    close(back, torch.nn.PixelUnshuffle(r)(shuffled), channels_last=True)
    # unbatched, and extra leading axes
    close(T.PixelShuffle(r)(to_mx(x[0].movedim(0, -1))), shuffled[0].movedim(0, -1))
    y = x.reshape(1, 2, 5 * r * r, 4, 3)
    close(T.PixelShuffle(r)(to_mx(y.movedim(2, -1))), torch.nn.PixelShuffle(r)(y).movedim(2, -1))


def test_flatten_unflatten_identity():
    x = torch.randn(2, 3, 4, 5)
    for args in [(), (0, 2), (1, -2)]:
        close(T.Flatten(*args)(to_mx(x)), torch.nn.Flatten(*args)(x))
    flat = x.reshape(2, 60)
    close(T.Unflatten(1, (3, -1, 5))(to_mx(flat)), torch.nn.Unflatten(1, (3, -1, 5))(flat))
    close(T.Identity(54, unused="x")(to_mx(x)), x)


# ---- activations ----------------------------------------------------------------------------

ACTIVATION_CASES = [
    ("GELU", {}),
    ("GELU", {"approximate": "tanh"}),
    ("Hardtanh", {}),
    ("Hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("Hardsigmoid", {}),
    ("Softplus", {}),
    ("Softplus", {"beta": 2.0, "threshold": 3.0}),
    ("Softmax", {"dim": -1}),
    ("Softmax", {}),  # torch's implicit dim: 1 for 4-d input
    ("LogSoftmax", {"dim": 2}),
    ("Softmin", {"dim": 0}),
    ("GLU", {}),
    ("GLU", {"dim": 1}),
]


@pytest.mark.filterwarnings("ignore:Implicit dimension choice:UserWarning")
@pytest.mark.parametrize(("name", "kwargs"), ACTIVATION_CASES, ids=str)
def test_activations(name, kwargs):
    module, template = getattr(torch.nn, name)(**kwargs), getattr(T, name)(**kwargs)
    x = torch.randn(2, 4, 3, 6) * 4
    close(template(to_mx(x)), module(x))


@pytest.mark.parametrize("num_parameters", [1, 5])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (2, 5, 4), (2, 5)], ids=str)
def test_prelu(num_parameters, shape):
    module = randomize(torch.nn.PReLU(num_parameters))
    template = load(T.PReLU(num_parameters), module)
    x = torch.randn(shape)
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


# ---- normalization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(4, 5), (4, 5, 6), (2, 5, 4, 3), (2, 5, 3, 2, 4)], ids=lambda s: f"{len(s)}d"
)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track_running_stats", [True, False])
def test_batch_norm(shape, affine, track_running_stats):
    name = f"BatchNorm{max(len(shape) - 2, 1)}d"
    kwargs = {"affine": affine, "track_running_stats": track_running_stats, "eps": 1e-3}
    module = randomize(getattr(torch.nn, name)(5, **kwargs).eval())
    template = load(getattr(T, name)(5, **kwargs), module)
    x = torch.randn(shape) * 2 + 1
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track_running_stats", [True, False])
def test_instance_norm(ndim, affine, track_running_stats):
    name = f"InstanceNorm{ndim}d"
    kwargs = {"affine": affine, "track_running_stats": track_running_stats}
    module = randomize(getattr(torch.nn, name)(5, **kwargs).eval())
    template = load(getattr(T, name)(5, **kwargs), module)
    x = torch.randn(2, 5, *SPATIAL[ndim]) * 3 - 1
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)
    close(template(to_mx(x[0].movedim(0, -1))), module(x[0]).movedim(0, -1))  # unbatched


@pytest.mark.parametrize(
    ("groups", "shape"),
    # (not 6 groups of (2, 6): a single value per group, where torch's variance is noise)
    [
        (g, s)
        for g in (1, 3, 6)
        for s in ((2, 6), (2, 6, 5), (2, 6, 4, 3))
        if not (g == 6 and len(s) == 2)
    ],
    ids=str,
)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(groups, shape, affine):
    module = randomize(torch.nn.GroupNorm(groups, 6, affine=affine).eval())
    template = load(T.GroupNorm(groups, 6, affine=affine), module)
    x = torch.randn(shape) * 2 + 1
    close(template(to_mx(x, channels_last=True)), module(x), channels_last=True)


@pytest.mark.parametrize("normalized_shape", [4, (3, 4)], ids=str)
@pytest.mark.parametrize(("affine", "bias"), [(True, True), (True, False), (False, True)])
def test_layer_norm(normalized_shape, affine, bias):
    kwargs = {"elementwise_affine": affine, "bias": bias, "eps": 1e-4}
    module = randomize(torch.nn.LayerNorm(normalized_shape, **kwargs))
    template = load(T.LayerNorm(normalized_shape, **kwargs), module)
    x = torch.randn(2, 5, 3, 4) * 2 + 1
    close(template(to_mx(x)), module(x))


@pytest.mark.parametrize("normalized_shape", [4, (3, 4)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [None, 1e-2])
def test_rms_norm(normalized_shape, affine, eps):
    kwargs = {"elementwise_affine": affine, "eps": eps}
    module = randomize(torch.nn.RMSNorm(normalized_shape, **kwargs))
    template = load(T.RMSNorm(normalized_shape, **kwargs), module)
    x = torch.randn(2, 5, 3, 4)
    x[0, 0] = 1e-4  # tiny rows, where eps matters
    close(template(to_mx(x)), module(x))


# ---- embedding ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_bag(mode, padding_idx):
    module = torch.nn.EmbeddingBag(10, 4, mode=mode, padding_idx=padding_idx)
    template = load(T.EmbeddingBag(10, 4, mode=mode, padding_idx=padding_idx), module)
    module.weight.normal_()  # make the padding row nonzero: it must still be left out
    template.weight = to_mx(module.weight)
    # 2-d input: one bag per row (the last row is all padding)
    rows = torch.tensor([[1, 2, 4], [4, 3, 9], [2, 2, 2]])
    close(template(to_mx(rows)), module(rows))
    # 1-d input with offsets: an empty bag in the middle
    flat = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])
    offsets = torch.tensor([0, 2, 2, 5])
    close(template(to_mx(flat), to_mx(offsets)), module(flat, offsets))
    if mode == "sum":
        weights = torch.randn(8)
        got = template(to_mx(flat), to_mx(offsets), per_sample_weights=to_mx(weights))
        close(got, module(flat, offsets, per_sample_weights=weights))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_last_offset_and_max_norm(mode):
    kwargs = {"mode": mode, "include_last_offset": True, "max_norm": 1.5, "norm_type": 3.0}
    module = torch.nn.EmbeddingBag(10, 4, **kwargs)
    template = load(T.EmbeddingBag(10, 4, **kwargs), module)  # before torch renormalizes
    flat = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])
    offsets = torch.tensor([0, 3, 3, 8])
    close(template(to_mx(flat), to_mx(offsets)), module(flat, offsets))


def test_embedding_bag_max_norm_with_per_sample_weights():
    # both scale the looked-up rows: the renorm factor and the sample weight multiply
    kwargs = {"mode": "sum", "max_norm": 1.0, "padding_idx": 4}
    module = torch.nn.EmbeddingBag(10, 4, **kwargs)
    template = load(T.EmbeddingBag(10, 4, **kwargs), module)  # before torch renormalizes
    rows = torch.tensor([[1, 2, 4], [4, 3, 9]])
    weights = torch.randn(2, 3)
    got = template(to_mx(rows), per_sample_weights=to_mx(weights))
    close(got, module(rows, per_sample_weights=weights))
