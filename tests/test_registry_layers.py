"""Every registry entry, end to end: a torch module with random weights goes through
convert_weights (via to_mlx_module) and the MLX module must compute what torch computes.

Single-input layers are wrapped in nn.Sequential, so the MLX side takes torch's layout
(NCHW) at its edges and runs channels-last inside, as converted models do. Float32 within
atol 1e-5 unless a case says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np
import pytest
import torch
from torch import nn

import torch2mlx
from torch2mlx.weights import convert_weights


def _randomize(module: nn.Module) -> nn.Module:
    """Random weights and running statistics, so that no rule can pass by accident."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 2.0)
                else:
                    tensor.normal_(0, 0.5)
    return module.eval()


def _images(*shape: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(*shape),)


# id -> (module factory, inputs factory); single tensor in, single tensor out.
SEQUENTIAL_CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple]]] = {
    "linear": (lambda: nn.Linear(6, 4), _images(2, 5, 6)),
    "linear-no-bias": (lambda: nn.Linear(6, 4, bias=False), _images(3, 6)),
    "identity": (nn.Identity, _images(2, 3)),
    "embedding": (lambda: nn.Embedding(10, 4), lambda: (torch.randint(0, 10, (2, 5)),)),
    "embedding-bag": (
        lambda: nn.EmbeddingBag(10, 4, mode="mean"),
        lambda: (torch.randint(0, 10, (2, 3)),),
    ),
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1), _images(2, 4, 11)),
    "conv1d-dilated-grouped": (
        lambda: nn.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False),
        _images(2, 4, 12),
    ),
    "conv2d": (lambda: nn.Conv2d(3, 8, 3, padding=1), _images(2, 3, 9, 9)),
    "conv2d-k1": (lambda: nn.Conv2d(8, 16, 1), _images(2, 8, 5, 5)),
    "conv2d-depthwise": (lambda: nn.Conv2d(8, 8, 3, groups=8, padding=1), _images(1, 8, 7, 7)),
    "conv2d-grouped-dilated-strided": (
        lambda: nn.Conv2d(4, 8, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2),
        _images(2, 4, 10, 9),
    ),
    "conv2d-same-reflect": (
        lambda: nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"),
        _images(1, 3, 8, 8),
    ),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, padding=1), _images(1, 2, 5, 6, 7)),
    "conv3d-grouped": (lambda: nn.Conv3d(4, 4, 2, groups=2), _images(1, 4, 4, 4, 4)),
    "conv-transpose1d": (lambda: nn.ConvTranspose1d(4, 3, 3, stride=2), _images(2, 4, 7)),
    "conv-transpose2d": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
        _images(2, 4, 5, 5),
    ),
    "conv-transpose2d-grouped": (
        lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2),
        _images(1, 6, 4, 4),
    ),
    "conv-transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), _images(1, 2, 3, 3, 3)),
    "layer-norm": (lambda: nn.LayerNorm(6), _images(2, 5, 6)),
    "layer-norm-2d-no-affine": (
        lambda: nn.LayerNorm((4, 6), elementwise_affine=False),
        _images(2, 4, 6),
    ),
    "rms-norm": (lambda: nn.RMSNorm(6), _images(2, 5, 6)),
    "group-norm": (lambda: nn.GroupNorm(2, 6), _images(2, 6, 5, 5)),
    "batch-norm1d-2d-input": (lambda: nn.BatchNorm1d(6), _images(4, 6)),
    "batch-norm1d-3d-input": (lambda: nn.BatchNorm1d(6), _images(4, 6, 7)),
    "batch-norm2d": (lambda: nn.BatchNorm2d(6), _images(2, 6, 5, 5)),
    "batch-norm3d": (lambda: nn.BatchNorm3d(3), _images(2, 3, 4, 4, 4)),
    "instance-norm1d": (lambda: nn.InstanceNorm1d(6, affine=True), _images(2, 6, 9)),
    "instance-norm2d-running": (
        lambda: nn.InstanceNorm2d(6, affine=True, track_running_stats=True),
        _images(2, 6, 5, 5),
    ),
    "instance-norm3d": (lambda: nn.InstanceNorm3d(2), _images(1, 2, 4, 4, 4)),
    "prelu": (lambda: nn.PReLU(6), _images(2, 6, 4, 4)),
    "max-pool1d": (lambda: nn.MaxPool1d(3, stride=2, ceil_mode=True), _images(2, 4, 10)),
    "max-pool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1), _images(2, 3, 9, 9)),
    "max-pool3d": (lambda: nn.MaxPool3d(2), _images(1, 2, 4, 4, 4)),
    "avg-pool1d": (lambda: nn.AvgPool1d(3, stride=2, padding=1), _images(2, 4, 10)),
    "avg-pool2d-no-pad-count": (
        lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
        _images(2, 3, 8, 8),
    ),
    "avg-pool3d": (lambda: nn.AvgPool3d(2), _images(1, 2, 4, 4, 4)),
    "adaptive-avg-pool1d": (lambda: nn.AdaptiveAvgPool1d(3), _images(2, 4, 10)),
    "adaptive-avg-pool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), _images(2, 4, 7, 5)),
    "adaptive-avg-pool3d": (lambda: nn.AdaptiveAvgPool3d(2), _images(1, 2, 5, 4, 3)),
    "adaptive-max-pool1d": (lambda: nn.AdaptiveMaxPool1d(3), _images(2, 4, 10)),
    "adaptive-max-pool2d": (lambda: nn.AdaptiveMaxPool2d(3), _images(2, 4, 7, 7)),
    "adaptive-max-pool3d": (lambda: nn.AdaptiveMaxPool3d(2), _images(1, 2, 5, 4, 3)),
    "upsample-nearest": (lambda: nn.Upsample(scale_factor=2), _images(1, 3, 4, 5)),
    "upsample-bilinear-aligned": (
        lambda: nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
        _images(1, 3, 4, 5),
    ),
    "upsampling-nearest2d": (lambda: nn.UpsamplingNearest2d(scale_factor=3), _images(1, 2, 3, 3)),
    "upsampling-bilinear2d": (
        lambda: nn.UpsamplingBilinear2d(scale_factor=2),
        _images(1, 2, 3, 3),
    ),
    "pixel-shuffle": (lambda: nn.PixelShuffle(2), _images(1, 8, 3, 3)),
    "pixel-unshuffle": (lambda: nn.PixelUnshuffle(2), _images(1, 2, 6, 6)),
    "flatten": (nn.Flatten, _images(2, 3, 4, 5)),
    "unflatten": (lambda: nn.Unflatten(1, (2, 3)), _images(4, 6)),
    "dropout": (lambda: nn.Dropout(0.5), _images(3, 4)),
    "dropout2d": (lambda: nn.Dropout2d(0.5), _images(1, 3, 4, 4)),
    "softmax": (lambda: nn.Softmax(dim=1), _images(2, 5, 3)),
    "log-softmax": (lambda: nn.LogSoftmax(dim=-1), _images(2, 5)),
    "softmin": (lambda: nn.Softmin(dim=1), _images(2, 5)),
    "glu": (lambda: nn.GLU(dim=1), _images(2, 6)),
    "hf-conv1d": (lambda: _hf_conv1d(8, 5), _images(2, 3, 5)),
}

