"""Capture works around torch.export's own blockers in torch.nn."""

from __future__ import annotations

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
    result = torch2mlx.convert(
        Seq2Seq().eval(), inputs, tmp_path / "pkg", tolerance=(1e-5, 0.0), quiet=True
    )
    assert result.passed is True, result.summary
    assert transformer._detect_is_causal_mask is original  # restored after capture


def test_llama_for_causal_lm_as_it_comes_converts(tmp_path) -> None:
    """Its DynamicCache output stops torch.export; convert captures it with the cache off."""
    model, inputs, _ = llama()  # the zoo's tiny Llama, here without its use_cache=False
    del inputs["use_cache"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)  # no untouched init values
    result = torch2mlx.convert(model, inputs, tmp_path / "pkg", tolerance=(1e-5, 0.0), quiet=True)
    assert result.passed is True, result.summary
    assert [output["path"] for output in result.report["outputs"]] == ["out['logits']"]
    assert model.config.use_cache is True  # the caller's model is left as it was
