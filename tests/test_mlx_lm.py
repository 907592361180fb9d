"""`--format mlx-lm`: folders that mlx_lm.load reads as they are, with logits judged against
torch by the project's rule (torch2mlx.comparison) and compared with mlx-lm's own
quantization of the float folder.

Every architecture is tried with non-default config values (rope theta, rope scaling, eps,
head size, tied and untied heads) on 64 tokens, with sharp attention: tiny random models
attend almost uniformly, so a wrong rope theta would hardly move their logits otherwise.
"""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
import torch
from tests.test_hf_folder import save_tokenizer
from tests.zoo.hf_models import sharp_attention

from torch2mlx import cli, mlx_lm_format
from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.comparison import judge, rule_for
from torch2mlx.verification import in_float64

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


def judged(model, loaded, ids: np.ndarray):
    """mlx-lm's logits against torch's by the project's rule, torch in float64 the
    reference."""
    expected = torch_logits(model, ids)
    with in_float64(model) as cast:
        assert cast
        exact = torch_logits(model, ids)
    got = np.array(loaded(mx.array(ids)).astype(mx.float32))
    return judge(expected, got, rule_for("float32"), exact)


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
    verdict = judged(model, loaded, IDS)
    assert verdict.passed, verdict
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
    verdict = judged(model, loaded, IDS)
    assert verdict.passed, verdict


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


# --- Every architecture with non-default config values, on 64 tokens.

THETA = 500000.0
SIZES = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2)
HEADS = dict(num_attention_heads=4, num_key_value_heads=2)
LONG_IDS = np.random.default_rng(1).integers(0, 128, (1, 64))


def _llama_untied():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama3 = {"rope_type": "llama3", "rope_theta": THETA, "factor": 8.0, "low_freq_factor": 1.0}
    llama3 |= {"high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    config = LlamaConfig(
        **SIZES, **HEADS, head_dim=32, rms_norm_eps=1e-6, max_position_embeddings=256
    )
    config.rope_parameters = llama3
    config.tie_word_embeddings = False
    return LlamaForCausalLM(config)


def _llama_tied():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SIZES,
        **HEADS,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": THETA},
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def _mistral():
    from transformers import MistralConfig, MistralForCausalLM

    yarn = {"rope_type": "yarn", "rope_theta": THETA, "factor": 4.0}
    yarn |= {"original_max_position_embeddings": 64, "attention_factor": 1.2}
    config = MistralConfig(
        **SIZES,
        **HEADS,
        head_dim=32,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        sliding_window=4096,
        rope_parameters=yarn,
        tie_word_embeddings=False,
    )
    return MistralForCausalLM(config)


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        **SIZES,
        **HEADS,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "linear", "rope_theta": THETA, "factor": 2.0},
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def _qwen3():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    # 64 tokens past max_position_embeddings: dynamic NTK rescales the base.
    config = Qwen3Config(
        **SIZES,
        **HEADS,
        head_dim=32,
        rms_norm_eps=1e-6,
        max_position_embeddings=48,
        rope_parameters={"rope_type": "dynamic", "rope_theta": THETA, "factor": 2.0},
        tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(config)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=128, n_positions=128, n_embd=64, n_layer=2, n_head=4, layer_norm_epsilon=1e-6
    )
    return GPT2LMHeadModel(config)


ARCHITECTURES = {
    "llama-llama3-untied": _llama_untied,
    "llama-tied": _llama_tied,
    "mistral-yarn-head_dim": _mistral,
    "qwen2-linear-tied": _qwen2,
    "qwen3-dynamic-head_dim": _qwen3,
    "gpt2": _gpt2,
}


def saved(factory, tmp_path, capsys):
    torch.manual_seed(0)
    model = sharp_attention(factory())
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    save_tokenizer(folder)
    capsys.readouterr()
    return model, folder


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_matches_torch_with_its_config_values(name, tmp_path, capsys):
    model, folder = saved(ARCHITECTURES[name], tmp_path, capsys)
    out = convert(capsys, folder, tmp_path / "lm")
    assert "mlx_lm.load and logits against torch" in out
    loaded, _ = mlx_lm.load(str(tmp_path / "lm"))
    verdict = judged(model, loaded, LONG_IDS)
    assert verdict.passed and verdict.reference == "float64", verdict
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    written = mlx_lm_format.MLX_LM_FIELDS[model.config.model_type]
    assert set(written) <= set(config)
    assert hasattr(loaded, "lm_head") == (not model.config.tie_word_embeddings)
    if "rope_theta" in written:
        assert config["rope_theta"] == THETA
        assert loaded.model.layers[0].self_attn.rope is not None
    if "head_dim" in written:
        assert config["head_dim"] == model.config.head_dim


