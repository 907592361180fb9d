"""scripts/zoo.py's own logic: how a result is classified, and docs/models.md read back so
that a run of a few models (--only ... --merge) keeps the rows of the others."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import torch2mlx

# A script, not a package: loaded from its file, as tests/test_ops_doc.py loads its own.
_spec = importlib.util.spec_from_file_location(
    "zoo", Path(__file__).resolve().parent.parent / "scripts/zoo.py"
)
zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo)


@pytest.mark.parametrize(
    ("passed", "relative", "float64", "status"),
    [
        (True, 0.0, None, "pass"),
        (False, 8e-6, None, "scaled"),
        # inception_v4 as measured: torch float32 is 3.8e-4 from float64, MLX 5.1e-4.
        (False, 6.6e-4, {"torch_float32": 3.8e-4, "mlx": 5.1e-4}, "rounding"),
        # A wrong translation: far further from float64 than torch float32 is.
        (False, 6.6e-4, {"torch_float32": 3.8e-6, "mlx": 5.1e-4}, "fail"),
        (False, 6.6e-4, None, "fail"),  # the model does not run in float64
    ],
)
def test_status(passed, relative, float64, status):
    assert zoo._status(passed, relative, float64) == status


def test_the_table_reads_back_as_written():
    rows = [
        {
            "name": "timm.a",
            "status": "pass",
            "max_abs_error": 1.2e-06,
            "max_rel_error": 3.4e-07,
            "seconds": 5.5,
            "decomposed": ["aten.outer.default", "aten.meshgrid.indexing"],
        },
        {
            "name": "timm.b",
            "status": "rounding",
            "max_abs_error": 5.7e-04,
            "max_rel_error": 6.6e-04,
            "seconds": 70.3,
            "decomposed": [],
            "float64": {"torch_float32": 3.8e-04, "mlx": 5.1e-04},
        },
        {
            "name": "hf.c",
            "status": "error",
            "max_abs_error": None,
            "max_rel_error": None,
            "seconds": 1.0,
            "decomposed": [],
            "error": "Torch2MLXError: [codegen] a | b",
        },
    ]
    page = zoo.markdown(rows)
    assert "**2 of 3 convert and match torch** (1 pass, 0 scaled, 1 within" in page
    assert "| timm.b | 5.7e-04 | 3.8e-04 | 5.1e-04 |" in page
    assert zoo.read_markdown(page) == rows
    assert zoo.markdown(zoo.read_markdown(page)) == page


class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 8))

    def forward(self, x):
        return {"logits": self.layers(x), "ids": x.argmax(-1)}


def test_float64_errors_of_an_exact_translation_are_rounding_sized(tmp_path):
    torch.manual_seed(0)
    model = Wide().eval()
    inputs = (torch.randn(4, 64),)
    torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    errors = zoo.float64_errors(model, inputs, tmp_path / "pkg")
    # Both float32 results are within float32 rounding of the exact one; the integer output
    # (argmax) is not compared.
    assert 0 < errors["torch_float32"] < 1e-5 and 0 < errors["mlx"] < 1e-5, errors