ACTIVATIONS = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU,
    "gelu-tanh": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh, "leaky-relu": lambda: nn.LeakyReLU(0.2), "elu": lambda: nn.ELU(0.7),
    "celu": lambda: nn.CELU(1.3), "selu": nn.SELU, "mish": nn.Mish, "hardswish": nn.Hardswish,
    "hardtanh": lambda: nn.Hardtanh(-0.5, 0.7), "hardsigmoid": nn.Hardsigmoid,
    "softplus": lambda: nn.Softplus(beta=2, threshold=3), "softsign": nn.Softsign,
    "log-sigmoid": nn.LogSigmoid, "softshrink": lambda: nn.Softshrink(0.3),
    "hardshrink": lambda: nn.Hardshrink(0.3),
}  # fmt: skip
for _name, _factory in ACTIVATIONS.items():
    SEQUENTIAL_CASES[_name] = (_factory, _images(2, 3, 4, 4))


def _hf_conv1d(out_features: int, in_features: int) -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    return Conv1D(out_features, in_features)


def _to_mlx(x: torch.Tensor) -> mx.array:
    return mx.array(x.numpy())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.mark.parametrize("case", sorted(SEQUENTIAL_CASES))
def test_layer_matches_torch(case):
    factory, inputs = SEQUENTIAL_CASES[case]
    model = nn.Sequential(_randomize(factory()))
    args = inputs()
    expected = model(*args).detach().numpy()
    got = np.asarray(torch2mlx.to_mlx_module(model)(*map(_to_mlx, args)))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(SEQUENTIAL_CASES))
