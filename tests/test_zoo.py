"""The zoo: whole models converted end to end and compared with torch.

Hand-written models (tests/zoo/models.py) and Hugging Face models from tiny configs
(tests/zoo/hf_models.py), each in float32 (atol 1e-5) and float16 (atol 1e-2 against
torch's float32 output). The HF models are 2 layers deep; our own transformers are 4 deep,
still within 1e-5: no test here needs the looser 1e-4 allowed for deep transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.zoo.hf_models import HF_ZOO
from tests.zoo.models import ZOO

import torch2mlx
from torch2mlx.conversion import convert

FACTORIES = {f"zoo.{f.__name__}": f for f in ZOO} | {f"hf.{f.__name__}": f for f in HF_ZOO}

# Models whose generated model.py is checked in (tests/golden/), to be read in review: a
# change to the code generator shows up there as a diff. `pytest --update-golden`
# rewrites them.
GOLDEN = Path(__file__).parent / "golden"
GOLDEN_MODELS = {
    "zoo.mlp",
    "zoo.resnet18",
    "zoo.nested_efficientnet",
    "hf.gpt2",
    "hf.llama",
    "hf.bert",
    "hf.vit",
}


def check_golden(name: str, model_py: Path, update: bool) -> None:
    golden = GOLDEN / f"{name.replace('.', '_')}.py"
    source = model_py.read_text()
    if update:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(source)
        return
    assert golden.exists(), f"{golden} is missing: run pytest --update-golden and review it"
    assert source == golden.read_text(), (
        f"the generated model.py of {name} differs from {golden}; if the change is intended, "
        "run pytest --update-golden and review the diff"
    )


@pytest.mark.model_args
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_float32_matches_torch(name, tmp_path, request):
    model, inputs, dynamic = FACTORIES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(
            model,
            inputs,
            tmp_path / "pkg",
            dynamic_shapes=dynamic,
            quiet=True,
        )
    errors = {o["path"]: o["max_abs_error"] for o in result.report["outputs"]}
    assert result.passed, f"{name}: max abs errors {errors}"
    assert all(o["cosine_similarity"] > 0.99999 for o in result.report["outputs"])
    report = json.loads((tmp_path / "pkg" / "report.json").read_text())
    assert report["passed"] is True
    # The analyzer agrees with what convert achieved, on its own capture (torch2mlx.analyze)
    # and in the package's report.json: nothing blocks, every op translates.
    analysis = torch2mlx.analyze(*FACTORIES[name]())
    assert analysis.verdict == "convertible", analysis.format_text()
    assert analysis.ops["coverage"] == 1.0
    assert report["analysis"]["verdict"] == "convertible", report["analysis"]["findings"]
    assert report["analysis"]["ops"]["coverage"] == 1.0
    # The generated code is formatted (ruff, 100 columns) and imports what it uses.
    model_py = str(tmp_path / "pkg" / "model.py")
    ruff = [sys.executable, "-m", "ruff"]
    formatted = subprocess.run(
        [*ruff, "format", "--check", "--isolated", "--line-length", "100", model_py],
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    lint = subprocess.run(
        [
            *ruff,
            "check",
            "--isolated",
            "--line-length",
            "100",
            "--select",
            "F401,F821,E501",
            model_py,
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    if name in GOLDEN_MODELS:
        check_golden(name, Path(model_py), request.config.getoption("--update-golden"))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_float16_runs_within_1e_2(name, tmp_path):
    model, inputs, dynamic = FACTORIES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(
            model,
            inputs,
            tmp_path / "pkg",
            dynamic_shapes=dynamic,
            dtype="float16",
            quiet=True,
        )
    # float16 keeps 11 significant bits: a logit of 57 is only known to 0.03. The error must
    # be within 1e-2 absolutely, or relative to the output's largest magnitude.
    for output in result.report["outputs"]:
        error = min(output["max_abs_error"], output["max_rel_error"])
        assert error <= 1e-2, f"{name}: {output}"
    config = json.loads((tmp_path / "pkg" / "config.json").read_text())
    assert config["dtype"] == "float16"


def test_resnet_code_reads_like_a_hand_port(tmp_path):
    from tests.zoo.models import resnet18

    model, inputs, _ = resnet18()
    result = convert(model, inputs, tmp_path / "pkg", quiet=True)
    source = result.model_py.read_text()
    # Channels-last inside: one transpose in, one before flatten.
    assert source.count("transpose(") <= 2, source
    assert "import torch" not in source and "import torch2mlx" not in source
    # One class per block shape, built from channel counts, with mlx.nn layers.
    assert "class BasicBlock(nn.Module):" in source
    assert "nn.Conv2d(" in source and "nn.BatchNorm(" in source
    assert source.count("class ") <= 4


def test_generated_code_is_deterministic(tmp_path):
    from tests.zoo.models import unet

    model, inputs, _ = unet()
    first = convert(model, inputs, tmp_path / "a", verify=False, quiet=True)
    second = convert(model, inputs, tmp_path / "b", verify=False, quiet=True)
    assert first.model_py.read_bytes() == second.model_py.read_bytes()
    assert (tmp_path / "a/model.safetensors").read_bytes() == (
        tmp_path / "b/model.safetensors"
    ).read_bytes()


def test_dynamic_sequence_length_runs_at_other_sizes(tmp_path):
    from tests.zoo.models import gpt

    model, inputs, dynamic = gpt()
    convert(model, inputs, tmp_path / "pkg", dynamic_shapes=dynamic, quiet=True)
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    assert config["specialized"] is False
    assert list(config["dynamic_dims"].values()) == [{"min": 2, "max": 32}]
    mlx_model = torch2mlx.load(tmp_path / "pkg")
    import mlx.core as mx

    for length in (3, 27):
        tokens = torch.randint(0, 128, (2, length))
        expected = model(tokens).detach().numpy()
        got = np.array(mlx_model(mx.array(tokens.numpy())))
        # 4 transformer blocks and logits up to ~40: float32 rounding differs in the last
        # bits between the two attention kernels, so this deep model gets atol 1e-4.
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_batch_and_sequence_are_dynamic_by_default(tmp_path):
    # No dynamic_shapes: batch and sequence are captured with Dim.AUTO, so the package
    # reads its sizes from x.shape and runs at sizes other than the example's.
    from tests.zoo.hf_models import llama

    model, inputs, _ = llama()
    convert(model, inputs, tmp_path / "pkg", quiet=True)
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    assert config["specialized"] is False
    assert [item["shape"][1] for item in config["inputs"]] == [config["inputs"][0]["shape"][1]] * 2
    source = (tmp_path / "pkg/model.py").read_text()
    assert "(2, 12, " not in source and "batch = x.shape[0]" in source
    mlx_model = torch2mlx.load(tmp_path / "pkg")
    import mlx.core as mx

    for batch, length in ((1, 5), (3, 12), (2, 31)):
        ids = torch.randint(0, 128, (batch, length), generator=torch.Generator().manual_seed(3))
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, :2] = 0  # left padding
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        got = mlx_model(mx.array(ids.numpy()), mx.array(mask.numpy()))["logits"]
        np.testing.assert_allclose(np.array(got), expected.numpy(), atol=1e-5)


def test_a_size_the_model_fixes_stays_fixed(tmp_path):
    # A linear layer over a flattened image fixes its height and width; the batch stays free.
    from tests.zoo.models import cnn_batchnorm

    model, inputs, _ = cnn_batchnorm()
    convert(model, inputs, tmp_path / "pkg", quiet=True)
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    (shape,) = [item["shape"] for item in config["inputs"]]
    assert shape[1:] == ["3", "16", "16"] and not shape[0].isdigit()


def test_specialized_export_says_so(tmp_path):
    from tests.zoo.models import mlp

    model, inputs, _ = mlp()
    convert(model, inputs, tmp_path / "pkg", dynamic_shapes=False, quiet=True)
    config = json.loads((tmp_path / "pkg/config.json").read_text())
    assert config["specialized"] is True
    assert "fixed" in config["specialization_note"]
    assert config["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["4", "32"]}]
    assert config["versions"]["torch"].startswith(torch.__version__.split("+")[0])


def test_outputs_keep_torch_structure(tmp_path):
    from tests.zoo.models import bert

    model, inputs, _ = bert()
    convert(model, inputs, tmp_path / "pkg", quiet=True)
    out = torch2mlx.load(tmp_path / "pkg")(
        *[__import__("mlx.core").core.array(v.numpy()) for v in inputs.values()]
    )
    assert isinstance(out, dict) and list(out) == ["logits", "hidden_states"]


def test_gptj_rotates_with_mx_fast_rope_from_its_sinusoid_buffer(tmp_path):
    """GPT-J gathers sin and cos from a precomputed buffer (embed_positions) by arange
    positions: fuse-rope checks the buffer's values and rotates with mx.fast.rope."""
    from tests.zoo.hf_public import HF_PUBLIC

    model, inputs, dynamic = HF_PUBLIC["hf.gptj"]()
    result = convert(model, inputs, tmp_path / "pkg", dynamic_shapes=dynamic, quiet=True)
    assert result.passed
    source = result.model_py.read_text()
    assert source.count("mx.fast.rope(") == 2, source  # queries and keys, one class
    assert "mx.stack" not in source and "def split" not in source  # no rotate_every_two


