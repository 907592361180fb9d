"""Generation with a KV cache: greedy tokens equal transformers' generate token for token,
sampling is reproducible with a seed (tiny configs, float32, seeded random weights)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import torch2mlx
from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.generation import Generator, convert_for_generation

transformers = pytest.importorskip("transformers")

COMMON = {
    "vocab_size": 160,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}


def _randomise(model):
    """Norm weights start at one and biases at zero: make them random so a mistake shows."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return model.eval()


def _llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON))


def _qwen2():
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**COMMON))


def _mistral():
    return transformers.MistralForCausalLM(
        transformers.MistralConfig(**COMMON, sliding_window=None)
    )


def _mistral_sliding():
    """A window shorter than the prompt: attention must see only the last 4 positions."""
    return transformers.MistralForCausalLM(transformers.MistralConfig(**COMMON, sliding_window=4))


def _mixtral():
    config = transformers.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)
    return transformers.MixtralForCausalLM(config)


def _qwen3():
    return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**COMMON, head_dim=16))


def _gemma():
    return transformers.GemmaForCausalLM(transformers.GemmaConfig(**COMMON, head_dim=16))


def _phi3():
    config = transformers.Phi3Config(**COMMON, pad_token_id=0)
    return transformers.Phi3ForCausalLM(config)


def _gpt2():
    config = transformers.GPT2Config(
        vocab_size=160, n_embd=64, n_layer=2, n_head=4, n_positions=128
    )
    return transformers.GPT2LMHeadModel(config)


MODELS = {
    "llama": _llama,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "mistral": _mistral,
    "mistral_sliding": _mistral_sliding,
    "mixtral": _mixtral,
    "gemma": _gemma,
    "phi3": _phi3,
    "gpt2": _gpt2,
}


def _build(name):
    torch.manual_seed(0)
    return _randomise(MODELS[name]())


PROMPT = [3, 17, 42, 99, 5, 64, 11]


def _convert(model, out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = convert_for_generation(model, out)
    return config


@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_equals_transformers_generate(name, tmp_path):
    model = _build(name)
    config = _convert(model, tmp_path / name)
    assert config["cache"]["layers"] == 2
    new = 12
    with torch.no_grad():
        expected = model.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=new,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, len(PROMPT) :].tolist()
    generator = Generator(tmp_path / name)
    got = list(generator.tokens(PROMPT, new, stop_at_eos=False))
    assert got == expected


def test_the_cache_grows_past_its_first_buffers(tmp_path, monkeypatch):
    """Buffers grown every 8 positions (CACHE_STEP, 256 in use): the prompt fills the first
    one, and two growths happen during generation; the tokens still equal transformers'."""
    from torch2mlx import generation

    monkeypatch.setattr(generation, "CACHE_STEP", 8)
    model = _build("llama")
    _convert(model, tmp_path / "lm")
    with torch.no_grad():
        expected = model.generate(
            torch.tensor([PROMPT]), max_new_tokens=12, do_sample=False, eos_token_id=None
        )[0, len(PROMPT) :].tolist()
    generator = Generator(tmp_path / "lm")
    assert list(generator.tokens(PROMPT, 12, stop_at_eos=False)) == expected
    assert list(generator.tokens(PROMPT, 1, stop_at_eos=False)) == expected[:1]
    assert list(generator.tokens(PROMPT, 0)) == []


def test_decode_writes_one_position_and_reads_the_cache_as_mlx_lm_does(tmp_path):
    """The decode program writes the new keys and values into the buffers (a slice update,
    which MLX does in place) instead of concatenating the cache, attends with no mask (one
    query sees every key) and with fewer key/value heads; prefill asks for mx.fast's causal
    mask; each module type is one class."""
    import re

    _convert(_build("llama"), tmp_path / "lm")
    decode = (tmp_path / "lm" / "decode" / "model.py").read_text()
    prefill = (tmp_path / "lm" / "prefill" / "model.py").read_text()
    assert decode.count("slice_scatter(keys") == 1 and "mx.concatenate" not in decode
    assert re.search(r"= attention\(rope, \w+, \w+, [0-9.]+, None\)", decode)
    assert re.search(r'= attention\(rope, rope_1, \w+, [0-9.]+, "causal"\)', prefill)
    assert "def __call__(self, input_ids, keys, values, length):" in decode
    for source in (decode, prefill):
        classes = re.findall(r"^class (\w+)", source, re.MULTILINE)
        assert not [name for name in classes if name[-1].isdigit()], classes


def test_sampling_is_reproducible_with_a_seed(tmp_path):
    model = _build("llama")
    _convert(model, tmp_path / "lm")
    generator = Generator(tmp_path / "lm")
    first = torch2mlx.generate(generator, PROMPT, 10, temperature=1.0, top_p=0.9, seed=7)
    second = torch2mlx.generate(generator, PROMPT, 10, temperature=1.0, top_p=0.9, seed=7)
    assert first == second and len(first) <= 10
    greedy = torch2mlx.generate(generator, PROMPT, 10)
    assert torch2mlx.generate(generator, PROMPT, 10, temperature=1e-6, seed=3) == greedy


