"""The package that `convert` writes, the Python API and the `torch2mlx convert` command."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import torch2mlx
from torch2mlx.cli import main

ROOT = Path(__file__).resolve().parent.parent


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def make_convnet():
    torch.manual_seed(0)
    return ConvNet().eval()


def make_convnet_with_inputs():
    return make_convnet(), (torch.randn(2, 3, 8, 8),)


class _Decoder(nn.Module):
    """Transposed convolutions whose padding is past dilation * (kernel - 1), where MLX's
    own padding gives too short an output (mlx 0.32.4)."""

    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(3, 8, 3, stride=2, padding=3)
        self.up2 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=(4, 1), dilation=(2, 1))
        self.up3 = nn.ConvTranspose1d(4, 2, 3, stride=2, padding=3, output_padding=1)

    def forward(self, x):
        y = self.up2(torch.relu(self.up1(x)))
        return self.up3(y.flatten(2))


class NonZero(nn.Module):
    def forward(self, x):
        return torch.nonzero(x > 0)


def test_package_layout(tmp_path):
    result = torch2mlx.convert(make_convnet(), (torch.randn(2, 3, 8, 8),), tmp_path / "pkg")
    names = sorted(p.name for p in (tmp_path / "pkg").iterdir())
    assert names == ["config.json", "model.py", "model.safetensors", "modules.json", "report.json"]
    report = json.loads((tmp_path / "pkg/report.json").read_text())
    assert report["passed"] is True and result.passed is True
    (output,) = report["outputs"]
    assert output["max_abs_error"] < 1e-5 and output["cosine_similarity"] > 0.999999
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    assert config["versions"]["mlx"] and config["versions"]["torch2mlx"]
    # The weights are named as they are in the package, not where they were staged.
    assert config["weights"] == ["model.safetensors"]
    # No sibling staging directories are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_the_reported_transposes_are_those_model_py_performs(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    torch2mlx.convert(model.eval(), (torch.randn(2, 3, 8, 8),), tmp_path / "pkg")
    tree = ast.parse((tmp_path / "pkg/model.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "transpose"
    ]
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    # One into channels-last after the input, one back before the flatten.
    assert config["layout_transposes"] == len(calls) == 2


def test_transposed_convolutions_with_padding_past_the_kernel(tmp_path):
    torch.manual_seed(0)
    model = _Decoder().eval()
    x = torch.randn(2, 3, 6, 7)
    result = torch2mlx.convert(model, (x,), tmp_path / "pkg", quiet=True)
    report = json.loads((tmp_path / "pkg/report.json").read_text())
    (output,) = report["outputs"]
    assert output["max_abs_error"] < 1e-5, output
    assert result.passed


def test_model_py_runs_with_mlx_alone(tmp_path):
    torch2mlx.convert(make_convnet(), (torch.randn(1, 3, 8, 8),), tmp_path / "pkg", quiet=True)
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['torch2mlx'] = None\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import mlx.core as mx, model\n"
        "m = model.Model(); m.load_weights(sys.argv[1] + '/model.safetensors', strict=True)\n"
        "print(m(mx.zeros((1, 3, 8, 8))).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "(1, 4)"


def test_failed_verification_still_writes_the_package(tmp_path, monkeypatch):
    # No float64 reference and atol 0: only a bit-exact MLX result would pass.
    monkeypatch.setattr("torch2mlx.verification.REFERENCE_BUDGET", 0)
    with pytest.warns(torch2mlx.VerificationWarning):
        result = torch2mlx.convert(
            make_convnet(),
            (torch.randn(2, 3, 8, 8),),
            tmp_path / "pkg",
            tolerance=0.0,
            quiet=True,
        )
    assert result.passed is False
    assert json.loads((tmp_path / "pkg/report.json").read_text())["passed"] is False
    assert (tmp_path / "pkg/model.py").exists()


def test_unsupported_op_names_node_module_and_line_and_keeps_destination(tmp_path):
    torch2mlx.convert(make_convnet(), (torch.randn(1, 3, 8, 8),), tmp_path / "pkg", quiet=True)
    before = (tmp_path / "pkg/model.py").read_bytes()
    with pytest.raises(torch2mlx.Torch2MLXError) as error:
        torch2mlx.convert(NonZero(), (torch.randn(4),), tmp_path / "pkg", quiet=True)
    message = str(error.value)
    assert message.startswith("[codegen]")
    assert "aten.nonzero.default" in message and "test_convert.py:" in message
    assert "output shape depends on the data" in message
    assert (tmp_path / "pkg/model.py").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_replaces_a_previous_package_but_not_other_folders(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/model.py").write_text("old")
    (tmp_path / "pkg/stale.txt").write_text("old")
    torch2mlx.convert(make_convnet(), (torch.randn(1, 3, 8, 8),), tmp_path / "pkg", quiet=True)
    assert not (tmp_path / "pkg/stale.txt").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep")
    with pytest.raises(torch2mlx.Torch2MLXError, match="not a torch2mlx package"):
        torch2mlx.convert(make_convnet(), (torch.randn(1, 3, 8, 8),), tmp_path / "mine")
    assert (tmp_path / "mine/notes.txt").read_text() == "keep"


def test_cli_factory_with_input_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    code = main(
        [
            "convert",
            "test_convert:make_convnet",
            "-o",
            str(tmp_path / "pkg"),
            "--input-shape",
            "2x3x8x8",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "matches torch" in out and "model.py" in out


def test_cli_exits_non_zero_when_verification_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    # No float64 reference and atol 0: only a bit-exact MLX result would pass.
    monkeypatch.setattr("torch2mlx.verification.REFERENCE_BUDGET", 0)
    code = main(
        [
            "convert",
            "test_convert:make_convnet_with_inputs",
            "-o",
            str(tmp_path / "pkg"),
            "--atol",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "does not match torch" in captured.err and "report.json" in captured.err
    assert (tmp_path / "pkg/model.py").exists()


def test_cli_pt2_without_torch(tmp_path):
    model = make_convnet()
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),))
    torch.export.save(program, tmp_path / "net.pt2")
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from torch2mlx.cli import main\n"
        "sys.exit(main(['convert', sys.argv[1], '-o', sys.argv[2], '--no-verify']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "net.pt2"), str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    mlx_model = torch2mlx.load(tmp_path / "pkg")
    import mlx.core as mx
    import numpy as np

    x = torch.randn(2, 3, 8, 8)
    np.testing.assert_allclose(
        np.array(mlx_model(mx.array(x.numpy()))), model(x).detach().numpy(), atol=1e-5
    )


def test_cli_pt2_verifies_with_its_sample_inputs(tmp_path, capsys):
    program = torch.export.export(make_convnet(), (torch.randn(2, 3, 8, 8),))
    torch.export.save(program, tmp_path / "net.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["convert", str(tmp_path / "net.pt2"), "-o", str(tmp_path / "pkg")])
    assert code == 0
    assert "matches torch" in capsys.readouterr().out


KILL_SCRIPT = """
import sys, torch, torch2mlx
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(24)]).eval()
torch2mlx.convert(model, (torch.randn(1, 2048),), sys.argv[1], verify=False, quiet=True)
"""


def test_sigkill_midway_leaves_the_previous_package(tmp_path):
    # The previous package, which a killed conversion must leave exactly as it was.
    torch2mlx.convert(make_convnet(), (torch.randn(1, 3, 8, 8),), tmp_path / "pkg", quiet=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "pkg").iterdir()}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "pkg")], cwd=ROOT)
    deadline = time.monotonic() + 120
    # Kill once the new package is being written beside the old one (400 MB of weights).
    while time.monotonic() < deadline and process.poll() is None:
        staging = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        if staging and any(
            f.name.startswith(".model.safetensors") or f.name == "model.py"
            for f in staging[0].iterdir()
        ):
            break
        time.sleep(0.01)
    assert process.poll() is None, "the conversion finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    after = {p.name: p.read_bytes() for p in (tmp_path / "pkg").iterdir()}
    assert after == before


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda source: source + "\ndef broken(:\n", "does not compile"),
        (lambda source: "import torch\n" + source, "imports torch"),
        (lambda source: source.replace("self.", "self.renamed_", 1), "parameters without a weight"),
    ],
    ids=["syntax", "import", "parameters"],
)
def test_a_package_that_does_not_fit_is_refused(tmp_path, corrupt, expected):
    """check_package, which convert runs on the staging folder before moving it into place."""
    from torch2mlx.runtime import check_package

    torch2mlx.convert(make_convnet(), (torch.randn(2, 3, 8, 8),), tmp_path / "pkg", verify=False)
    check_package(tmp_path / "pkg")  # as written
    model_py = tmp_path / "pkg/model.py"
    model_py.write_text(corrupt(model_py.read_text()))
    with pytest.raises(torch2mlx.Torch2MLXError, match=expected) as caught:
        check_package(tmp_path / "pkg")
    assert str(caught.value).startswith("[codegen] model.py")


def test_cli_dumps_the_ir_after_a_pass(tmp_path, capfd):
    class WithNoops(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x.clone() + 0).view(x.shape)

    program = torch.export.export(WithNoops(), (torch.randn(2, 3),))
    torch.export.save(program, tmp_path / "noops.pt2")
    archive, out = str(tmp_path / "noops.pt2"), str(tmp_path / "pkg")
    assert main(["convert", archive, "-o", out, "--no-verify", "--dump-ir", "input"]) == 0
    before = capfd.readouterr().err
    assert "aten.clone.default" in before and "input  %x : float32[2, 3]  (user input)" in before
    assert main(["convert", archive, "-o", out, "--no-verify", "--dump-ir", "noops"]) == 0
    after = capfd.readouterr().err
    assert "aten.clone" not in after and "aten.add" not in after and "aten.view" not in after
    assert "= aten.relu.default(self=%x) : float32[2, 3]" in after, after
    assert main(["convert", archive, "-o", out, "--no-verify", "--dump-ir", "fusion"]) == 1
    assert "there is no pass 'fusion'" in capfd.readouterr().err


class _ConvNorm(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class _Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _ConvNorm(8, 8)
        self.widen = nn.Conv2d(8, 16, 1)
        self.b = _ConvNorm(16, 16)

    def forward(self, x):
        return self.b(self.widen(self.a(x)))


class _SquareThenWide(nn.Module):
    """Blocks with equal in and out widths, then one of the same type that widens (FastViT's
    final conv): one width parameter does not describe the last."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.stage = _Stage()
        self.final = _ConvNorm(16, 32)

    def forward(self, x):
        return self.final(self.stage(self.stem(x)))


