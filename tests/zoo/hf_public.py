"""Public Hugging Face architectures of the zoo, built offline from tiny configs.

``HF_PUBLIC`` maps a name (``"hf.bert"``...) to a zero-argument factory returning
``(model.eval(), example_inputs, None)``, the inputs a dict of keyword arguments. The
table ``_ARCHITECTURES`` says, for each architecture, its modality, its model class (a
name in ``transformers`` or a dotted path) and the config overrides that make it tiny
(widths 16-128, 1-3 blocks per stage, 1-8 heads, vocab 128); the config class is the model
class's own ``config_class``. Weights are random and seeded; parameters and BatchNorm
statistics that initialise to a constant are randomised, so that none can hide an error.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch

from .vision_public import randomise

VOCAB = 128
TEXT_BATCH, TEXT_LENGTH = 2, 12
AUDIO_SAMPLES = 4000


class _Arch(NamedTuple):
    modality: str  # text, causal, vision, audio, audio_features, audio_spectrogram
    model: str  # a class of transformers' top level, or a dotted path to one
    config: dict


# Shared shapes of the tiny configs.
_BERT = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
_DECODER = {**_BERT, "num_key_value_heads": 2, "pad_token_id": 0}
_VIT = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
# Swin and Swinv2: two stages of 4x4 windows over 32x32 images.
_WINDOWS = {
    "image_size": 32,
    "patch_size": 4,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [2, 4],
    "window_size": 4,
}
_STAGES = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}
_WAV2VEC2 = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": (32,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
_BART = {
    "vocab_size": VOCAB,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "max_position_embeddings": 64,
}
_T5 = {
    "vocab_size": VOCAB,
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
}
_CLIP_TEXT = {**_BERT, "max_position_embeddings": 16}
_CLIP_VISION = dict(_VIT)

_ARCHITECTURES: dict[str, _Arch] = {
    # Text encoders.
    "bert": _Arch("text", "BertModel", _BERT),
    "roberta": _Arch("text", "RobertaModel", _BERT),
    "xlm_roberta": _Arch("text", "XLMRobertaModel", _BERT),
    "camembert": _Arch("text", "CamembertModel", _BERT),
    "data2vec_text": _Arch("text", "Data2VecTextModel", _BERT),
    "electra": _Arch("text", "ElectraModel", {**_BERT, "embedding_size": 32}),
    "albert": _Arch("text", "AlbertModel", {**_BERT, "embedding_size": 32}),
    "distilbert": _Arch(
        "text",
        "DistilBertModel",
        {
            "vocab_size": VOCAB,
            "dim": 64,
            "n_layers": 2,
            "n_heads": 4,
            "hidden_dim": 128,
            "max_position_embeddings": 64,
        },
    ),
    "deberta": _Arch(
        "text",
        "DebertaModel",
        {
            **_BERT,
            "relative_attention": True,
            "pos_att_type": ["c2p", "p2c"],
            "max_relative_positions": 16,
        },
    ),
    "deberta_v2": _Arch(
        "text",
        "DebertaV2Model",
        {
            **_BERT,
            "relative_attention": True,
            "pos_att_type": ["c2p", "p2c"],
            "position_buckets": 8,
            "max_relative_positions": 16,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "position_biased_input": False,
        },
    ),
    "mpnet": _Arch("text", "MPNetModel", _BERT),
    "mobilebert": _Arch(
        "text",
        "MobileBertModel",
        {
            **_BERT,
            "embedding_size": 32,
            "intra_bottleneck_size": 32,
            "true_hidden_size": 32,
            "num_feedforward_networks": 2,
        },
    ),
    "funnel": _Arch(
        "text",
        "FunnelBaseModel",
        {
            "vocab_size": VOCAB,
            "block_sizes": [1, 1],
            "d_model": 64,
            "n_head": 4,
            "d_head": 16,
            "d_inner": 128,
        },
    ),
    "roformer": _Arch("text", "RoFormerModel", {**_BERT, "embedding_size": 64}),
    "convbert": _Arch("text", "ConvBertModel", {**_BERT, "embedding_size": 64}),
    "squeezebert": _Arch(
        "text", "SqueezeBertModel", {**_BERT, "embedding_size": 64, "q_groups": 2}
    ),
    "ernie": _Arch("text", "ErnieModel", _BERT),
    "megatron_bert": _Arch("text", "MegatronBertModel", _BERT),
    "layoutlm": _Arch("text", "LayoutLMModel", {**_BERT, "max_2d_position_embeddings": 64}),
    "esm": _Arch("text", "EsmModel", {**_BERT, "pad_token_id": 1}),
    "modernbert": _Arch(
        "text",
        "ModernBertModel",
        {**_BERT, "global_attn_every_n_layers": 2, "local_attention": 8, "pad_token_id": 0},
    ),
    # Encoders of encoder-decoder models.
    "t5_encoder": _Arch("text", "T5EncoderModel", _T5),
    "mt5_encoder": _Arch("text", "MT5EncoderModel", _T5),
    "umt5_encoder": _Arch("text", "UMT5EncoderModel", _T5),
    "bart_encoder": _Arch("text", "transformers.models.bart.modeling_bart.BartEncoder", _BART),
    "mbart_encoder": _Arch("text", "transformers.models.mbart.modeling_mbart.MBartEncoder", _BART),
    # Decoder-only language models.
    "gpt2": _Arch(
        "causal",
        "GPT2LMHeadModel",
        {"vocab_size": VOCAB, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4},
    ),
    "gpt_neo": _Arch(
        "causal",
        "GPTNeoForCausalLM",
        {
            "vocab_size": VOCAB,
            "max_position_embeddings": 64,
            "hidden_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "attention_types": [[["global", "local"], 1]],
            "window_size": 8,
        },
    ),
    "gptj": _Arch(
        "causal",
        "GPTJForCausalLM",
        {
            "vocab_size": VOCAB,
            "n_positions": 64,
            "n_embd": 64,
            "n_layer": 2,
            "n_head": 4,
            "rotary_dim": 8,
        },
    ),
    "gpt_neox": _Arch("causal", "GPTNeoXForCausalLM", _BERT),
    "opt": _Arch(
        "causal",
        "OPTForCausalLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "ffn_dim": 128,
            "num_attention_heads": 4,
            "word_embed_proj_dim": 64,
            "max_position_embeddings": 64,
        },
    ),
    "bloom": _Arch(
        "causal",
        "BloomForCausalLM",
        {"vocab_size": VOCAB, "hidden_size": 64, "n_layer": 2, "n_head": 4},
    ),
    "llama": _Arch("causal", "LlamaForCausalLM", _DECODER),
    "mistral": _Arch("causal", "MistralForCausalLM", {**_DECODER, "sliding_window": 8}),
    "mixtral": _Arch(
        "causal",
        "MixtralForCausalLM",
        {**_DECODER, "num_local_experts": 4, "num_experts_per_tok": 2},
    ),
    "qwen2": _Arch("causal", "Qwen2ForCausalLM", _DECODER),
    "qwen3": _Arch("causal", "Qwen3ForCausalLM", {**_DECODER, "head_dim": 16}),
    "gemma": _Arch("causal", "GemmaForCausalLM", {**_DECODER, "head_dim": 16}),
    "gemma2": _Arch(
        "causal",
        "Gemma2ForCausalLM",
        {**_DECODER, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    ),
    "gemma3_text": _Arch(
        "causal",
        "Gemma3ForCausalLM",
        {**_DECODER, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    ),
    "phi": _Arch("causal", "PhiForCausalLM", _DECODER),
    "phi3": _Arch("causal", "Phi3ForCausalLM", _DECODER),
    "falcon": _Arch(
        "causal",
        "FalconForCausalLM",
        {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    ),
    "stablelm": _Arch("causal", "StableLmForCausalLM", _DECODER),
    "starcoder2": _Arch("causal", "Starcoder2ForCausalLM", {**_DECODER, "sliding_window": 8}),
    "olmo": _Arch("causal", "OlmoForCausalLM", _DECODER),
    "olmo2": _Arch("causal", "Olmo2ForCausalLM", _DECODER),
    "granite": _Arch("causal", "GraniteForCausalLM", _DECODER),
    "cohere": _Arch("causal", "CohereForCausalLM", _DECODER),
    "glm": _Arch("causal", "GlmForCausalLM", {**_DECODER, "head_dim": 16}),
    "helium": _Arch("causal", "HeliumForCausalLM", {**_DECODER, "head_dim": 16}),
    "smollm3": _Arch("causal", "SmolLM3ForCausalLM", _DECODER),
    # Vision.
    "vit": _Arch("vision", "ViTModel", _VIT),
    "deit": _Arch("vision", "DeiTModel", _VIT),
    "vit_msn": _Arch("vision", "ViTMSNModel", _VIT),
    "ijepa": _Arch("vision", "IJepaModel", _VIT),
    "beit": _Arch("vision", "BeitModel", {**_VIT, "use_relative_position_bias": True}),
    "data2vec_vision": _Arch(
        "vision", "Data2VecVisionModel", {**_VIT, "use_relative_position_bias": True}
    ),
    "dinov2": _Arch("vision", "Dinov2Model", _VIT),
    "yolos": _Arch(
        "vision", "YolosModel", {**_VIT, "image_size": [32, 32], "num_detection_tokens": 4}
    ),
    "convnext": _Arch("vision", "ConvNextModel", _STAGES),
    "convnextv2": _Arch("vision", "ConvNextV2Model", _STAGES),
    "resnet": _Arch("vision", "ResNetModel", {**_STAGES, "embedding_size": 16}),
    "regnet": _Arch("vision", "RegNetModel", {**_STAGES, "embedding_size": 16, "groups_width": 8}),
    "bit": _Arch("vision", "BitModel", {**_STAGES, "embedding_size": 16, "num_groups": 4}),
    "swin": _Arch(
        "vision",
        "SwinModel",
        _WINDOWS,
    ),
    "swinv2": _Arch(
        "vision",
        "Swinv2Model",
        _WINDOWS,
    ),
    "focalnet": _Arch(
        "vision",
        "FocalNetModel",
        {
            "image_size": 32,
            "embed_dim": 16,
            "hidden_sizes": [32, 64],
            "depths": [1, 1],
            "focal_levels": [2, 2],
            "focal_windows": [3, 3],
        },
    ),
    "mobilevit": _Arch(
        "vision",
        "MobileViTModel",
        {
            "image_size": 64,
            "hidden_sizes": [32, 48, 64],
            "neck_hidden_sizes": [8, 16, 24, 32, 40, 48, 96],
        },
    ),
    "mobilevitv2": _Arch(
        "vision",
        "MobileViTV2Model",
        {"image_size": 64, "width_multiplier": 0.25, "n_attn_blocks": [1, 1, 1]},
    ),
    "mobilenet_v1": _Arch(
        "vision", "MobileNetV1Model", {"image_size": 64, "depth_multiplier": 0.25}
    ),
    "mobilenet_v2": _Arch(
        "vision", "MobileNetV2Model", {"image_size": 64, "depth_multiplier": 0.25}
    ),
    "efficientnet": _Arch(
        "vision",
        "EfficientNetModel",
        {
            "image_size": 64,
            "width_coefficient": 0.25,
            "depth_coefficient": 0.1,
            "hidden_dim": 320,
        },
    ),
    "levit": _Arch(
        "vision",
        "LevitModel",
        {
            "image_size": 64,
            "hidden_sizes": [32, 48, 64],
            "num_attention_heads": [2, 3, 4],
            "depths": [1, 1, 1],
            "key_dim": [8, 8, 8],
        },
    ),
    "poolformer": _Arch("vision", "PoolFormerModel", _STAGES),
    "segformer": _Arch(
        "vision",
        "SegformerModel",
        {**_STAGES, "num_attention_heads": [1, 2, 4, 8], "decoder_hidden_size": 32},
    ),
    "pvt_v2": _Arch("vision", "PvtV2Model", {**_STAGES, "num_attention_heads": [1, 2, 4, 8]}),
    "glpn": _Arch(
        "vision",
        "GLPNModel",
        {**_STAGES, "num_attention_heads": [1, 2, 4, 8], "decoder_hidden_size": 16},
    ),
    "cvt": _Arch(
        "vision",
        "CvtModel",
        {"embed_dim": [16, 32, 64], "num_heads": [1, 2, 4], "depth": [1, 2, 3]},
    ),
    "hiera": _Arch(
        "vision",
        "HieraModel",
        {
            "image_size": [64, 64],
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 2, 4, 8],
            "masked_unit_size": [8, 8],
        },
    ),
    "swiftformer": _Arch(
        "vision",
        "SwiftFormerModel",
        {"image_size": 64, "depths": [1, 1, 1, 1], "embed_dims": [16, 32, 48, 64]},
    ),
    "textnet": _Arch(
        "vision",
        "TextNetModel",
        {"image_size": [64, 64], "stem_out_channels": 16, "hidden_sizes": [16, 16, 32, 32, 64]},
    ),
    # Audio.
    "wav2vec2": _Arch("audio", "Wav2Vec2Model", _WAV2VEC2),
    "wav2vec2_stable": _Arch(
        "audio",
        "Wav2Vec2Model",
        {**_WAV2VEC2, "do_stable_layer_norm": True, "feat_extract_norm": "layer"},
    ),
    "hubert": _Arch("audio", "HubertModel", _WAV2VEC2),
    "wavlm": _Arch("audio", "WavLMModel", {**_WAV2VEC2, "num_buckets": 32}),
    "data2vec_audio": _Arch("audio", "Data2VecAudioModel", _WAV2VEC2),
    "unispeech": _Arch("audio", "UniSpeechModel", _WAV2VEC2),
    "sew": _Arch("audio", "SEWModel", {**_WAV2VEC2, "conv_dim": (32,) * 13, "squeeze_factor": 2}),
    "wav2vec2_conformer": _Arch(
        "audio", "Wav2Vec2ConformerModel", {**_WAV2VEC2, "conv_depthwise_kernel_size": 7}
    ),
    "whisper_encoder": _Arch(
        "audio_features",
        "transformers.models.whisper.modeling_whisper.WhisperEncoder",
        {
            "d_model": 64,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 128,
            "num_mel_bins": 16,
            "max_source_positions": 32,
        },
    ),
    "ast": _Arch(
        "audio_spectrogram",
        "ASTModel",
        {
            **_VIT,
            "patch_size": 16,
            "num_mel_bins": 32,
            "max_length": 32,
            "frequency_stride": 8,
            "time_stride": 8,
        },
    ),
    # Halves of multimodal models.
    "clip_vision": _Arch("vision", "CLIPVisionModel", _CLIP_VISION),
    "clip_text": _Arch("text", "CLIPTextModel", _CLIP_TEXT),
    "siglip_vision": _Arch("vision", "SiglipVisionModel", _CLIP_VISION),
    "siglip_text": _Arch("text", "SiglipTextModel", _CLIP_TEXT),
    "chinese_clip_vision": _Arch("vision", "ChineseCLIPVisionModel", _CLIP_VISION),
    "blip_vision": _Arch("vision", "BlipVisionModel", _CLIP_VISION),
    "blip2_vision": _Arch("vision", "Blip2VisionModel", _CLIP_VISION),
    "owlvit_vision": _Arch("vision", "OwlViTVisionModel", _CLIP_VISION),
    "owlvit_text": _Arch("text", "OwlViTTextModel", _CLIP_TEXT),
}


def _transformers():
    return importlib.import_module("transformers")


def _model_class(name: str) -> type:
    transformers = _transformers()
    if "." in name:
        module, _, attribute = name.rpartition(".")
        return getattr(importlib.import_module(module), attribute)
    return getattr(transformers, name)


def _text_inputs(config) -> dict:
    generator = torch.Generator().manual_seed(1)
    vocab = min(getattr(config, "vocab_size", VOCAB) or VOCAB, VOCAB)
    ids = torch.randint(0, vocab, (TEXT_BATCH, TEXT_LENGTH), generator=generator)
    mask = torch.ones(TEXT_BATCH, TEXT_LENGTH, dtype=torch.long)
    mask[-1, TEXT_LENGTH - 3 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _inputs(modality: str, config, overrides: dict) -> dict:
    generator = torch.Generator().manual_seed(2)
    if modality == "text":
        return _text_inputs(config)
    if modality == "causal":
        return {**_text_inputs(config), "use_cache": False}
    if modality == "vision":
        size = overrides.get("image_size", 64)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"pixel_values": torch.randn(1, 3, size, size, generator=generator)}
    if modality == "audio":
        return {"input_values": torch.randn(1, AUDIO_SAMPLES, generator=generator)}
    if modality == "audio_features":
        frames = 2 * config.max_source_positions
        features = torch.randn(1, config.num_mel_bins, frames, generator=generator)
        return {"input_features": features}
    if modality == "audio_spectrogram":
        shape = (1, config.max_length, config.num_mel_bins)
        return {"input_values": torch.randn(*shape, generator=generator)}
    raise ValueError(f"unknown modality {modality!r}")


def build(name: str) -> tuple:
    """The model named ``name`` (a key of ``_ARCHITECTURES``), its inputs and None."""
    arch = _ARCHITECTURES[name]
    torch.manual_seed(0)
    model_class = _model_class(arch.model)
    config = model_class.config_class(**arch.config)
    model = model_class(config).eval()
    randomise(model)
    return model, _inputs(arch.modality, config, arch.config), None


HF_PUBLIC: dict[str, Callable[[], tuple]] = {
    f"hf.{name}": partial(build, name) for name in _ARCHITECTURES
}
