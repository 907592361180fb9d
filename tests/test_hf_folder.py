"""`torch2mlx convert FOLDER`: Hugging Face folders written by save_pretrained (the zoo's
models), safetensors and .bin, sharded or not, converted from the folder alone and
compared with torch; tokenizer files travel along; remote code is refused by default."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from tests.zoo.hf_models import HF_ZOO

from torch2mlx import cli


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def save_tokenizer(folder) -> None:
    """A small word-level tokenizer saved beside the model, as a real folder has one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(120)} | {"[UNK]": 120, "[PAD]": 121}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]"
    ).save_pretrained(folder)


@pytest.mark.parametrize("factory", HF_ZOO, ids=[f.__name__ for f in HF_ZOO])
def test_a_saved_zoo_folder_converts_and_matches_torch(factory, tmp_path, capsys):
    model, _, _ = factory()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    code, out, err = run_main(capsys, "convert", str(folder), "-o", str(tmp_path / "pkg"))
    assert code == 0, out + err
    report = json.loads((tmp_path / "pkg" / "report.json").read_text())
    assert report["passed"] is True
    assert all(o["max_abs_error"] < 1e-5 for o in report["outputs"])
    config = json.loads((tmp_path / "pkg" / "config.json").read_text())
    assert config["hugging_face"]["architecture"] == type(model).__name__
    assert config["hugging_face"]["config"]["model_type"] == model.config.model_type
    # Text models vary in batch and sequence, vision models in batch.
    dims = {dim for item in config["inputs"] for dim in item["shape"] if not dim.isdigit()}
    expected = 2 if config["hugging_face"]["task"] == "text" else 1
    assert len(dims) == expected, config["inputs"]


def test_bin_and_sharded_folders_convert_without_unpickling(tmp_path, capsys, monkeypatch):
    from tests.zoo.hf_models import llama

    model, _, _ = llama()
    bin_folder = tmp_path / "bin"
    model.config.save_pretrained(bin_folder)
    torch.save(model.state_dict(), bin_folder / "pytorch_model.bin")
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called on a folder's .bin")

    monkeypatch.setattr(torch, "load", refuse)
    for folder in (bin_folder, sharded):
        out_dir = tmp_path / f"pkg-{folder.name}"
        code, out, err = run_main(capsys, "convert", str(folder), "-o", str(out_dir))
        assert code == 0, out + err
        assert json.loads((out_dir / "report.json").read_text())["passed"] is True


def test_tokenizer_files_go_into_the_package(tmp_path, capsys):
    from tests.zoo.hf_models import llama
    from transformers import PreTrainedTokenizerFast

    model, _, _ = llama()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    save_tokenizer(folder)
    out_dir = tmp_path / "pkg"
    code, out, err = run_main(capsys, "convert", str(folder), "-o", str(out_dir), "--no-verify")
    assert code == 0, out + err
    config = json.loads((out_dir / "config.json").read_text())
    assert "tokenizer.json" in config["files"] and "tokenizer_config.json" in config["files"]
    assert "copied: " in out
    # (AutoTokenizer would read the package's config.json, which is torch2mlx's own.)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir, local_files_only=True)
    assert tokenizer("w3 w7")["input_ids"] == [3, 7]


def test_remote_code_is_refused_unless_trusted(tmp_path, capsys):
    from tests.zoo.hf_models import bert

    model, _, _ = bert()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    capsys.readouterr()  # save_pretrained's progress bar
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    out_dir = tmp_path / "pkg"
    code, _, err = run_main(capsys, "convert", str(folder), "-o", str(out_dir))
    assert code == 1
    assert err.startswith("torch2mlx: error: [hf] ")
    assert "--trust-remote-code" in err and "run" in err
    assert not out_dir.exists()


def test_a_folder_without_config_json_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(capsys, "convert", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert code == 1
    assert "[hf]" in err and "without config.json" in err


def test_weights_that_do_not_fit_the_config_are_named(tmp_path, capsys):
    from tests.zoo.hf_models import llama

    model, _, _ = llama()
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    capsys.readouterr()
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the weights have 2
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(capsys, "convert", str(folder), "-o", str(tmp_path / "pkg"))
    assert code == 1
    assert "[hf]" in err and "layers.2" in err
    assert not (tmp_path / "pkg").exists()


def mlx_inputs(inputs: dict) -> dict:
    import mlx.core as mx

    return {name: mx.array(value.numpy()) for name, value in inputs.items()}


def assert_matches(expected, actual, model) -> None:
    """MLX's outputs against torch's by the project's one rule."""
    from torch2mlx.comparison import compare, rule_for
    from torch2mlx.verification import compute_dtype

    errors = compare(expected, actual, rule_for(compute_dtype(model)))
    assert errors and all(error.passed for error in errors), errors


@pytest.mark.model_args
def test_inputs_transformers_takes_as_optional_are_optional_in_model_py(tmp_path, capsys):
    """`model(input_ids)` works in transformers, and in the package of its folder: the mask
    defaults to all ones there as in transformers. With ModelArgs on, as the default is."""
    from tests.zoo.hf_public import build

    import torch2mlx

    model, _, _ = build("mistral")
    model.save_pretrained(tmp_path / "hf")
    out_dir = tmp_path / "pkg"
    code, out, err = run_main(capsys, "convert", str(tmp_path / "hf"), "-o", str(out_dir))
    assert code == 0, out + err
    config = json.loads((out_dir / "config.json").read_text())
    assert [(item["name"], item.get("default")) for item in config["inputs"]] == [
        ("input_ids", None),
        ("attention_mask", "ones"),
    ]
    assert config["model_args"]["num_hidden_layers"] == 2  # the probes saw the same signature
    assert (
        "def __call__(self, input_ids, attention_mask=None):" in (out_dir / "model.py").read_text()
    )
    package = torch2mlx.load(out_dir)
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 128, (3, 9), generator=generator)  # another batch and length
    padded = torch.ones(3, 9, dtype=torch.long)
    padded[0, :4] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False)
        assert_matches(expected, package(**mlx_inputs({"input_ids": ids})), model)
        given = {"input_ids": ids, "attention_mask": padded}
        assert_matches(model(**given, use_cache=False), package(**mlx_inputs(given)), model)


