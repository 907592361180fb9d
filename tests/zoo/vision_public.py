"""torchvision and timm models of the public zoo, built offline with seeded random weights.

Each factory returns (model, example_inputs, dynamic_shapes or None), as in models.py.
Inputs are small (64x64 where a model accepts any size) so that the whole zoo runs in
minutes; models whose layout fixes the input size get that size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def randomise(model: nn.Module, inputs: tuple | None = None, scale: float = 0.2) -> nn.Module:
    """Seeded weights with nothing left at a constant: norm weights (ones), biases and
    layer-scale gammas (zeros or 1e-6) and BatchNorm statistics would otherwise make a
    wrong normalisation, a missing bias or a dropped branch invisible.

    With ``inputs`` (timm's models, at their 224-pixel inputs), BatchNorm statistics are
    then measured on them, as training would leave them: random statistics under random
    weights grow a deep ResNet's activations to 1e7, where float32 rounding alone exceeds any
    absolute tolerance. torchvision's models run at 64 pixels, where the last stages hold too
    few values per channel to measure: they keep random statistics (docs/models.md shows
    the deep ones as "scaled").
    """
    with torch.no_grad():
        for parameter in model.parameters():
            flat = parameter.detach().flatten()
            if flat.numel() and bool(flat.min() == flat.max()):
                parameter.normal_(float(flat[0]), scale)
        norms = [
            module
            for module in model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        ]
        for norm in norms:
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
        model.eval()
        if inputs is not None and norms:
            _calibrate(model, norms, inputs)
    return model.eval()


def _calibrate(model: nn.Module, norms: list, inputs: tuple) -> None:
    saved = [(norm.momentum, norm.running_mean.clone(), norm.running_var.clone()) for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch gives its own statistics
        norm.train()
    # Eight fresh images, not the two examples: a squeeze-excite norm sees one value per
    # image and channel, and two values make variances near zero that amplify rounding.
    generator = torch.Generator().manual_seed(2)
    batch = tuple(torch.randn(8, *x.shape[1:], generator=generator) for x in inputs)
    try:
        model(*batch)
    except (RuntimeError, ValueError):  # too few values per channel: keep random statistics
        for norm, (_, mean, var) in zip(norms, saved, strict=True):
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
    for norm, (momentum, _, _) in zip(norms, saved, strict=True):
        norm.momentum = momentum
        norm.eval()


def import_torchvision():
    """torchvision, which imports beside the CPU build of torch through the development
    venv's startup hook (scripts/torchvision_hook.py, installed by scripts/setup.sh)."""
    import torchvision

    return torchvision


def import_timm():
    import timm

    return timm


def _image(size: int | tuple[int, int], batch: int = 2, frames: int | None = None):
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(1)
    shape = (batch, 3, height, width) if frames is None else (batch, 3, frames, height, width)
    return (torch.randn(*shape, generator=generator),)


# torchvision classification models whose input size is fixed by their layout, or that
# need more than 64 pixels (inception's stem reduces 64 to nothing), with what each needs.
TORCHVISION_SIZES = {"inception_v3": 96, "maxvit_t": 224, "vit_h_14": 56}
# Constructor arguments: ViTs take their image size at construction (the position table).
TORCHVISION_KWARGS = {
    "vit_b_16": {"image_size": 64},
    "vit_b_32": {"image_size": 64},
    "vit_l_16": {"image_size": 64},
    "vit_l_32": {"image_size": 64},
    "vit_h_14": {"image_size": 56},
    "inception_v3": {"aux_logits": False, "init_weights": True},
    "googlenet": {"aux_logits": False, "init_weights": True},
}
# Segmentation heads sit on ImageNet backbones: weights_backbone=None keeps them offline.
TORCHVISION_SEGMENTATION_SIZE = 64
# Video models: (frames, size). MViT's position tables fix 16 frames of 224x224.
TORCHVISION_VIDEO = {
    "r3d_18": (4, 32),
    "mc3_18": (4, 32),
    "r2plus1d_18": (4, 32),
    "s3d": (16, 224),  # its head pools a fixed 2x7x7 window
    "swin3d_t": (4, 64),
    "swin3d_s": (4, 64),
    "swin3d_b": (4, 64),
    "mvit_v1_b": (16, 224),
    "mvit_v2_s": (16, 224),
}


def _torchvision_classification(name: str) -> Callable:
    def build():
        torchvision = import_torchvision()
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None, **TORCHVISION_KWARGS.get(name, {}))
        inputs = _image(TORCHVISION_SIZES.get(name, 64))
        return randomise(model), inputs, None

    return build


