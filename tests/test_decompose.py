"""Ops without a direct translation are decomposed with torch's own tables, and only they."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.zoo.models import _randomise_norms
from torch import nn

import torch2mlx


class Composite(nn.Module):
    """outer, meshgrid, cdist, reshape_as, expand_as and swapaxes: composites of ops we
    translate, next to a LayerNorm and an attention that must stay whole."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        rows, cols = torch.meshgrid(x[0], y[0], indexing="ij")
        grid = torch.outer(x[0], y[0]) + rows * cols
        distances = torch.cdist(x, y)
        reshaped = x.reshape_as(y) + y[:1].expand_as(y)
        swapped = torch.swapaxes(self.norm(y), 0, 1)
        q = self.norm(x)[None]
        attention = nn.functional.scaled_dot_product_attention(q, q, q)
        return grid, distances, reshaped, swapped, attention


def test_untranslated_ops_are_decomposed_and_match_torch(tmp_path):
    torch.manual_seed(0)
    model = Composite().eval()
    inputs = (torch.randn(3, 4), torch.randn(3, 4))
    result = torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    assert result.passed is True, result.summary
    decomposed = set(result.config["decomposed_ops"])
    assert {
        "aten.outer.default",
        "aten.meshgrid.indexing",
        "aten.cdist.default",
        "aten.reshape_as.default",
        "aten.expand_as.default",
        "aten.swapaxes.default",
    } <= decomposed
    report = json.loads((tmp_path / "pkg/report.json").read_text())
    assert set(report["decomposed_ops"]) == decomposed
    # What translates directly is not decomposed: the norm and the attention stay fused.
    assert not decomposed & {"aten.layer_norm.default", "aten.scaled_dot_product_attention.default"}
    source = (tmp_path / "pkg/model.py").read_text()
    assert "scaled_dot_product_attention" in source and "layer_norm" in source.lower()


def test_a_model_that_translates_directly_is_not_decomposed(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU()).eval()
    result = torch2mlx.convert(model, (torch.randn(2, 4),), tmp_path / "pkg", quiet=True)
    assert result.config["decomposed_ops"] == []


@pytest.mark.parametrize("seed", [0, 1])
def test_decomposed_outer_in_a_rotary_embedding(tmp_path, seed):
    """Rotary embeddings written with torch.outer, as many Llama-style models do."""

    class Rotary(nn.Module):
        def forward(self, x):
            positions = torch.arange(x.shape[1], dtype=torch.float32)
            inverse = 1.0 / (10000 ** (torch.arange(0, 8, 2, dtype=torch.float32) / 8))
            angles = torch.outer(positions, inverse)
            return x * torch.cat([angles.cos(), angles.sin()], dim=-1)

    torch.manual_seed(seed)
    x = torch.randn(2, 5, 8)
    result = torch2mlx.convert(Rotary().eval(), (x,), tmp_path / "pkg", quiet=True)
    assert result.passed is True
    assert "aten.outer.default" in result.config["decomposed_ops"]
    import mlx.core as mx

    mlx_model = torch2mlx.load(tmp_path / "pkg")
    np.testing.assert_allclose(
        np.array(mlx_model(mx.array(x.numpy()))), Rotary()(x).numpy(), atol=1e-5
    )


class _Dropout2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.drop = nn.Dropout2d(0.5)

    def forward(self, x):
        return self.drop(self.conv(x))


class _InPlaceDropout(nn.Module):
    """torchvision's classifier heads: F.dropout(..., inplace=True) in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return nn.functional.dropout(self.fc(x), 0.2, training=False, inplace=True)


class _WeightNorm(nn.Module):
    """wav2vec2's positional convolution: a weight-normed Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 4, 3, padding=1))

    def forward(self, x):
        return self.conv(x)


class _GridSample(nn.Module):
    def forward(self, x, grid):
        return nn.functional.grid_sample(x, grid, align_corners=False)


class _Video(nn.Module):
    """A 5-D BatchNorm3d, which mlx.nn.BatchNorm does not take."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3)
        self.norm = nn.BatchNorm3d(4)

    def forward(self, x):
        return self.norm(self.conv(x))


CASES = {
    "dropout2d": (_Dropout2d, lambda: (torch.randn(2, 3, 8, 8),), "aten.feature_dropout.default"),
    "inplace_dropout": (_InPlaceDropout, lambda: (torch.randn(2, 4),), "aten.dropout_.default"),
    "weight_norm": (_WeightNorm, lambda: (torch.randn(2, 4, 8),), "aten._weight_norm.default"),
    "grid_sample": (
        _GridSample,
        lambda: (torch.randn(1, 3, 8, 8), torch.rand(1, 5, 5, 2) * 2 - 1),
        "aten.grid_sampler.default",
    ),
    "batchnorm3d": (_Video, lambda: (torch.randn(2, 3, 6, 6, 6),), None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_torch_decomposes_convert(tmp_path, name):
    factory, inputs, decomposed_op = CASES[name]
    torch.manual_seed(0)
    model = _randomise_norms(factory())
    result = torch2mlx.convert(model, inputs(), tmp_path / "pkg", quiet=True)
    assert result.passed is True, result.summary
    if decomposed_op:
        assert decomposed_op in result.config["decomposed_ops"]
