"""convert-weights with the module-type map taken from a .pt2 graph (nn_module_stack)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import safetensors.numpy
import torch
from torch import nn

import torch2mlx
from torch2mlx.cli import main


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2, groups=4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.up(self.features(x)).mean(dim=(2, 3)))


@pytest.fixture()
def exported(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, 4, 6, 6),)), tmp_path / "n.pt2")
    torch.save(model.state_dict(), tmp_path / "n.pth")
    return model, tmp_path


def test_module_map_from_pt2_matches_the_live_model(exported):
    model, tmp_path = exported
    from_graph = {
        path: (kind, groups) for path, kind, groups in torch2mlx.module_map(tmp_path / "n.pt2")
    }
    live = {path: (kind, groups) for path, kind, groups in torch2mlx.module_map(model) if path}
    for path in ("features", "features.0", "features.1", "up", "head"):
        assert from_graph[path] == live[path], path


def test_pt2_weights_convert_like_the_live_model(exported):
    model, tmp_path = exported
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "layouts were not converted" warning
        torch2mlx.convert_weights(tmp_path / "n.pt2", tmp_path / "a.safetensors", progress=False)
    torch2mlx.convert_weights(
        tmp_path / "n.pth", tmp_path / "b.safetensors", model=model, progress=False
    )
    a = safetensors.numpy.load_file(tmp_path / "a.safetensors")
    b = safetensors.numpy.load_file(tmp_path / "b.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Channels-last conv weight, per-group transposed conv weight: not torch's layout.
    assert a["features.layers.0.weight"].shape == (8, 3, 3, 2)
    assert a["up.weight"].shape == (4, 2, 2, 2)


def test_cli_model_may_be_a_pt2(exported, capsys):
    _, tmp_path = exported
    code = main(
        [
            "convert-weights",
            str(tmp_path / "n.pth"),
            "-o",
            str(tmp_path / "c.safetensors"),
            "--model",
            str(tmp_path / "n.pt2"),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert "conv_weight" in capsys.readouterr().out