def _torchvision_segmentation(name: str) -> Callable:
    def build():
        torchvision = import_torchvision()
        torch.manual_seed(0)
        builder = getattr(torchvision.models.segmentation, name)
        model = builder(weights=None, weights_backbone=None)
        inputs = _image(TORCHVISION_SEGMENTATION_SIZE)
        return randomise(model), inputs, None

    return build


def _torchvision_video(name: str) -> Callable:
    def build():
        torchvision = import_torchvision()
        torch.manual_seed(0)
        model = getattr(torchvision.models.video, name)(weights=None)
        frames, size = TORCHVISION_VIDEO[name]
        inputs = _image(size, batch=1, frames=frames)
        return randomise(model), inputs, None

    return build


def torchvision_zoo() -> dict[str, Callable]:
    """Every torchvision classification model, its segmentation models and video models."""
    torchvision = import_torchvision()
    models = torchvision.models
    zoo = {
        f"torchvision.{name}": _torchvision_classification(name)
        for name in models.list_models(module=models)
    }
    zoo |= {
        f"torchvision.{name}": _torchvision_segmentation(name)
        for name in models.list_models(module=models.segmentation)
    }
    zoo |= {
        f"torchvision.{name}": _torchvision_video(name)
        for name in models.list_models(module=models.video)
    }
    return zoo


# One small variant of each timm family, at the input size of its own pretrained_cfg.
TIMM_MODELS = """
resnet18 resnet10t resnext26ts seresnext26d_32x4d resnest14d res2net50_14w_8s regnetx_002
regnety_002 efficientnet_b0 efficientnet_lite0 tf_efficientnetv2_b0 mobilenetv2_050
mobilenetv3_small_050 mobilenetv4_conv_small mnasnet_small ghostnet_050 ghostnetv2_100
fbnetc_100 lcnet_050 tinynet_e hardcorenas_a mixnet_s densenet121 dla34 dpn48b vgg11
repvgg_a0 rexnet_100 hrnet_w18_small cspresnet50 cspdarknet53 darknet17 convnext_atto
convnextv2_atto vit_tiny_patch16_224 deit_tiny_patch16_224 deit3_small_patch16_224
beit_base_patch16_224 swin_tiny_patch4_window7_224 swinv2_cr_tiny_ns_224 cait_xxs24_224
coat_tiny crossvit_tiny_240 pit_ti_224 tnt_s_patch16_224 twins_svt_small levit_128s
mobilevit_xxs mobilevitv2_050 efficientformer_l1 efficientformerv2_s0 edgenext_xx_small
poolformer_s12 poolformerv2_s12 resmlp_12_224 gmlp_ti16_224 xcit_nano_12_p16_224 convit_tiny
sequencer2d_s nfnet_l0 regnetz_b16 inception_v4 xception41 selecsls42b ese_vovnet19b_dw
gernet_s cs3darknet_s fastvit_t8 maxvit_tiny_tf_224 davit_tiny focalnet_tiny_srf
gcvit_xxtiny mvitv2_tiny pvt_v2_b0 eva02_tiny_patch14_224 hgnetv2_b0 repghostnet_050
efficientvit_b0 efficientvit_m0 tiny_vit_5m_224 visformer_tiny inception_next_tiny
rdnet_tiny starnet_s1 mambaout_femto fasternet_t0 repvit_m0_9 skresnet18 halonet26t
mobileone_s0 hiera_tiny_224
""".split()  # noqa: SIM905 (a table, read as words)


def _timm(name: str) -> Callable:
    def build():
        timm = import_timm()
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False)
        inputs = _image(tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))[1:]))
        return randomise(model, inputs), inputs, None

    return build


def timm_zoo() -> dict[str, Callable]:
    return {f"timm.{name}": _timm(name) for name in TIMM_MODELS}
