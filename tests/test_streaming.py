"""A Hugging Face folder converts with memory bounded by a shard: the model is captured with
its parameters on the meta device, its weights stream from the folder's shards into the
package, ModelArgs probes a two-layer copy, and a large model is verified on a copy of its
first layers with the real embedding and head.

The folder is bfloat16, deeper than the probes, sharded, with a tied head, written shard by
shard by benchmarks/make_llama_folder.py as the benchmarks' 1.1B and 8B folders are.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from benchmarks.make_llama_folder import SHAPES, write_folder

from torch2mlx import cli, hf
from torch2mlx.capture import without_cache_outputs
from torch2mlx.checkpoint import load_state_dict

pytestmark = pytest.mark.model_args


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    shape = {**SHAPES["tiny-deep"], "num_hidden_layers": 6}
    return write_folder(tmp_path_factory.mktemp("deep") / "llama", shape, "bfloat16", 60_000)


def _convert(folder, out, capsys) -> tuple[int, str, dict, dict]:
    code = cli.main(["convert", str(folder), "-o", str(out)])
    text = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    report = json.loads((out / "report.json").read_text())
    return code, text, config, report


def test_weights_stream_from_the_folder_into_the_package(folder, tmp_path, capsys):
    assert len(list(folder.glob("model-*.safetensors"))) > 1  # sharded
    code, text, config, report = _convert(folder, tmp_path / "pkg", capsys)
    assert code == 0, text
    assert "captured with its parameters on the meta device" in text
    assert report["passed"] is True and "reduced" not in report
    assert report["tolerance"]["compute_dtype"] == "bfloat16"
    # ModelArgs from probes of a two-layer copy: the depth is a field like any other.
    assert config["model_args"]["num_hidden_layers"] == 6
    assert config["model_args"]["rope_theta"] == 100000.0
    assert "range(args.num_hidden_layers)" in (tmp_path / "pkg/model.py").read_text()
    # The package holds the folder's bytes (bfloat16 as stored), the tied head once.
    source = load_state_dict(folder)
    written = mx.load(str(tmp_path / "pkg/model.safetensors"))
    assert "lm_head.weight" not in source
    pairs = {  # package name: the folder's (the head is the embedding, stored once)
        "lm_head.weight": "model.embed_tokens.weight",
        "model.layers.5.mlp.down_proj.weight": "model.layers.5.mlp.down_proj.weight",
    }
    assert "model.embed_tokens.weight" not in written
    for name, stored in pairs.items():
        got = np.array(written[name].view(mx.uint16))
        assert np.array_equal(got, source[stored].view(np.uint16)), name


def test_a_large_folder_is_verified_on_its_first_layers(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hf, "FULL_VERIFICATION_BYTES", 0)
    code, text, _, report = _convert(folder, tmp_path / "pkg", capsys)
    assert code == 0, text
    assert report["passed"] is True
    assert report["reduced"] == {"num_hidden_layers": hf.REDUCED_LAYERS}
    assert "compared on a reduced copy" in text


def test_a_wrong_weight_fails_the_reduced_verification(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(hf, "FULL_VERIFICATION_BYTES", 0)
    import torch2mlx

    assert cli.main(["convert", str(folder), "-o", str(tmp_path / "pkg")]) == 0
    loaded = hf.load_folder(folder, on_meta=True)
    model, override = hf.verification_model(loaded)
    weights = mx.load(str(tmp_path / "pkg/model.safetensors"))
    # The head's rows out of order (a wrong vocabulary layout): loads, and is wrong. The
    # folder's random layers are too weak for a flaw inside them to show in the logits.
    weights["lm_head.weight"] = weights["lm_head.weight"][::-1]
    mx.save_safetensors(str(tmp_path / "pkg/model.safetensors"), weights)
    with without_cache_outputs(model, {}):
        report = torch2mlx.verify(
            model, tmp_path / "pkg", loaded.example_inputs, model_args=override, layers=False
        )
    assert not report.passed, report.text()


def test_a_model_that_cannot_be_captured_on_meta_is_built_for_real(
    folder, tmp_path, capsys, monkeypatch
):
    from torch2mlx import capture
    from torch2mlx.checkpoint import Torch2MLXError

    real_capture = capture.capture_model

    def refusing_meta(model, *args, **kwargs):
        if any(p.device.type == "meta" for p in model.parameters()):
            raise Torch2MLXError("[capture] torch.export could not capture it on meta")
        return real_capture(model, *args, **kwargs)

    monkeypatch.setattr(capture, "capture_model", refusing_meta)
    code, text, _, report = _convert(folder, tmp_path / "pkg", capsys)
    assert code == 0, text
    assert "capture on the meta device failed" in text
    assert report["passed"] is True


@pytest.mark.parametrize("reduced", [False, True])
def test_the_mlx_lm_format_streams_and_checks_on_the_first_layers(
    folder, tmp_path, capsys, monkeypatch, reduced
):
    if reduced:
        monkeypatch.setattr(hf, "FULL_VERIFICATION_BYTES", 0)
    out = tmp_path / "lm"
    code = cli.main(["convert", str(folder), "-o", str(out), "--format", "mlx-lm"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "captured with its parameters on the meta device" in text
    assert "mlx_lm.load and logits against torch" in text
    from mlx_lm.utils import load_model

    model, _ = load_model(out)  # the whole model, every layer
    assert len(model.layers) == 6
    source = load_state_dict(folder)
    written = mx.load(str(out / "model.safetensors"))
    name = "model.layers.5.self_attn.o_proj.weight"
    assert np.array_equal(np.array(written[name].view(mx.uint16)), source[name].view(np.uint16))