def test_llama_uses_mlx_fast_kernels_with_fewer_kv_heads(tmp_path):
    """The tiny Llama (4 query heads, 2 key/value heads) reads like an mlx-lm model file."""
    import re

    import mlx.core as mx
    from tests.zoo.hf_models import llama

    model, inputs, _ = llama()
    result = convert(model, inputs, tmp_path / "pkg", quiet=True)
    assert result.passed
    source = result.model_py.read_text()
    assert "mx.fast.rms_norm(" in source
    assert "mx.fast.rope(" in source and "mx.concatenate" not in source  # no rotate_half
    assert "def expand" not in source  # no repeat_kv
    assert not re.findall(r"^class \w*\d\(", source, re.MULTILINE), "numbered class names"
    # Attention runs with 2 key/value heads against 4 query heads.
    shapes = []
    fast_attention = mx.fast.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        shapes.append((q.shape[1], k.shape[1], v.shape[1]))
        return fast_attention(q, k, v, **kwargs)

    mx.fast.scaled_dot_product_attention = recording
    try:
        mlx_model = torch2mlx.load(tmp_path / "pkg")
        ids = mx.array(inputs["input_ids"].numpy())
        mlx_model(ids, mx.array(inputs["attention_mask"].numpy()))
    finally:
        mx.fast.scaled_dot_product_attention = fast_attention
    assert shapes == [(4, 2, 2), (4, 2, 2)]
