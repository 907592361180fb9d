"""Verify: every output and every module call side by side, and the first layer at fault.

Each fault is planted in a correct conversion through the package's files (the test-only
hook: a conv weight with its kernel axes swapped, one op swapped in model.py, a wrong
epsilon in one norm), and must be localized to the module that holds it.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import mlx.core as mx
import pytest
import torch
from torch import nn

import torch2mlx
from torch2mlx import cli


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        return x + self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    """A small channels-last CNN with a LayerNorm head: NHWC activations inside."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.norm = nn.LayerNorm(8, eps=1e-5)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(self.norm(x.mean((2, 3))))


def net():
    """Factory for the CLI: the model and its example inputs."""
    torch.manual_seed(0)
    model = Net().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics that are not 0 and 1
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model, (torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)),)


@pytest.fixture
def converted(tmp_path):
    model, inputs = net()
    result = torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    assert result.passed
    return model, inputs, tmp_path / "pkg"


def test_a_correct_conversion_passes_every_layer(converted):
    model, inputs, package = converted
    report = torch2mlx.verify(model, package, inputs)
    assert report.passed and report.first_divergence is None
    paths = [layer.path for layer in report.layers]
    calls = ["stem", "blocks.0", "blocks.0.conv", "blocks.0.bn", "blocks.1", "blocks.1.conv"]
    assert paths == [*calls, "blocks.1.bn", "norm", "head"]  # in the order calls start
    assert all(layer.passed for layer in report.layers), report.text()
    # The convolutions' outputs are NHWC in MLX and NCHW in torch, and still compare equal.
    modules = {m["path"]: m for m in json.loads((package / "modules.json").read_text())}
    assert modules["stem"]["output_perms"] == [[0, 2, 3, 1]]
    assert max(layer.max_abs_error for layer in report.layers) < 1e-5


def _edit_weight(package: Path, key: str, change) -> None:
    weights = mx.load(str(package / "model.safetensors"))
    weights[key] = change(weights[key])
    mx.save_safetensors(str(package / "model.safetensors"), weights)


def _edit_source(package: Path, pattern: str, replacement: str) -> None:
    source = (package / "model.py").read_text()
    edited, count = re.subn(pattern, replacement, source, count=1)
    assert count == 1, f"{pattern!r} not in model.py"
    (package / "model.py").write_text(edited)


def test_a_wrongly_permuted_conv_weight_is_localized(converted):
    model, inputs, package = converted
    # MLX stores conv weights (out, kh, kw, in): swapping kh and kw transposes the kernel.
    _edit_weight(package, "blocks.1.conv.weight", lambda w: mx.swapaxes(w, 1, 2))
    report = torch2mlx.verify(model, package, inputs)
    assert not report.passed
    culprit = report.first_divergence
    assert culprit.path == "blocks.1.conv" and culprit.type == "torch.nn.modules.conv.Conv2d"
    assert culprit.ops == ["aten.conv2d.default"]
    assert "its input matches torch" in culprit.explanation
    assert culprit.source_line.startswith("test_verify.py:")


def test_a_swapped_op_is_localized_to_the_module_whose_code_holds_it(converted):
    model, inputs, package = converted
    # ReLU is weight-free, so it runs inside Block's own code: the fault is Block's.
    _edit_source(package, r"nn\.relu\(", "nn.gelu(")
    report = torch2mlx.verify(model, package, inputs)
    culprit = report.first_divergence
    assert culprit.path == "blocks.0", report.text()
    assert "aten.relu.default" in culprit.ops
    assert culprit.source_line.endswith("return x + self.act(self.bn(self.conv(x)))")


def test_a_wrong_epsilon_in_one_norm_is_localized(converted):
    model, inputs, package = converted
    _edit_source(package, r"nn\.LayerNorm\(8, eps=1e-05\)", "nn.LayerNorm(8, eps=0.5)")
    report = torch2mlx.verify(model, package, inputs)
    culprit = report.first_divergence
    assert culprit.path == "norm" and culprit.type == "torch.nn.modules.normalization.LayerNorm"
    assert all(layer.passed for layer in report.layers if layer.path.startswith("blocks"))


def test_convert_names_the_first_divergence_in_its_report(tmp_path, monkeypatch):
    # A translation that is wrong from the start (as a bug in the registry would be): the
    # report of convert itself names the module.
    import torch2mlx.runtime as runtime

    model, inputs = net()
    original = runtime.load_model_class

    def corrupted(directory):
        source = (directory / "model.py").read_text()
        (directory / "model.py").write_text(source.replace("nn.relu(", "nn.gelu("))
        return original(directory)

    monkeypatch.setattr(runtime, "load_model_class", corrupted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    assert result.passed is False
    assert result.report["first_divergence"]["path"] == "blocks.0"
    assert any("first divergence: blocks.0" in line for line in result.summary)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_packages_verify_with_their_own_tolerance(dtype, tmp_path):
    model, inputs = net()
    torch2mlx.convert(model, inputs, tmp_path / "pkg", dtype=dtype, quiet=True)
    report = torch2mlx.verify(model, tmp_path / "pkg", inputs)
    assert report.dtype == dtype and report.tolerance["compute_dtype"] == dtype
    assert report.tolerance["atol"] == 1e-2 and report.tolerance["reference"] == "float64"
    assert report.passed, report.text()
    assert all(layer.passed for layer in report.layers)


def test_the_cli_reports_text_json_and_html(converted, tmp_path, capsys):
    _, _, package = converted
    assert cli.main(["verify", str(package), "--against", "tests.test_verify:net"]) == 0
    assert capsys.readouterr().out.startswith("matches torch (float32")
    _edit_weight(package, "head.weight", lambda w: w * 1.01)
    page = tmp_path / "report.html"
    code = cli.main(
        [
            "verify",
            str(package),
            "--against",
            "tests.test_verify:net",
            "--json",
            "--html",
            str(page),
        ]
    )
    assert code == 2
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["first_divergence"]["path"] == "head"
    html = page.read_text()
    assert "<svg" in html and "class=culprit" in html and "head" in html


def test_random_inputs_come_from_the_recorded_shapes(converted, capsys):
    _, _, package = converted
    code = cli.main(["verify", str(package), "--against", "tests.test_verify:net", "--random", "2"])
    assert code == 0
    assert capsys.readouterr().out.count("matches torch") == 2


def test_verify_reports_the_mlx_environment(converted):
    model, inputs, package = converted
    environment = torch2mlx.verify(model, package, inputs, layers=False).environment
    assert set(environment) == {"mlx", "device", "MLX_ENABLE_TF32"}


def test_not_a_package_is_a_clear_error(tmp_path):
    model, inputs = net()
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"\[verify\] .*no config.json"):
        torch2mlx.verify(model, tmp_path, inputs)


def test_in_place_ops_after_a_module_do_not_change_what_was_recorded(tmp_path):
    # ReLU(inplace=True) overwrites the conv's output after its hook ran: the record must
    # hold the conv's own output, or a correct conversion would look wrong.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1)).eval()
    inputs = (torch.randn(1, 3, 6, 6),)
    torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    report = torch2mlx.verify(model, tmp_path / "pkg", inputs)
    assert report.passed and all(layer.passed for layer in report.layers), report.text()
    assert [layer.path for layer in report.layers] == ["0", "2"]
