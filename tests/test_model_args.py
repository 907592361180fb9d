"""ModelArgs: a model built from a Hugging Face config gets a model.py that reads its sizes
from config.json, so that one model.py serves every size of the architecture."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import pytest
import torch
import transformers

import torch2mlx
from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.runtime import load

pytestmark = pytest.mark.model_args


def _randomise(model):
    """Norm weights start at one and biases at zero: make them random so a mistake shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return model.eval()


def _inputs(vocab: int) -> dict:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, vocab, (2, 10), generator=generator)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "use_cache": False}


def _llama(hidden: int, heads: int, kv_heads: int, layers: int, vocab: int):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
    )
    return _randomise(transformers.LlamaForCausalLM(config)), _inputs(vocab)


def _gpt2(embed: int, heads: int, layers: int, vocab: int):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=embed, n_layer=layers, n_head=heads
    )
    return _randomise(transformers.GPT2LMHeadModel(config)), _inputs(vocab)


def _convert(model, inputs, path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch2mlx.convert(model, inputs, path, quiet=True, **options)


def _model_code(path) -> str:
    """model.py without the helpers copied from mlx_helpers (top-level functions)."""
    source = (path / "model.py").read_text()
    return source[source.index("@dataclass") :]


SIZES = {
    "llama": (_llama, [(64, 4, 2, 2, 128), (96, 6, 3, 3, 200)]),
    "gpt2": (_gpt2, [(64, 4, 2, 128), (48, 3, 3, 96)]),
}


@pytest.fixture(scope="module")
def llama_package(tmp_path_factory):
    """The first Llama size, converted and verified once for the tests below."""
    path = tmp_path_factory.mktemp("llama") / "pkg"
    model, inputs = _llama(*SIZES["llama"][1][0])
    result = _convert(model, inputs, path)
    assert result.passed, result.report["outputs"]
    return path


@pytest.mark.parametrize("architecture", sorted(SIZES))
def test_one_model_py_serves_every_size(architecture, tmp_path, llama_package):
    # Each size is verified against torch of that size: the one model.py, with config.json's
    # model_args and the weights of each size, computes each torch model.
    factory, sizes = SIZES[architecture]
    packages = [llama_package] if architecture == "llama" else []
    for index, size in enumerate(sizes[len(packages) :]):
        model, inputs = factory(*size)
        result = _convert(model, inputs, tmp_path / f"size{index}")
        errors = {o["path"]: o["max_abs_error"] for o in result.report["outputs"]}
        assert result.passed, f"{architecture} {size}: {errors}"
        packages.append(tmp_path / f"size{index}")
    sources = [(path / "model.py").read_text() for path in packages]
    configs = [json.loads((path / "config.json").read_text()) for path in packages]
    assert sources[0] == sources[1]
    assert configs[0]["model_args"] != configs[1]["model_args"]
    assert "class ModelArgs:" in sources[0] and "def __init__(self, args: ModelArgs):" in sources[0]
    # The file holds no size of either model: no layer is built with a number it could read
    # from the args.
    code = _model_code(packages[0])
    for size in sizes:
        for number in size:
            if number > 1:
                assert not re.search(rf"nn\.\w+\([^)]*\b{number}\b", code), (number, code)


def test_llama_model_args_name_the_config_fields(llama_package):
    args = json.loads((llama_package / "config.json").read_text())["model_args"]
    assert args["hidden_size"] == 64 and args["num_attention_heads"] == 4
    assert args["num_key_value_heads"] == 2 and args["num_hidden_layers"] == 2
    assert args["vocab_size"] == 128 and args["intermediate_size"] == 128
    assert args["rms_norm_eps"] == 1e-5 and args["rope_theta"] == 10000.0
    code = _model_code(llama_package)
    assert "for _ in range(args.num_hidden_layers)" in code
    assert "mx.fast.rms_norm(x, self.weight, args.rms_norm_eps)" in code
    flat = "".join(code.split())
    assert "nn.Linear(args.hidden_size,args.num_key_value_heads*args.head_dim" in flat
    assert "args=self.args" in flat
    assert "mx.reshape(linear,(batch,length,-1,args.head_dim))" in flat
    assert "base=args.rope_theta" in flat
    # The package loads from its folder alone, and the model keeps config.json's sizes.
    assert load(llama_package).args.hidden_size == 64


def test_model_args_can_be_turned_off_and_need_a_config(tmp_path):
    model, inputs = _llama(64, 4, 2, 2, 128)
    result = _convert(model, inputs, tmp_path / "off", model_args=False)
    assert result.passed and "model_args" not in result.config
    assert "ModelArgs" not in (tmp_path / "off" / "model.py").read_text()
    plain = torch.nn.Linear(4, 4)
    with pytest.raises(Torch2MLXError, match="model_args=True needs a model built from"):
        _convert(plain, torch.randn(2, 4), tmp_path / "plain", model_args=True)
    assert not (tmp_path / "plain").exists()


def test_a_missing_model_args_is_a_clear_error(tmp_path, llama_package):
    shutil.copytree(llama_package, tmp_path / "pkg")
    config = json.loads((tmp_path / "pkg" / "config.json").read_text())
    del config["model_args"]
    (tmp_path / "pkg" / "config.json").write_text(json.dumps(config))
    with pytest.raises(Torch2MLXError, match=r'config\.json has no "model_args"'):
        load(tmp_path / "pkg")
    config["model_args"] = {"hidden_size": 64}
    (tmp_path / "pkg" / "config.json").write_text(json.dumps(config))
    with pytest.raises(Torch2MLXError, match=r"model_args do not fit model\.py's ModelArgs"):
        load(tmp_path / "pkg")


def test_a_folder_converts_with_model_args_unless_told_not_to(tmp_path, capsys):
    from tests.test_hf_folder import run_main
    from tests.zoo.hf_models import llama

    model, _, _ = llama()
    model.save_pretrained(tmp_path / "hf")
    code, out, err = run_main(capsys, "convert", str(tmp_path / "hf"), "-o", str(tmp_path / "a"))
    assert code == 0, out + err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model_args"]["hidden_size"] == model.config.hidden_size
    assert "class ModelArgs:" in (tmp_path / "a" / "model.py").read_text()
    code, out, err = run_main(
        capsys, "convert", str(tmp_path / "hf"), "-o", str(tmp_path / "b"), "--no-model-args"
    )
    assert code == 0, out + err
    assert "model_args" not in json.loads((tmp_path / "b" / "config.json").read_text())
    assert "ModelArgs" not in (tmp_path / "b" / "model.py").read_text()


def test_a_probe_the_core_refuses_leaves_its_field_fixed_and_the_model_converts(
    tmp_path, monkeypatch
):
    """A probe's program may hold what the core refuses to read (a size expression past the
    4096 bytes one may take, as one architecture's doubled field gave): that field stays
    fixed, with a note, and the model converts with the others read from ModelArgs."""
    from torch2mlx import model_args

    capture = model_args._capture

    def long_expression(model, inputs, dynamic_shapes, scratch):
        text, buffers = capture(model, inputs, dynamic_shapes, scratch)
        if model.config.num_hidden_layers != 2:  # the probe of num_hidden_layers
            long = " + ".join(["s1"] * 1500)
            text = re.sub(r'"expr_str": "[^"]*"', f'"expr_str": "{long}"', text, count=1)
            assert long in text
        return text, buffers

    monkeypatch.setattr(model_args, "_capture", long_expression)
    model, inputs = _llama(*SIZES["llama"][1][0])
    result = _convert(model, inputs, tmp_path / "pkg")
    assert result.passed, result.summary
    (note,) = [note for note in result.config["notes"] if "num_hidden_layers" in note]
    assert note.startswith(
        "ModelArgs: 'num_hidden_layers' stays fixed: the model captured with "
        "num_hidden_layers = 4 cannot be used ([graph] "
    )
    assert "longer than the 4096 bytes a size expression may take" in note
    assert "num_hidden_layers" not in result.config["model_args"]
    assert result.config["model_args"]["hidden_size"] == 64
    assert "range(2)" in _model_code(tmp_path / "pkg")