def test_a_wrong_rope_theta_fails_the_check(tmp_path, capsys, monkeypatch):
    """The folder mlx-lm got before its fields were written: transformers 5's nested
    rope_parameters only, so mlx-lm's llama ran with its default theta of 10000."""
    model, folder = saved(_llama_tied, tmp_path, capsys)
    fields = mlx_lm_format.mlx_lm_config

    def without_theta(config):
        written = fields(config)
        del written["rope_theta"]
        return written

    monkeypatch.setattr(mlx_lm_format, "mlx_lm_config", without_theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["convert", str(folder), "-o", str(tmp_path / "lm"), "--format", "mlx-lm"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "do not match torch within tolerance" in err
    loaded, _ = mlx_lm.load(str(tmp_path / "lm"))
    assert loaded.model.layers[0].self_attn.rope.base == 10000
    verdict = judged(model, loaded, LONG_IDS)
    assert not verdict.passed and verdict.error > 10 * verdict.bound, verdict


# --- transformers 5's rope_parameters as mlx-lm's rope_utils reads them.

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
ROPES = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 4.0},  # 96 positions past 32: rescaled
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}
    | {"high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    # the original context transformers fills in (max_position_embeddings), not mlx-lm's 8192
    "llama3-no-original": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0}
    | {"high_freq_factor": 4.0},
    "yarn": YARN,
    "yarn-attention_factor": YARN | {"attention_factor": 1.3, "beta_fast": 16, "beta_slow": 2},
    "yarn-mscale": YARN | {"mscale": 0.8, "mscale_all_dim": 0.5},
    "yarn-mscale-alone": YARN | {"mscale": 0.7},  # transformers ignores it without the other
}


@pytest.mark.parametrize("name", ROPES)
def test_rope_parameters_rotate_as_transformers_does(name):
    from mlx_lm.models.rope_utils import initialize_rope
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    config = LlamaConfig(
        hidden_size=256,
        num_attention_heads=4,
        max_position_embeddings=32,
        rope_parameters=ROPES[name] | {"rope_theta": THETA},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rotary = LlamaRotaryEmbedding(config)
    length = 96
    x = torch.randn(1, 4, length, 64, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(length)[None]
    cos, sin = rotary(x, positions)
    expected, _ = apply_rotary_pos_emb(x, x, cos, sin)
    # float64 from the frequencies transformers settled on (dynamic: after the call)
    angles = positions[0, :, None].double() * rotary.inv_freq.double()[None]
    angles = torch.cat([angles, angles], dim=-1)[None]
    scale = rotary.attention_scaling
    exact, _ = apply_rotary_pos_emb(
        x.double(), x.double(), angles.cos() * scale, angles.sin() * scale
    )
    fields = mlx_lm_format.rope_fields(config)
    rope = initialize_rope(64, fields["rope_theta"], False, fields["rope_scaling"], 32)
    got = np.array(rope(mx.array(x.numpy())))
    verdict = judge(expected.numpy(), got, rule_for("float32"), exact.numpy())
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "gelu"}, "[mlx-lm] llama with hidden_act='gelu'"),
        (
            {"rope_parameters": {"rope_type": "longrope", "rope_theta": THETA}},
            "[mlx-lm] rope type 'longrope'",
        ),
        (
            {"rope_parameters": YARN | {"rope_theta": THETA, "truncate": False}},
            "[mlx-lm] yarn rope with truncate=false",
        ),
    ],
)
def test_a_config_mlx_lm_computes_differently_is_refused(change, message):
    from transformers import LlamaConfig

    config = LlamaConfig(**SIZES, **HEADS)
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(Torch2MLXError) as error:
        mlx_lm_format.mlx_lm_config(config)
    assert str(error.value).startswith(message)
