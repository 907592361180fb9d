"""Dynamic dimensions: each model is converted once with dynamic batch, sequence or image
dims, then its package runs at three other sizes and is compared with torch at each.

Recurrent nets (GRU, LSTM, RNN; bidirectional, several layers, batch first or not),
attention with padding masks (nn.TransformerEncoder, a Hugging Face BERT), and convnets
whose height and width are free (adaptive average pooling before the classifier).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from tests.zoo import hf_models
from tests.zoo import models as zoo
from torch import nn
from torch.export import Dim

import torch2mlx
from torch2mlx.capture import split_inputs
from torch2mlx.comparison import compare, rule_for


def convert_once_run_at(model, example, dynamic_shapes, sizes, tmp_path) -> dict:
    """Converts ``model`` once on ``example`` with ``dynamic_shapes``, then runs the package
    on every input of ``sizes`` and compares it with torch there (float32, atol 1e-5).
    Returns the package's config.json."""
    import mlx.core as mx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warnings about RNN weights during export
        result = torch2mlx.convert(
            model,
            example,
            tmp_path / "pkg",
            dynamic_shapes=dynamic_shapes,
            quiet=True,
        )
    assert result.passed, result.report["outputs"]
    mlx_model = torch2mlx.load(tmp_path / "pkg")
    for inputs in sizes:
        args, kwargs = split_inputs(inputs)
        with torch.no_grad():
            expected = model(*args, **kwargs)
        actual = mlx_model(*[mx.array(value.numpy()) for value in (*args, *kwargs.values())])
        shapes = [tuple(value.shape) for value in (*args, *kwargs.values())]
        for error in compare(expected, actual, rule_for("float32")):
            assert error.passed, f"inputs {shapes}: {error}"
    return result.config


def fixed_sizes(config: dict) -> list[list[str]]:
    """The sizes of each input of the package that are fixed numbers (dynamic ones are
    named by torch, s0...)."""
    return [[dim for dim in item["shape"] if dim.isdigit()] for item in config["inputs"]]


# ---------------------------------------------------------------------------------------
# Recurrent nets. torch's shape rule for these ops loops over the time steps, which used to
# fix the sequence length during export ("Constraints violated (seq)").

RECURRENT = {
    "gru_bidirectional_2_layers_batch_first": lambda: nn.GRU(
        6, 8, num_layers=2, bidirectional=True, batch_first=True
    ),
    "gru_bidirectional_seq_first": lambda: nn.GRU(6, 8, bidirectional=True),
    "gru_3_layers_seq_first": lambda: nn.GRU(6, 8, num_layers=3),
    "lstm_bidirectional_2_layers_batch_first": lambda: nn.LSTM(
        6, 8, num_layers=2, bidirectional=True, batch_first=True
    ),
    "lstm_bidirectional_projected_seq_first": lambda: nn.LSTM(
        6, 8, num_layers=2, bidirectional=True, proj_size=5
    ),
    "rnn_tanh_bidirectional_batch_first": lambda: nn.RNN(
        6, 8, num_layers=2, bidirectional=True, batch_first=True
    ),
    "rnn_relu_seq_first": lambda: nn.RNN(6, 8, nonlinearity="relu", num_layers=2),
}


def _sequence(batch_first: bool, batch: int, length: int) -> torch.Tensor:
    return torch.randn(batch, length, 6) if batch_first else torch.randn(length, batch, 6)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_net_runs_at_other_batch_sizes_and_lengths(name, tmp_path):
    torch.manual_seed(0)
    layer = RECURRENT[name]().eval()
    batch_first = layer.batch_first
    batch, length = Dim("batch", max=64), Dim("length", max=256)
    axes = {0: batch, 1: length} if batch_first else {0: length, 1: batch}
    sizes = [(_sequence(batch_first, b, t),) for b, t in ((1, 3), (4, 19), (2, 40))]
    config = convert_once_run_at(layer, (_sequence(batch_first, 3, 7),), (axes,), sizes, tmp_path)
    assert fixed_sizes(config) == [["6"]], config["inputs"]


