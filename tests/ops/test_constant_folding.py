"""Constant folding end to end: what a model computes from constants alone is evaluated when
model.py is generated, and the result still matches torch (cpp/tests/test_constant_folding.cpp
checks the folding rules themselves and what must stay)."""

from __future__ import annotations

import warnings

import pytest
import torch

from torch2mlx.conversion import convert

pytestmark = pytest.mark.usefixtures("global_rng_kept")


def _convert(model, inputs, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(model, inputs, path, quiet=True)
    errors = [output["max_abs_error"] for output in result.report["outputs"]]
    assert result.passed, f"max abs errors {errors}"
    return result.model_py.read_text()


class StaticTables(torch.nn.Module):
    """Tables a forward builds from constants: a range, a lifted tensor, a fill."""

    def __init__(self, table: str):
        super().__init__()
        self.table = table

    def forward(self, x):  # [batch, 4]
        if self.table == "range":
            return x + (torch.arange(4) * 2 + 1)[None].float()
        if self.table == "lifted":
            return x * -torch.tensor([0.5, 1.0, 2.0, 4.0])
        return x + torch.ones(4) * 0.1  # one value: a fill


# (op model.py writes the folded table with, table, what model.py reads, what it no longer computes)
CASES = [
    ("mlx.array", "range", "mx.array([[1.0, 3.0, 5.0, 7.0]], dtype=mx.float32)", "mx.arange"),
    ("mlx.array", "lifted", "mx.array([-0.5, -1.0, -2.0, -4.0], dtype=mx.float32)", "-self."),
    (
        "aten.full.default",
        "fill",
        "mx.full((4,), 0.10000000149011612, dtype=mx.float32)",
        "mx.ones",
    ),
]


@pytest.mark.parametrize("op, table, written, computed", CASES)
def test_tables_from_constants_are_computed_before_run_time(op, table, written, computed, tmp_path):
    x = torch.randn(3, 4)
    source = _convert(StaticTables(table).eval(), (x,), tmp_path / "pkg")
    assert written in source, source
    assert computed not in source, source


def test_a_causal_mask_anded_with_true_reads_the_mask_alone(tmp_path):
    class Masked(torch.nn.Module):
        def forward(self, scores, mask):
            keep = scores.new_ones((), dtype=torch.bool) & mask
            return scores.masked_fill(~keep, -1e9)

    scores, mask = torch.randn(2, 5, 5), torch.rand(2, 5, 5) > 0.5
    source = _convert(Masked().eval(), (scores, mask), tmp_path / "pkg")
    assert "mx.ones" not in source and "bitwise_and" not in source, source
