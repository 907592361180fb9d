"""Quantized conversions in every MLX mode: the weights bit for bit as mx.quantize, the
packages loading through nn.quantize with the per-layer settings config.json records (as
mlx-lm's load does), and the settings each mode allows."""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten
from tests.zoo.hf_models import llama

import torch2mlx
from torch2mlx import Torch2MLXError, cli
from torch2mlx.conversion import convert
from torch2mlx.quantization import plan_from

MODES = {"affine": (4, 64), "mxfp4": (4, 32), "mxfp8": (8, 32), "nvfp4": (4, 16)}


def quiet_convert(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert(*args, quiet=True, **kwargs)


@pytest.mark.parametrize("mode", list(MODES))
def test_convert_weights_in_each_mode_matches_mx_quantize(mode, tmp_path):
    bits, group_size = MODES[mode]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32))
    torch.save(model.state_dict(), tmp_path / "m.pth")
    out = tmp_path / "q.safetensors"
    torch2mlx.convert_weights(tmp_path / "m.pth", out, model=model, quantize={"mode": mode})
    got = mx.load(str(out))
    for index in (0, 2):
        weight = mx.array(model[index].weight.detach().numpy())
        expected = mx.quantize(weight, group_size=group_size, bits=bits, mode=mode)
        prefix = f"layers.{index}"
        assert np.array_equal(np.array(got[f"{prefix}.weight"]), np.array(expected[0]))
        assert np.array_equal(np.array(got[f"{prefix}.scales"]), np.array(expected[1]))
        assert (f"{prefix}.biases" in got) == (mode == "affine")
    mlx_model = torch2mlx.to_mlx_module(model)
    mnn.quantize(mlx_model, group_size=group_size, bits=bits, mode=mode)
    mlx_model.load_weights(str(out), strict=True)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_quantized_package_equals_nn_quantize_of_the_float_package(mode, tmp_path):
    model, inputs, _ = llama()
    plain = quiet_convert(model, inputs, tmp_path / "float", verify=False)
    assert plain.config.get("quantization") is None
    result = quiet_convert(model, inputs, tmp_path / "q", quantize={"mode": mode})
    bits, group_size = MODES[mode]
    assert result.config["quantization"] == {"group_size": group_size, "bits": bits, "mode": mode}
    # Verification reports the error against torch's float model without judging it.
    assert result.passed is None and result.report["quantized"] is True
    assert 0.95 < result.report["outputs"][0]["cosine_similarity"] < 1.0

    reference = torch2mlx.load(tmp_path / "float")
    mnn.quantize(reference, group_size=group_size, bits=bits, mode=mode)
    quantized = torch2mlx.load(tmp_path / "q")
    ours = dict(tree_flatten(quantized.parameters()))
    theirs = dict(tree_flatten(reference.parameters()))
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert np.array_equal(np.array(value), np.array(theirs[name])), name
    ids = mx.array(inputs["input_ids"].numpy())
    mask = mx.array(inputs["attention_mask"].numpy())
    assert np.array_equal(
        np.array(quantized(ids, mask)["logits"]), np.array(reference(ids, mask)["logits"])
    )


def test_mixed_recipes_record_each_layer_in_config_json(tmp_path):
    model, inputs, _ = llama()
    result = quiet_convert(model, inputs, tmp_path / "q", quantize={"recipe": "mixed_3_6"})
    block = result.config["quantization"]
    six = {"group_size": 64, "bits": 6, "mode": "affine"}
    assert block["bits"] == 3 and block["group_size"] == 64
    # Two layers: the last (the top eighth) gets the high bits in v_proj and down_proj.
    assert block["lm_head"] == six
    assert block["model.layers.1.self_attn.v_proj"] == six
    assert block["model.layers.1.mlp.down_proj"] == six
    assert "model.layers.0.self_attn.v_proj" not in block
    loaded = torch2mlx.load(tmp_path / "q")
    assert loaded.lm_head.bits == 6 and loaded.model.layers[0].self_attn.v_proj.bits == 3

    edges = quiet_convert(
        model, inputs, tmp_path / "e", quantize={"recipe": "edges_8", "mode": "nvfp4"}
    )
    block = edges.config["quantization"]
    assert block["mode"] == "nvfp4"
    eight = {"group_size": 64, "bits": 8, "mode": "affine"}
    assert block["lm_head"] == eight and block["model.embed_tokens"] == eight
    loaded = torch2mlx.load(tmp_path / "e")
    assert loaded.model.layers[0].mlp.up_proj.mode == "nvfp4"


def test_a_predicate_chooses_per_layer(tmp_path):
    model, inputs, _ = llama()

    def predicate(path: str, module_type: str):
        if "embed" in path:
            return False  # kept in float
        if path.endswith("o_proj"):
            return {"bits": 8, "group_size": 32, "mode": "mxfp8"}
        return True

    result = quiet_convert(
        model,
        inputs,
        tmp_path / "p",
        quantize={"bits": 4, "group_size": 32, "predicate": predicate},
    )
    block = result.config["quantization"]
    assert block["model.embed_tokens"] is False
    assert block["model.layers.0.self_attn.o_proj"]["mode"] == "mxfp8"
    loaded = torch2mlx.load(tmp_path / "p")
    assert isinstance(loaded.model.embed_tokens, mnn.Embedding)
    assert loaded.model.layers[1].self_attn.o_proj.mode == "mxfp8"


def test_a_tied_weight_read_directly_stays_in_float(tmp_path):
    from tests.zoo.hf_models import gpt2

    model, inputs, _ = gpt2()
    result = quiet_convert(model, inputs, tmp_path / "g", quantize={"bits": 8})
    assert any("lm_head" in note and "directly" in note for note in result.config["notes"])
    loaded = torch2mlx.load(tmp_path / "g")
    assert isinstance(loaded.lm_head, mnn.Linear)  # its weight feeds the embedding lookup
    assert result.report["outputs"][0]["cosine_similarity"] > 0.999


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "mxfp4", "bits": 8}, "mode mxfp4 takes bits 4 and group sizes 32"),
        ({"mode": "nvfp4", "group_size": 32}, "mode nvfp4 takes bits 4 and group sizes 16"),
        ({"bits": 7}, "mode affine takes bits 2, 3, 4, 5, 6, 8"),
        ({"mode": "fp4"}, "unknown mode 'fp4'"),
        ({"recipe": "mixed_9_9"}, "unknown recipe 'mixed_9_9'"),
        ({"recipe": "mixed_4_6", "mode": "mxfp4"}, "takes no mode mxfp4"),
        ({"bits": 4, "scheme": "x"}, "not scheme"),
    ],
)
def test_settings_a_mode_does_not_take_are_refused(options, message):
    with pytest.raises(Torch2MLXError, match=r"^\[quantize\] .*" + message):
        plan_from(options)


def test_the_cli_quantizes_and_refuses_with_clear_errors(tmp_path, capsys):
    folder = tmp_path / "hf"
    llama()[0].save_pretrained(folder)
    capsys.readouterr()
    out_dir = tmp_path / "pkg"
    code = cli.main(
        ["convert", str(folder), "-o", str(out_dir), "--q-mode", "nvfp4", "--group-size", "32"]
    )
    _, err = capsys.readouterr()
    assert code == 1 and "[quantize] mode nvfp4 takes bits 4 and group sizes 16" in err
    assert not out_dir.exists()
    code = cli.main(["convert", str(folder), "-o", str(out_dir), "--q-mode", "mxfp8"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "quantized (mxfp8)" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": 8, "mode": "mxfp8"}
