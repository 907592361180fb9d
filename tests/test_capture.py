"""Capture works around torch.export's own blockers in torch.nn."""

from __future__ import annotations

import pytest
import torch
from tests.zoo.hf_models import llama
from torch import nn

import torch2mlx


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer = nn.Transformer(
            d_model=16,
            nhead=2,
            num_encoder_layers=1,
            num_decoder_layers=1,
            dim_feedforward=32,
            dropout=0.0,
            batch_first=True,
        )

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.transformer(src, tgt, tgt_mask=mask)


def test_transformer_with_a_causal_tgt_mask_converts(tmp_path) -> None:
    """torch.export alone fails on _detect_is_causal_mask's data-dependent guard."""
    from torch.nn.modules import transformer

    original = transformer._detect_is_causal_mask
    torch.manual_seed(0)
    inputs = (torch.randn(2, 5, 16), torch.randn(2, 4, 16))
    result = torch2mlx.convert(Seq2Seq().eval(), inputs, tmp_path / "pkg", quiet=True)
    assert result.passed is True, result.summary
    assert transformer._detect_is_causal_mask is original  # restored after capture


def test_llama_for_causal_lm_as_it_comes_converts(tmp_path) -> None:
    """Its DynamicCache output stops torch.export; convert captures it with the cache off."""
    model, inputs, _ = llama()  # the zoo's tiny Llama, here without its use_cache=False
    del inputs["use_cache"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)  # no untouched init values
    result = torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True)
    assert result.passed is True, result.summary
    assert [output["path"] for output in result.report["outputs"]] == ["out['logits']"]
    assert model.config.use_cache is True  # the caller's model is left as it was


def test_a_model_torch_cannot_capture_dynamically_converts_at_its_example_sizes(
    tmp_path, monkeypatch
) -> None:
    """Dynamic batch and sequence axes are the default, not a requirement: when torch.export
    refuses them, capture falls back to the example sizes."""
    real_export = torch.export.export
    calls = []

    def export(model, args, kwargs=None, *, dynamic_shapes=None, **options):
        calls.append(dynamic_shapes)
        if dynamic_shapes is not None:
            raise RuntimeError("Constraints violated (stands in for a guard torch cannot prove)")
        return real_export(model, args, kwargs, dynamic_shapes=None, **options)

    monkeypatch.setattr(torch.export, "export", export)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    result = torch2mlx.convert(model, (torch.randn(4, 6),), tmp_path / "pkg", quiet=True)
    assert result.passed is True, result.summary
    assert calls[0] == ({0: torch.export.Dim.AUTO},) and calls[-1] is None


def test_preferred_dynamic_shapes_fall_back_to_auto_then_fixed_sizes_with_a_note(
    tmp_path, monkeypatch
) -> None:
    """The dynamic axes torch2mlx chooses for a Hugging Face folder are a preference: when
    torch refuses them, then Dim.AUTO on the same axes (a data-dependent guard stops both),
    the package is captured at the example sizes and its notes say why."""
    from torch2mlx.capture import Preferred

    real_export = torch.export.export
    calls = []

    def export(model, args, kwargs=None, *, dynamic_shapes=None, **options):
        calls.append(dynamic_shapes)
        if dynamic_shapes is not None:
            failure = "Constraints violated (sequence)" if len(calls) == 1 else "4*u1 < 16"
            raise RuntimeError(f"GuardOnDataDependentSymNode: {failure}")
        return real_export(model, args, kwargs, dynamic_shapes=None, **options)

    monkeypatch.setattr(torch.export, "export", export)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    batch = torch.export.Dim("batch")
    result = torch2mlx.convert(
        model, (torch.randn(4, 6),), tmp_path / "pkg", Preferred(({0: batch},)), quiet=True
    )
    assert result.passed is True, result.summary
    assert calls == [({0: batch},), ({0: torch.export.Dim.AUTO},), None]
    assert result.config["notes"] == [
        "torch.export could not capture it with dynamic sizes (RuntimeError: "
        "GuardOnDataDependentSymNode: 4*u1 < 16): every size is fixed to the example inputs'; "
        "pass dynamic_shapes to choose other axes"
    ]
    assert result.config["specialized"] is True
    # The caller's own dynamic shapes are kept to: the capture fails, naming the refusal.
    calls.clear()
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"Constraints violated \(sequence\)"):
        torch2mlx.convert(model, (torch.randn(4, 6),), tmp_path / "b", ({0: batch},), quiet=True)
    assert len(calls) == 1


def test_capture_reports_the_last_failure_when_no_attempt_works(monkeypatch) -> None:
    def export(*args, **kwargs):
        raise RuntimeError("untraceable Python")

    monkeypatch.setattr(torch.export, "export", export)
    with pytest.raises(torch2mlx.Torch2MLXError, match="untraceable Python") as error:
        torch2mlx.convert(nn.Linear(2, 2), (torch.randn(1, 2),), "/nonexistent/never", quiet=True)
    assert "[capture] torch.export could not capture Linear" in str(error.value)
