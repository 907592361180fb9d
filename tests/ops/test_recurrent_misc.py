"""Ops no family test covers: recurrent layers (aten.lstm/gru/rnn_*), rounding-mode
division, scalar-base pow, and the tracer's asserts and device moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ops import harness
from tests.ops.harness import check_op
from torch import nn

aten = torch.ops.aten


class Recurrent(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        out = self.layer(x)
        return out[0], out[1] if isinstance(out[1], torch.Tensor) else out[1][0]


RECURRENT = [
    ("aten.lstm.input", lambda: nn.LSTM(6, 8, batch_first=True), (3, 5, 6)),
    ("aten.lstm.input", lambda: nn.LSTM(6, 8, num_layers=2, bidirectional=True), (5, 3, 6)),
    ("aten.lstm.input", lambda: nn.LSTM(6, 8, proj_size=4, batch_first=True), (2, 4, 6)),
    ("aten.lstm.input", lambda: nn.LSTM(6, 8, bias=False), (4, 6)),
    ("aten.gru.input", lambda: nn.GRU(6, 8, batch_first=True), (3, 5, 6)),
    ("aten.gru.input", lambda: nn.GRU(6, 8, num_layers=3, bidirectional=True), (5, 2, 6)),
    ("aten.rnn_tanh.input", lambda: nn.RNN(6, 8, batch_first=True), (3, 5, 6)),
    ("aten.rnn_relu.input", lambda: nn.RNN(6, 8, nonlinearity="relu", num_layers=2), (5, 3, 6)),
]


@pytest.mark.parametrize("op, build, shape", RECURRENT)
def test_recurrent(op, build, shape, tmp_path):
    import mlx.core as mx

    import torch2mlx

    torch.manual_seed(0)
    model = Recurrent(build()).eval()
    x = torch.randn(*shape)
    result = torch2mlx.convert(model, (x,), tmp_path / "pkg", quiet=True)
    assert result.passed, result.report["outputs"]
    assert op.split(".")[1].split("_")[0] in result.model_py.read_text()
    # Another sequence length than the export's: the time loop is not unrolled.
    time_axis = 1 if getattr(model.layer, "batch_first", False) and len(shape) == 3 else 0
    longer_shape = list(shape)
    longer_shape[time_axis] += 3
    longer = torch.randn(*longer_shape)
    got = torch2mlx.load(tmp_path / "pkg")(mx.array(longer.numpy()))
    with torch.no_grad():
        expected = model(longer)
    np.testing.assert_allclose(np.array(got[0]), expected[0].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "op, mode", [("aten.div.Tensor_mode", "trunc"), ("aten.div.Tensor_mode", "floor")]
)
def test_div_tensor_mode(op, mode):
    a = torch.tensor([[-7.5, 7.5, -3.0, 2.0]])
    b = torch.tensor([[2.0, -2.0, 2.5, -0.75]])
    check_op(aten.div.Tensor_mode, a, b, rounding_mode=mode)
    check_op(
        aten.div.Tensor_mode, torch.tensor([-7, 7, 9]), torch.tensor([2, -2, 4]), rounding_mode=mode
    )


@pytest.mark.parametrize(
    "op, mode", [("aten.div.Scalar_mode", "trunc"), ("aten.div.Scalar_mode", "floor")]
)
def test_div_scalar_mode(op, mode):
    check_op(aten.div.Scalar_mode, torch.tensor([-7.5, 7.5, -3.0]), 2.0, rounding_mode=mode)


@pytest.mark.parametrize("op", ["aten.pow.Scalar"])
def test_pow_scalar_base(op):
    check_op(aten.pow.Scalar, 2.0, torch.randn(3, 4))


@pytest.mark.parametrize("op", ["aten.pow.Tensor"])
def test_pow_tensor_in_place_name(op):
    # aten.pow_.Tensor (in place) normalises to the name "aten.pow.Tensor".
    class Pow(nn.Module):
        def forward(self, x, y):
            return torch.pow(x, y)

    x, y = torch.rand(3, 4) + 0.5, torch.randn(3, 4)
    actual = harness.run_renamed(Pow(), (x, y), "aten.pow.Tensor_Tensor", "aten.pow_.Tensor")
    harness.assert_close(torch.pow(x, y), actual, 1e-5)


@pytest.mark.parametrize("op", ["aten.remainder.Scalar_Tensor"])
def test_remainder_scalar_tensor(op):
    check_op(aten.remainder.Scalar_Tensor, 5.5, torch.tensor([2.0, -3.0, 1.5]))


@pytest.mark.parametrize("op", ["aten.ldexp.Tensor"])
def test_ldexp(op):
    check_op(aten.ldexp.Tensor, torch.randn(3, 4), torch.randint(-3, 4, (3, 4)))


@pytest.mark.parametrize("op", ["aten.diff.default"])
def test_diff(op):
    check_op(aten.diff.default, torch.randn(3, 6))
    check_op(aten.diff.default, torch.randn(3, 6), 2, 0)
    check_op(aten.diff.default, torch.randn(3, 6), 1, -1, torch.randn(3, 1), torch.randn(3, 2))


@pytest.mark.parametrize("op", ["aten.to.device"])
def test_to_device(op):
    check_op(aten.to.device, torch.randn(3, 4), torch.device("cpu"), torch.float16)


@pytest.mark.parametrize("op", ["aten.native_batch_norm.default"])
def test_native_batch_norm_inference(op):
    c = 4
    mean, var = torch.randn(c), torch.rand(c) + 0.5
    check_op(
        aten.native_batch_norm.default,
        torch.randn(2, c, 3, 3),
        torch.randn(c),
        torch.randn(c),
        mean,
        var,
        False,
        0.1,
        1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "op",
    [
        "aten._assert_async.msg",
        "aten._assert_async.default",
        "aten._assert_tensor_metadata.default",
    ],
)
def test_tracer_checks_emit_nothing(op):
    from torch2mlx import _core

    assert op in _core.supported_ops()

    class Checked(nn.Module):
        def forward(self, x):
            torch._assert_async(x.sum() == x.sum(), "never")
            return x * 2

    source = harness.generate(Checked(), (torch.randn(3),))["source"]
    code = [line for line in source.splitlines() if not line.strip().startswith("#")]
    assert not any("assert" in line for line in code)


@pytest.mark.parametrize(
    "op",
    [
        "math.ceil",
        "math.floor",
        "math.sqrt",
        "_operator.getitem",
        "_operator.pos",
        "aten.sym_constrain_range.default",
        "aten.sym_constrain_range_for_size.default",
    ],
)
def test_symbolic_helpers_registered(op):
    from torch2mlx import _core

    # Export of torch 2.13 folds these on the sizes it traces; older programs record them.
    assert op in _core.supported_ops()
