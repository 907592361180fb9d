"""A fixed subset of the public zoo (tests/zoo/vision_public.py, hf_public.py), converted and
compared with torch in float32 at convert's default tolerances (atol 1e-5, rtol 1e-5).

The subset holds a model of every failure class the zoo has turned up (nested containers,
odd child names, patch embeddings, window attention, squeeze-excite, depthwise and grouped
convolutions, layer scale, relative position tables, 5-D video inputs, dict outputs of the
segmentation heads...), small enough to run in a few minutes. scripts/zoo.py runs the whole
zoo and writes docs/models.md.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("torchvision", reason="the public zoo needs torchvision (extra [zoo])")
pytest.importorskip("timm", reason="the public zoo needs timm (extra [zoo])")

from tests.zoo.hf_public import HF_PUBLIC
from tests.zoo.vision_public import timm_zoo, torchvision_zoo

from torch2mlx.conversion import convert

CI_SUBSET = [
    # torchvision
    "torchvision.resnet18",
    "torchvision.mc3_18",
    "torchvision.squeezenet1_1",
    "torchvision.mobilenet_v3_small",
    "torchvision.efficientnet_b0",
    "torchvision.shufflenet_v2_x0_5",
    "torchvision.mnasnet0_5",
    "torchvision.regnet_y_400mf",
    "torchvision.densenet121",
    "torchvision.googlenet",
    "torchvision.convnext_tiny",
    "torchvision.swin_t",
    "torchvision.regnet_x_400mf",
    "torchvision.lraspp_mobilenet_v3_large",
    "torchvision.r3d_18",
    # timm
    "timm.resnet10t",
    "timm.mobilenetv3_small_050",
    "timm.ghostnet_050",
    "timm.repvgg_a0",
    "timm.convnext_atto",
    "timm.vit_tiny_patch16_224",
    "timm.deit_tiny_patch16_224",
    "timm.mobilevit_xxs",
    "timm.mnasnet_small",
    "timm.poolformer_s12",
    "timm.efficientformerv2_s0",
    "timm.edgenext_xx_small",
    "timm.lcnet_050",
    "timm.hrnet_w18_small",
    "timm.regnetx_002",
    "timm.fastvit_t8",  # a widening block of a type first seen square (class reuse)
]
CI_SUBSET_HF = [
    "hf.bert",
    "hf.roberta",
    "hf.distilbert",
    "hf.albert",
    "hf.electra",
    "hf.deberta_v2",
    "hf.gpt2",
    "hf.llama",
    "hf.qwen2",
    "hf.mixtral",  # experts captured as batched_mm instead of transformers' custom op
    "hf.vit",
    "hf.ijepa",  # a position table added to a transposed patch embedding
    "hf.swin",
    "hf.convnext",
    "hf.wav2vec2",
    "hf.whisper_encoder",
    "hf.clip_vision",
    "hf.clip_text",
]


def _factories() -> dict:
    return torchvision_zoo() | timm_zoo() | HF_PUBLIC


FACTORIES = _factories()
SUBSET = CI_SUBSET + [name for name in CI_SUBSET_HF if name in HF_PUBLIC]


def test_the_subset_is_at_least_forty_models_of_the_zoo():
    assert len(SUBSET) >= 40, SUBSET
    assert set(SUBSET) <= set(FACTORIES), set(SUBSET) - set(FACTORIES)
    assert len(FACTORIES) >= 150, len(FACTORIES)


# Converted with ModelArgs probing on (tests/conftest.py): a float config field (Swin's
# mlp_ratio), a convolutional audio encoder, DistilBERT's own field names, CLIP's text
# tower and a decoder with grouped-query attention. The other models convert with numbers.
MODEL_ARGS_SUBSET = {"hf.swin", "hf.whisper_encoder", "hf.distilbert", "hf.clip_text", "hf.qwen2"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.model_args) if name in MODEL_ARGS_SUBSET else name
        for name in SUBSET
    ],
)
def test_public_model_matches_torch(name, tmp_path):
    model, inputs, dynamic = FACTORIES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(model, inputs, tmp_path / "pkg", dynamic_shapes=dynamic, quiet=True)
    errors = {o["path"]: o["max_abs_error"] for o in result.report["outputs"]}
    assert result.passed, f"{name}: max abs errors {errors}"