def test_recurrent_sequence_is_dynamic_by_default(tmp_path):
    # Without dynamic_shapes, capture asks for Dim.AUTO on batch and sequence: the sequence
    # of a bidirectional GRU stays dynamic (it used to be fixed silently to the example's).
    torch.manual_seed(0)
    model, (tokens,), _ = zoo.recurrent()  # embedding, 2-layer bidirectional LSTM, GRU
    sizes = [(torch.randint(0, 64, (b, t)),) for b, t in ((1, 4), (5, 10), (2, 33))]
    config = convert_once_run_at(model, (tokens,), None, sizes, tmp_path)
    assert fixed_sizes(config) == [[]], config["inputs"]


class RecurrentWithAngles(nn.Module):
    """A GRU beside torch.outer, which capture decomposes: decomposing traces the program
    again, and the GRU's sequence must stay dynamic then too."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 8, batch_first=True, bidirectional=True)
        self.register_buffer("frequencies", torch.rand(16))

    def forward(self, x):
        steps = torch.arange(x.shape[1], dtype=torch.float32)
        out, _ = self.gru(x)
        return out * torch.cos(torch.outer(steps, self.frequencies))


def test_recurrent_sequence_stays_dynamic_through_decomposition(tmp_path):
    torch.manual_seed(0)
    model = RecurrentWithAngles().eval()
    axes = ({0: Dim("batch", max=64), 1: Dim("length", max=256)},)
    sizes = [(torch.randn(b, t, 6),) for b, t in ((1, 2), (4, 13), (2, 30))]
    config = convert_once_run_at(model, (torch.randn(3, 7, 6),), axes, sizes, tmp_path)
    assert config["decomposed_ops"] == ["aten.outer.default"]
    assert fixed_sizes(config) == [["6"]], config["inputs"]


# ---------------------------------------------------------------------------------------
# Attention with padding masks.


class PaddedEncoder(nn.Module):
    """nn.TransformerEncoder over a batch of padded sequences (True marks padding)."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(32))

    def forward(self, x, padding):
        return self.encoder(x, src_key_padding_mask=padding)


def _padded(batch: int, length: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    padding = torch.zeros(batch, length, dtype=torch.bool)
    for row in range(1, batch):
        pads = min(row, length - 1)  # row r has r padded positions, and one key at least
        if left:
            padding[row, :pads] = True
        else:
            padding[row, length - pads :] = True
    return torch.randn(batch, length, 32), padding


def _check_padded(model, tmp_path):
    """Converted once with dynamic batch and length, then run on right-, left- and long-padded
    batches; only the feature size stays fixed."""
    batch, length = Dim("batch", max=64), Dim("length", max=512)
    axes = ({0: batch, 1: length}, {0: batch, 1: length})
    sizes = [_padded(1, 5), _padded(4, 9, left=True), _padded(3, 30)]
    config = convert_once_run_at(model, _padded(3, 7), axes, sizes, tmp_path)
    assert fixed_sizes(config) == [["32"], []], config["inputs"]


def test_transformer_encoder_with_a_padding_mask(tmp_path):
    # Eager inference packs right-padded batches into nested tensors and returns zeros (then
    # the final norm) at padded positions; left padding takes the dense path. The package
    # does both, as torch decides, on the mask's values.
    torch.manual_seed(0)
    model = PaddedEncoder().eval()
    _check_padded(model, tmp_path)


class PaddedSelfAttention(nn.Module):
    """nn.MultiheadAttention with a key padding mask; without weights, eager inference takes
    torch's fused fast path."""

    def __init__(self, need_weights: bool):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x, padding):
        out, weights = self.attention(
            x, x, x, key_padding_mask=padding, need_weights=self.need_weights
        )
        return (out, weights) if self.need_weights else out