def test_every_rule_round_trips(case, tmp_path):
    factory, _ = SEQUENTIAL_CASES[case]
    model = nn.Sequential(_randomize(factory()))
    torch.save(model.state_dict(), tmp_path / "m.pth")
    convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model, progress=False)
    convert_weights(
        tmp_path / "m.safetensors", tmp_path / "b.safetensors", model=model, reverse=True
    )
    back = torch2mlx.load_state_dict(tmp_path / "b.safetensors") if model.state_dict() else {}
    original = model.state_dict()
    assert set(back) == set(original)
    for name, tensor in original.items():
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[name], tensor.numpy(), err_msg=name)


def test_bilinear_takes_two_inputs():
    layer = _randomize(nn.Bilinear(3, 4, 5))
    x1, x2 = torch.randn(6, 3), torch.randn(6, 4)
    got = torch2mlx.to_mlx_module(layer)(_to_mlx(x1), _to_mlx(x2))
    np.testing.assert_allclose(np.asarray(got), layer(x1, x2).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", ["packed", "separate-kv"])
def test_multihead_attention_with_masks(batch_first, kind):
    extra = {"kdim": 5, "vdim": 7} if kind == "separate-kv" else {}
    layer = _randomize(nn.MultiheadAttention(8, 2, batch_first=batch_first, **extra))
    shape = (2, 4) if batch_first else (4, 2)
    q = torch.randn(*shape, 8)
    k = torch.randn(*shape, extra.get("kdim", 8))
    v = torch.randn(*shape, extra.get("vdim", 8))
    padding = torch.tensor([[False, False, False, True], [False, False, True, True]])
    out, weights = layer(q, k, v, key_padding_mask=padding)
    mlx_layer = torch2mlx.to_mlx_module(layer)
    got, got_weights = mlx_layer(
        _to_mlx(q), _to_mlx(k), _to_mlx(v), key_padding_mask=_to_mlx(padding)
    )
    np.testing.assert_allclose(np.asarray(got), out.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_weights), weights.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_and_decoder_layers(norm_first):
    encoder = _randomize(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=norm_first)
    )
    decoder = _randomize(
        nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, norm_first=norm_first)
    )
    src, tgt = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    memory = encoder(src)
    np.testing.assert_allclose(
        np.asarray(torch2mlx.to_mlx_module(encoder)(_to_mlx(src))),
        memory.detach().numpy(),
        atol=1e-5,
    )
    mask = nn.Transformer.generate_square_subsequent_mask(3)
    expected = decoder(tgt, memory, tgt_mask=mask).detach().numpy()
    got = torch2mlx.to_mlx_module(decoder)(
        _to_mlx(tgt), _to_mlx(memory.detach()), tgt_mask=_to_mlx(mask)
    )
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_whole_transformer():
    model = _randomize(
        nn.Transformer(
            8, 2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16, batch_first=True
        )
    )
    src, tgt = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    expected = model(src, tgt).detach().numpy()
    got = torch2mlx.to_mlx_module(model)(_to_mlx(src), _to_mlx(tgt))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent_layers(kind, bidirectional, batch_first):
    layer = _randomize(
        getattr(nn, kind)(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    )
    x = torch.randn(3, 4, 5)
    out, _ = layer(x)
    got, _ = torch2mlx.to_mlx_module(layer)(_to_mlx(x))
    np.testing.assert_allclose(np.asarray(got), out.detach().numpy(), atol=1e-5)


def test_cnn_runs_channels_last_inside_with_transposes_only_at_the_edges():
    model = _randomize(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
        )
    )  # fmt: skip
    x = torch.randn(2, 3, 12, 12)
    mlx_model = torch2mlx.to_mlx_module(model)
    np.testing.assert_allclose(
        np.asarray(mlx_model(_to_mlx(x))), model(x).detach().numpy(), atol=1e-5
    )