def test_a_class_made_for_square_blocks_is_not_reused_for_a_widening_one(tmp_path):
    torch.manual_seed(0)
    model = _SquareThenWide().eval()
    result = torch2mlx.convert(model, (torch.randn(2, 3, 8, 8),), tmp_path / "pkg", quiet=True)
    assert result.passed


class _ConvAct(nn.Module):
    """timm's ConvNormAct, reduced: one type whose convolutions differ in structure."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


def test_classes_of_one_type_that_differ_in_structure_are_named_for_the_difference(tmp_path):
    # A 3x3 depthwise conv, a 1x1 depthwise one (no padding) and a 1x1 dense one (no
    # padding, no groups): three classes, named for their arguments, never numbered.
    torch.manual_seed(0)
    model = nn.Sequential(_ConvAct(8, 3, 8), _ConvAct(8, 1, 8), _ConvAct(8, 1, 1)).eval()
    result = torch2mlx.convert(model, (torch.randn(2, 8, 6, 6),), tmp_path / "pkg", quiet=True)
    assert result.passed
    source = result.model_py.read_text()
    classes = re.findall(r"^class (\w+)\(", source, re.MULTILINE)
    assert classes[:3] == ["_ConvAct", "_ConvAct1KernelSize", "_ConvAct1KernelSizeNoGroups"], source


class _Scale(nn.Module):
    """timm's LayerScale2d: a per-channel scale of channels-first values."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(channels, 1, 1))

    def forward(self, x):
        return x * self.gamma