def test_a_plain_package_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"format": "torch2mlx-package"}')
    with pytest.raises(Torch2MLXError, match=r"^\[generation\] .*not a generating package"):
        Generator(tmp_path)


def _word_tokenizer(directory):
    """A word-level tokenizer over the tiny vocabulary, built offline: w0 .. w159."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{index}": index for index in range(1, COMMON["vocab_size"])}
    vocab["<unk>"] = 0
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    return tokenizer


def test_cli_converts_a_folder_and_generates_its_text(tmp_path, capsys):
    from torch2mlx.cli import main

    model = _build("llama")
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    tokenizer = _word_tokenizer(folder)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert", str(folder), "-o", str(out), "--format", "generation"]) == 0
    assert "tokenizer/tokenizer.json" in capsys.readouterr().out
    prompt = "w3 w17 w42 w99"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model.generate(
            ids, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, ids.shape[1] :]
    assert main(["generate", str(out), "--prompt", prompt, "--max-tokens", "6"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == tokenizer.decode(expected, skip_special_tokens=True)
    assert "decode" in captured.err and "tok/s" in captured.err
    assert main(["generate", str(out), "--ids", "3,17,42,99", "--max-tokens", "6"]) == 0
    assert capsys.readouterr().out.split() == [str(token) for token in expected.tolist()]


def test_a_config_without_architectures_is_built_for_the_format_asked(tmp_path, capsys):
    """transformers' GGUF loader writes config.json without `architectures`: --format
    generation builds the causal LM (AutoModelForCausalLM's class for the model_type) and
    says so; the package it writes generates transformers' greedy tokens. The default format
    builds the bare model, as AutoModel does, and says how to get the LM."""
    import json

    from torch2mlx.cli import main

    model = _build("llama")
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    out = tmp_path / "lm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert", str(folder), "-o", str(out), "--format", "generation"]) == 0
    printed = capsys.readouterr().out
    assert (
        "note: config.json names no architecture: built LlamaForCausalLM, transformers' "
        "AutoModelForCausalLM for model_type 'llama'" in printed
    )
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        expected = model.generate(
            ids, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, ids.shape[1] :]
    argv = ["generate", str(out), "--ids", ",".join(map(str, PROMPT)), "--max-tokens", "6"]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(token) for token in expected.tolist()]

    argv = ["convert", str(folder), "-o", str(tmp_path / "pkg"), "--no-verify", "--no-model-args"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    assert (
        "note: config.json names no architecture: built LlamaModel, transformers' AutoModel "
        "for model_type 'llama'; --format generation or mlx-lm build its causal LM"
    ) in capsys.readouterr().out


def test_generate_on_a_default_package_names_the_format_that_generates(tmp_path, capsys):
    """`convert FOLDER -o OUT` then `generate OUT` is what a newcomer types: the error names
    the option that writes a generating package, not the command that was just run."""
    from torch2mlx.cli import main

    _build("llama").save_pretrained(tmp_path / "hf")
    argv = ["convert", str(tmp_path / "hf"), "-o", str(tmp_path / "pkg"), "--no-verify"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, "--no-model-args"]) == 0
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "pkg"), "--ids", "3,17", "--max-tokens", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("torch2mlx: error: [generation] ")
    assert "not a generating package" in err
    assert "`torch2mlx convert HF_FOLDER -o OUT --format generation`" in err


def test_cli_refuses_a_single_graph_for_generation(tmp_path, capsys):
    from torch2mlx.cli import main

    archive = tmp_path / "model.pt2"
    archive.write_bytes(b"not read")
    code = main(["convert", str(archive), "-o", str(tmp_path / "o"), "--format", "generation"])
    assert code == 1
    assert "--format generation takes a Hugging Face folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    """The decode program fails after prefill was written: neither the folder nor its
    staging copy remains."""
    from torch2mlx import conversion

    real_convert = conversion.convert

    def convert(model, inputs, out_dir, **options):
        if Path(out_dir).name == "decode":
            raise Torch2MLXError("[codegen] stands in for a node that cannot be translated")
        return real_convert(model, inputs, out_dir, **options)

    monkeypatch.setattr(conversion, "convert", convert)
    with pytest.raises(Torch2MLXError, match="stands in"):
        _convert(_build("llama"), tmp_path / "lm")
    assert list(tmp_path.iterdir()) == []


def test_only_causal_language_models_are_taken(tmp_path):
    with pytest.raises(Torch2MLXError, match=r"^\[generation\] Linear is not a Hugging Face"):
        convert_for_generation(torch.nn.Linear(2, 2), tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


@pytest.mark.parametrize("mode", ["affine", "mxfp8"])
def test_a_quantized_package_generates(mode, tmp_path):
    import json

    model = _build("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = convert_for_generation(model, tmp_path / "lm", quantize={"mode": mode})
    assert config["passed"] is not False
    for program in ("prefill", "decode"):
        written = json.loads((tmp_path / "lm" / program / "config.json").read_text())
        assert written["quantization"]["mode"] == mode
    tokens = torch2mlx.generate(tmp_path / "lm", PROMPT, 8)
    assert len(tokens) == 8 and all(0 <= token < COMMON["vocab_size"] for token in tokens)