@pytest.mark.parametrize("need_weights", [True, False], ids=["with_weights", "fast_path"])
def test_multihead_attention_with_a_padding_mask(need_weights, tmp_path):
    torch.manual_seed(0)
    model = PaddedSelfAttention(need_weights).eval()
    _check_padded(model, tmp_path)


class Seq2Seq(nn.Module):
    """nn.Transformer with padded sources and targets: the encoder's padded memory (zeros
    in eager inference) is what the decoder attends to, masked."""

    def __init__(self):
        super().__init__()
        self.transformer = nn.Transformer(32, 4, 2, 2, 64, dropout=0.0, batch_first=True)

    def forward(self, source, target, source_padding, target_padding):
        return self.transformer(
            source,
            target,
            src_key_padding_mask=source_padding,
            tgt_key_padding_mask=target_padding,
            memory_key_padding_mask=source_padding,
        )


def _seq2seq(batch: int, source: int, target: int) -> tuple[torch.Tensor, ...]:
    (src, source_padding), (tgt, target_padding) = _padded(batch, source), _padded(batch, target)
    return src, tgt, source_padding, target_padding


def test_transformer_with_padded_sources_and_targets(tmp_path):
    torch.manual_seed(0)
    model = Seq2Seq().eval()
    batch, source, target = Dim("batch", max=64), Dim("source", max=512), Dim("target", max=512)
    axes = ({0: batch, 1: source}, {0: batch, 1: target}, {0: batch, 1: source})
    axes += ({0: batch, 1: target},)
    sizes = [_seq2seq(1, 4, 3), _seq2seq(4, 9, 11), _seq2seq(2, 30, 6)]
    config = convert_once_run_at(model, _seq2seq(3, 7, 5), axes, sizes, tmp_path)
    assert fixed_sizes(config) == [["32"], ["32"], [], []], config["inputs"]


def _text(vocab: int, batch: int, length: int) -> dict:
    generator = torch.Generator().manual_seed(batch * 100 + length)
    ids = torch.randint(0, vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - min(row, length - 1) :] = 0  # right padding, longer each row
    return {"input_ids": ids, "attention_mask": mask}


def test_hugging_face_bert_with_padding(tmp_path):
    model, example, _ = hf_models.bert()
    sizes = [_text(128, b, t) for b, t in ((1, 4), (3, 17), (4, 40))]
    config = convert_once_run_at(model, example, None, sizes, tmp_path)
    assert fixed_sizes(config) == [[], []], config["inputs"]


def test_hand_written_bert_with_padding(tmp_path):
    model, example, _ = zoo.bert()  # 4 blocks; positions from an nn.Embedding of 32
    sizes = [_text(128, b, t) for b, t in ((1, 3), (3, 16), (2, 32))]
    config = convert_once_run_at(model, example, None, sizes, tmp_path)
    assert fixed_sizes(config) == [[], []], config["inputs"]


# ---------------------------------------------------------------------------------------
# Convnets with free height and width: adaptive average pooling before the classifier.


class PooledCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, 5)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# Dim.AUTO, since a stride-2 net guards its sizes (no 1x1 feature map, ceil-mode pooling
# windows that start inside the input) in ways an explicit range would have to spell out.
IMAGE_AXES = ({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},)
IMAGE_SIZES = ((1, 37, 45), (4, 64, 64), (2, 97, 70))


@pytest.mark.parametrize(
    "build",
    [
        lambda: zoo._randomise_norms(PooledCNN()),
        lambda: zoo.resnet18()[0],
    ],
    ids=["pooled_cnn", "resnet18"],
)
def test_convnet_runs_at_other_heights_and_widths(build, tmp_path):
    torch.manual_seed(0)
    model = build()
    sizes = [(torch.randn(b, 3, h, w),) for b, h, w in IMAGE_SIZES]
    config = convert_once_run_at(model, (torch.randn(2, 3, 32, 36),), IMAGE_AXES, sizes, tmp_path)
    assert fixed_sizes(config) == [["3"]], config["inputs"]