class _TwoCallers(nn.Module):
    """FastViT's blocks, reduced: one module type scales a difference in one place and a
    convolution's output in another, so its input arrives under two different names."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.mixer_scale = _Scale(8)
        self.mlp_scale = _Scale(8)
        self.mlp = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = x + self.mixer_scale(self.a(x) - self.b(x))
        return x + self.mlp_scale(self.mlp(x))


def test_one_module_type_called_from_two_places_is_one_class(tmp_path):
    # The input moves from channels-last to torch's order inside the method: its local is
    # named after the parameter, not after the caller's value ("sub", "conv2d").
    torch.manual_seed(0)
    model = _TwoCallers().eval()
    result = torch2mlx.convert(model, (torch.randn(2, 8, 6, 6),), tmp_path / "pkg", quiet=True)
    assert result.passed
    source = result.model_py.read_text()
    classes = re.findall(r"^class (\w+)\(", source, re.MULTILINE)
    assert classes.count("_Scale") == 1, source
    assert not [name for name in classes if name[-1].isdigit()], source


class _WritesIntoATemporary(nn.Module):
    """ConViT's relative positions: a zeros table filled through slices of itself."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, x):
        table = torch.zeros(x.shape[0], 5, 3)
        table[:, :, 2] = x[:, :, 0] ** 2
        table[:, :, 0] = x[:, :, 1]
        return self.proj(table)


