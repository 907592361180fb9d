"""Hugging Face models of the zoo, built offline from tiny configs with seeded weights.

Each factory returns (model, example_inputs, dynamic_shapes or None).
"""

from __future__ import annotations

import torch


def _seeded(factory):
    def build():
        torch.manual_seed(0)
        model = factory()
        return model

    build.__name__ = factory.__name__
    return build


def sharp_attention(model):
    """Query and key weights of std 0.5, as a trained model's attention is sharp: with
    std 0.02 every position gets about the same weight, so positions (and a rope theta)
    hardly matter and a wrong one would go unseen."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "attn.c_attn.weight")):
                parameter.normal_(0, 0.5)
    return model.eval()


def _text_inputs(vocab: int, batch: int = 2, length: int = 12) -> dict:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length - 3 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


@_seeded
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(config).eval()
    inputs = _text_inputs(128)
    inputs["use_cache"] = False
    return model, inputs, None


@_seeded
def bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    return BertModel(config).eval(), _text_inputs(128), None


@_seeded
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    inputs = _text_inputs(128)
    inputs["use_cache"] = False
    return model, inputs, None


@_seeded
def vit():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=5,
    )
    return ViTForImageClassification(config).eval(), (torch.randn(2, 3, 32, 32),), None


@_seeded
def resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=5
    )
    model = ResNetForImageClassification(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model, (torch.randn(2, 3, 64, 64),), None


@_seeded
def convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=5)
    return ConvNextForImageClassification(config).eval(), (torch.randn(2, 3, 64, 64),), None


HF_ZOO = [gpt2, bert, llama, vit, resnet, convnext]
