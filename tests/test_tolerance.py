"""The one tolerance rule (torch2mlx.comparison, docs/verify.md): what it passes and what it
must still catch.

A correct conversion passes on any CPU because MLX is judged against torch in float64 the
way torch itself is; a wrong weight layout or a wrong rope theta fails by far, in float32
and in bfloat16 compute alike.
"""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import numpy as np
import pytest
import torch
from tests.zoo.hf_models import sharp_attention

import torch2mlx
from torch2mlx.comparison import ATOL, TORCH_ERROR_MULTIPLE, judge, rule_for


def test_defaults_come_from_the_compute_dtype():
    assert rule_for("float32").atol == 1e-5
    assert rule_for("bfloat16").atol == rule_for("float16").atol == 1e-2
    assert rule_for(None) == rule_for("float32")
    assert rule_for("bfloat16", atol=0.5).atol == 0.5
    assert ATOL["float32"] == 1e-5


def test_atol_scales_with_the_outputs_magnitude():
    rule = rule_for("float32")
    reference = np.array([30.0, -2.0, 0.5])
    within = reference + np.array([2.9e-4, 0, 0])  # 30 * 1e-5 = 3e-4
    beyond = reference + np.array([3.1e-4, 0, 0])
    assert judge(reference, within, rule).passed
    assert not judge(reference, beyond, rule).passed
    # Below magnitude 1 the bound stays atol itself.
    assert judge(np.array([1e-3]), np.array([1e-3 + 9e-6]), rule).passed
    assert not judge(np.array([1e-3]), np.array([1e-3 + 2e-5]), rule).passed


def test_torch_own_error_against_float64_widens_the_bound():
    rule = rule_for("float32")
    exact = np.array([1.0, 2.0, 3.0])
    torch_value = exact + np.array([1e-4, 0, 0])  # torch itself is 1e-4 from float64
    limit = TORCH_ERROR_MULTIPLE * 1e-4
    close = exact + np.array([0, 0.98 * limit, 0])
    far = exact + np.array([0, 1.02 * limit, 0])
    verdict = judge(torch_value, close, rule, exact)
    assert verdict.passed and verdict.reference == "float64"
    assert verdict.torch_error == pytest.approx(1e-4)
    assert verdict.bound == pytest.approx(TORCH_ERROR_MULTIPLE * 1e-4)
    assert not judge(torch_value, far, rule, exact).passed


def test_integers_must_be_equal_and_nan_where_torch_has_nan():
    rule = rule_for("float32")
    assert judge(np.array([1, 2]), np.array([1, 2]), rule).passed
    assert not judge(np.array([1, 2]), np.array([1, 3]), rule).passed
    assert judge(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), rule).passed
    assert not judge(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), rule).passed
    assert not judge(np.array([1.0, 1.0]), np.array([np.nan, 1.0]), rule).passed
    assert judge(np.array([np.inf]), np.array([np.inf]), rule).passed
    assert not judge(np.array([np.inf]), np.array([1e30]), rule).passed
    assert not judge(np.zeros((2, 3)), np.zeros((3, 2)), rule).passed


def _llama(dtype: torch.dtype, theta: float):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
    )
    model = sharp_attention(LlamaForCausalLM(config))
    for parameter in model.parameters():
        parameter.data = parameter.data.to(dtype)  # as from_pretrained: inv_freq float32
    ids = torch.randint(0, 128, (1, 64), generator=torch.Generator().manual_seed(1))
    return model, {"input_ids": ids, "use_cache": False}


@pytest.mark.model_args
def test_a_wrong_rope_theta_fails_in_bfloat16(tmp_path):
    model, inputs = _llama(torch.bfloat16, 500000.0)
    package = tmp_path / "pkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = torch2mlx.convert(model, inputs, package, quiet=True)
    assert result.passed, result.summary
    assert result.report["tolerance"]["compute_dtype"] == "bfloat16"
    assert result.report["tolerance"]["reference"] == "float64"
    config = json.loads((package / "config.json").read_text())
    assert config["model_args"]["rope_theta"] == 500000.0
    # mlx-lm's silent failure: the theta falls back to 10000.
    config["model_args"]["rope_theta"] = 10000.0
    (package / "config.json").write_text(json.dumps(config))
    report = torch2mlx.verify(model, package, inputs, layers=False)
    assert not report.passed, report.text()


def test_a_transposed_weight_fails_in_float32(tmp_path):
    model, inputs = _llama(torch.float32, 10000.0)
    package = tmp_path / "pkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = torch2mlx.convert(model, inputs, package, quiet=True, model_args=False)
    assert result.passed, result.summary
    weights = mx.load(str(package / "model.safetensors"))
    key = next(name for name in weights if name.endswith("layers.1.self_attn.q_proj.weight"))
    weights[key] = weights[key].T  # square: loads, and is wrong
    mx.save_safetensors(str(package / "model.safetensors"), weights)
    report = torch2mlx.verify(model, package, inputs, layers=False)
    assert not report.passed, report.text()