def test_writes_through_a_view_of_a_temporary_are_kept(tmp_path):
    torch.manual_seed(0)
    result = torch2mlx.convert(
        _WritesIntoATemporary().eval(), (torch.randn(2, 5, 3),), tmp_path / "pkg", quiet=True
    )
    assert result.passed
    assert "nn.Linear(3, 4)" in (tmp_path / "pkg" / "model.py").read_text()  # still a layer


class Structured(nn.Module):
    """Takes a list and a dict of tensors, as a model with a cache or named features does."""

    def forward(self, x, pair, extras=None):
        first, second = pair
        return x * first + second + extras["bias"], [first * 2, extras["scale"]]


def test_list_and_dict_inputs_stay_one_argument_each(tmp_path):
    """torch.export flattens them into one input per tensor; model.py takes them as torch
    does (model(x, [a, b], extras={...})) and unpacks them itself."""
    import mlx.core as mx

    from torch2mlx.runtime import load

    torch.manual_seed(0)
    x, a, b = (torch.randn(2, 3) for _ in range(3))
    extras = {"bias": torch.randn(3), "scale": torch.randn(1)}
    result = torch2mlx.convert(Structured(), (x, [a, b], extras), tmp_path / "pkg")
    assert result.passed is True
    source = (tmp_path / "pkg" / "model.py").read_text()
    assert "def __call__(self, x, pair, extras):" in source
    model = load(tmp_path / "pkg")
    out, listed = model(
        mx.array(x.numpy()),
        [mx.array(a.numpy()), mx.array(b.numpy())],
        {key: mx.array(value.numpy()) for key, value in extras.items()},
    )
    expected, expected_list = Structured()(x, [a, b], extras)
    assert abs(out - mx.array(expected.numpy())).max().item() < 1e-6
    assert isinstance(listed, list) and len(listed) == 2
    assert abs(listed[0] - mx.array(expected_list[0].numpy())).max().item() < 1e-6
    # The same arguments given by keyword.
    keywords = {"x": x, "pair": [a, b], "extras": extras}
    assert torch2mlx.convert(Structured(), keywords, tmp_path / "kw").passed is True
    assert "def __call__(self, x, pair, extras):" in (tmp_path / "kw" / "model.py").read_text()
