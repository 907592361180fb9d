"""`--format mlx-lm`: folders that mlx_lm.load reads as they are, with logits compared
against torch (float) and against mlx-lm's own quantization of the float folder."""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
import torch
from tests.test_hf_folder import save_tokenizer

from torch2mlx import cli

mlx_lm = pytest.importorskip("mlx_lm")


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def convert(capsys, folder, out_dir, *flags: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["convert", str(folder), "-o", str(out_dir), "--format", "mlx-lm", *flags])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return out


def torch_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()


@pytest.fixture
def llama_folder(tmp_path, capsys):
    model = tiny_llama()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    save_tokenizer(folder)
    capsys.readouterr()
    return model, folder


IDS = np.random.default_rng(0).integers(0, 128, (2, 10))


def test_llama_loads_with_mlx_lm_and_matches_torch(llama_folder, tmp_path, capsys):
    model, folder = llama_folder
    out = convert(capsys, folder, tmp_path / "lm")
    assert "mlx_lm.load and logits against torch" in out
    loaded, tokenizer = mlx_lm.load(str(tmp_path / "lm"))
    assert tokenizer.encode("w5 w9", add_special_tokens=False) == [5, 9]
    logits = np.array(loaded(mx.array(IDS)))
    np.testing.assert_allclose(logits, torch_logits(model, IDS), atol=1e-4, rtol=0)
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization" not in config


@pytest.mark.parametrize(
    ("flags", "block"),
    [
        (
            ("--quantize", "4", "--group-size", "32"),
            {"group_size": 32, "bits": 4, "mode": "affine"},
        ),
        (("--q-mode", "mxfp4"), {"group_size": 32, "bits": 4, "mode": "mxfp4"}),
        (("--q-mode", "nvfp4"), {"group_size": 16, "bits": 4, "mode": "nvfp4"}),
    ],
)
def test_quantized_llama_equals_mlx_lm_quantizing_the_float_folder(
    llama_folder, tmp_path, capsys, flags, block
):
    _, folder = llama_folder
    convert(capsys, folder, tmp_path / "float")
    convert(capsys, folder, tmp_path / "q", *flags)
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization"] == block and config["quantization_config"] == block
    ours, _ = mlx_lm.load(str(tmp_path / "q"))
    reference, _ = mlx_lm.load(str(tmp_path / "float"))
    mnn.quantize(reference, block["group_size"], block["bits"], mode=block["mode"])
    assert np.array_equal(np.array(ours(mx.array(IDS))), np.array(reference(mx.array(IDS))))


def test_mixed_recipe_and_shards_load_with_mlx_lm(llama_folder, tmp_path, capsys):
    model, folder = llama_folder
    convert(capsys, folder, tmp_path / "q", "--q-recipe", "mixed_4_6", "--shard-size", "40KB")
    files = sorted(path.name for path in (tmp_path / "q").iterdir())
    assert "model.safetensors.index.json" in files
    assert sum(name.startswith("model-") for name in files) > 1
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization"]["lm_head"]["bits"] == 6
    loaded, _ = mlx_lm.load(str(tmp_path / "q"))
    assert loaded.lm_head.bits == 6 and loaded.model.layers[0].mlp.up_proj.bits == 4
    logits = np.array(loaded(mx.array(IDS)))
    expected = torch_logits(model, IDS)
    cosine = (logits * expected).sum() / (np.linalg.norm(logits) * np.linalg.norm(expected))
    assert cosine > 0.98


def test_gpt2_gets_mlx_lm_names_and_layouts(tmp_path, capsys):
    from tests.zoo.hf_models import gpt2

    model, _, _ = gpt2()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    capsys.readouterr()
    convert(capsys, folder, tmp_path / "lm")
    names = set(mx.load(str(tmp_path / "lm" / "model.safetensors")))
    assert "model.h.0.attn.c_attn.weight" in names and "lm_head.weight" not in names
    loaded, _ = mlx_lm.utils.load_model(tmp_path / "lm")
    np.testing.assert_allclose(
        np.array(loaded(mx.array(IDS))), torch_logits(model, IDS), atol=1e-4, rtol=0
    )


def test_an_architecture_mlx_lm_lacks_is_refused(tmp_path, capsys):
    from tests.zoo.hf_models import bert

    bert()[0].save_pretrained(tmp_path / "hf")
    capsys.readouterr()
    code = cli.main(
        ["convert", str(tmp_path / "hf"), "-o", str(tmp_path / "o"), "--format", "mlx-lm"]
    )
    _, err = capsys.readouterr()
    assert code == 1 and "[mlx-lm] model_type 'bert'" in err and "leave out --format" in err
    assert not (tmp_path / "o").exists()