def test_a_bert_folder_takes_its_mask_and_token_types_optionally(tmp_path, capsys):
    from tests.zoo.hf_models import bert

    import torch2mlx

    model, _, _ = bert()
    model.save_pretrained(tmp_path / "hf")
    out_dir = tmp_path / "pkg"
    argv = ("convert", str(tmp_path / "hf"), "-o", str(out_dir), "--no-model-args")
    code, out, err = run_main(capsys, *argv)
    assert code == 0, out + err
    config = json.loads((out_dir / "config.json").read_text())
    assert {item["name"]: item.get("default") for item in config["inputs"]} == {
        "input_ids": None,
        "attention_mask": "ones",
        "token_type_ids": "zeros",
    }
    package = torch2mlx.load(out_dir)
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 128, (2, 7), generator=generator)
    types = torch.zeros(2, 7, dtype=torch.long)
    types[:, 4:] = 1  # a sentence pair
    with torch.no_grad():
        for given in (
            {"input_ids": ids},
            {"input_ids": ids, "token_type_ids": types},
            {"input_ids": ids, "attention_mask": torch.ones(2, 7, dtype=torch.long)},
        ):
            assert_matches(model(**given), package(**mlx_inputs(given)), model)


def test_position_ids_default_to_arange_where_transformers_counts_from_zero(tmp_path):
    """A Llama given position_ids takes them optionally (arange, as transformers); RoBERTa
    counts positions from its padding index, so its position_ids stay required."""
    from tests.zoo.hf_models import llama
    from tests.zoo.hf_public import build

    import torch2mlx
    from torch2mlx.hf import optional_inputs

    model, inputs, _ = llama()
    inputs["position_ids"] = torch.arange(12).expand(2, 12)
    result = torch2mlx.convert(model, inputs, tmp_path / "pkg", quiet=True, model_args=False)
    assert result.passed, result.summary
    defaults = {item["name"]: item.get("default") for item in result.config["inputs"]}
    assert defaults["position_ids"] == "arange" and defaults["attention_mask"] == "ones"
    package = torch2mlx.load(tmp_path / "pkg")
    ids = torch.randint(0, 128, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False)
        assert_matches(expected, package(**mlx_inputs({"input_ids": ids})), model)

    roberta, inputs, _ = build("roberta")
    inputs["position_ids"] = torch.arange(12).expand(2, 12)
    chosen, notes = optional_inputs(roberta, inputs)
    assert chosen == {"attention_mask": ("ones", "input_ids")}
    assert notes == [
        "input 'position_ids' stays required: left out, RobertaModel computes something else "
        "than with arange in its place"
    ]


def test_a_folder_whose_dynamic_axes_torch_refuses_converts_with_a_note(tmp_path, capsys):
    """A wav2vec2 with an adapter guards the samples on a divisibility torch cannot prove for
    the folder's range ("Constraints violated (samples)"): capture falls back to Dim.AUTO on
    the same axes, which keeps both dynamic in the range the model allows, and says so."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    import torch2mlx

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(32,) * 7,
        vocab_size=32,
        add_adapter=True,
        output_hidden_size=64,
    )
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(tmp_path / "hf")
    out_dir = tmp_path / "pkg"
    argv = ("convert", str(tmp_path / "hf"), "-o", str(out_dir), "--no-model-args")
    code, out, err = run_main(capsys, *argv)
    assert code == 0, out + err
    config_json = json.loads((out_dir / "config.json").read_text())
    (note,) = [note for note in config_json["notes"] if "Dim.AUTO" in note]
    assert "Constraints violated (samples)" in note and note in out
    ((batch, length),) = [item["shape"] for item in config_json["inputs"]]
    assert config_json["dynamic_dims"][length]["min"] > 400  # the adapter's guard, as a range
    assert {batch, length} <= set(config_json["dynamic_dims"])
    samples = torch.randn(3, 12000, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = model(input_values=samples)
    actual = torch2mlx.load(out_dir)(**mlx_inputs({"input_values": samples}))
    assert_matches(expected, actual, model)
