"""Writes a Hugging Face Llama folder of a real model's shape with seeded random weights,
shard by shard: never more than one shard of weights in memory, at any size.

    .venv/bin/python benchmarks/make_llama_folder.py OUT --shape tinyllama-1.1b [--dtype bfloat16]
    .venv/bin/python benchmarks/make_llama_folder.py OUT --shape llama-8b --shard-size 5GB

The config is written as transformers 5 writes it (``rope_parameters``, ``dtype``), with
``architectures``, a sharded ``model.safetensors.index.json`` and a small word-level
tokenizer (mlx_lm.convert and the generation format need one). Weights are normal with
std 0.02, norms around 1, as a trained model's scale: the same seed gives the same folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# Shapes of real checkpoints (from their config.json).
SHAPES = {
    "tinyllama-1.1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    },
    "llama-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
    },
    "tiny-deep": {  # a test-sized model at a real model's depth
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 30,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
}


def config_for(shape: dict, dtype: str) -> dict:
    """config.json as transformers 5 writes it for LlamaForCausalLM."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape["hidden_size"],
        "intermediate_size": shape["intermediate_size"],
        "num_hidden_layers": shape["num_hidden_layers"],
        "num_attention_heads": shape["num_attention_heads"],
        "num_key_value_heads": shape["num_key_value_heads"],
        "head_dim": shape["hidden_size"] // shape["num_attention_heads"],
        "vocab_size": shape["vocab_size"],
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": shape["rope_theta"]},
        "tie_word_embeddings": shape["tie_word_embeddings"],
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "dtype": dtype,
    }


def tensor_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of LlamaForCausalLM's checkpoint, in the order save_pretrained writes."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    head_dim = config["head_dim"]
    q = config["num_attention_heads"] * head_dim
    kv = config["num_key_value_heads"] * head_dim
    shapes = [("model.embed_tokens.weight", (config["vocab_size"], hidden))]
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}"
        shapes += [
            (f"{prefix}.self_attn.q_proj.weight", (q, hidden)),
            (f"{prefix}.self_attn.k_proj.weight", (kv, hidden)),
            (f"{prefix}.self_attn.v_proj.weight", (kv, hidden)),
            (f"{prefix}.self_attn.o_proj.weight", (hidden, q)),
            (f"{prefix}.mlp.gate_proj.weight", (inner, hidden)),
            (f"{prefix}.mlp.up_proj.weight", (inner, hidden)),
            (f"{prefix}.mlp.down_proj.weight", (hidden, inner)),
            (f"{prefix}.input_layernorm.weight", (hidden,)),
            (f"{prefix}.post_attention_layernorm.weight", (hidden,)),
        ]
    shapes.append(("model.norm.weight", (hidden,)))
    if not config["tie_word_embeddings"]:
        shapes.append(("lm_head.weight", (config["vocab_size"], hidden)))
    return shapes


def random_tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...], dtype: str):
    import ml_dtypes

    if name.endswith("norm.weight"):
        values = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
    else:
        values = 0.02 * rng.standard_normal(shape, dtype=np.float32)
    return values.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))


def write_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the vocabulary: enough for loaders and greedy text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    words = ("the", "of", "and", "to", "a", "in", "is", "was", "for", "on", "that", "with")
    for index in range(3, vocab_size):
        vocab[words[index % len(words)] + (str(index) if index >= len(words) else "")] = index
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
            },
            indent=2,
        )
    )


def write_folder(out: Path, shape: dict, dtype: str, shard_bytes: int, seed: int = 0) -> Path:
    from torch2mlx.checkpoint import save_safetensors

    out.mkdir(parents=True, exist_ok=True)
    config = config_for(shape, dtype)
    rng = np.random.default_rng(seed)
    entries = tensor_shapes(config)
    itemsize = 2 if dtype in ("bfloat16", "float16") else 4
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, tensor_shape in entries:
        nbytes = int(np.prod(tensor_shape)) * itemsize
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, tensor_shape))
        size += nbytes
    weight_map = {}
    total = 0
    for index, shard in enumerate(shards):
        file = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        arrays = {name: random_tensor(rng, name, s, dtype) for name, s in shard}
        total += sum(array.nbytes for array in arrays.values())
        save_safetensors(out / file, arrays, {"format": "pt"})
        del arrays  # one shard at a time
        weight_map.update({name: file for name, _ in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2)
    )
    write_tokenizer(out, config["vocab_size"])
    return out


def parse_size(text: str) -> int:
    units = {"GB": 10**9, "MB": 10**6, "KB": 10**3}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tinyllama-1.1b")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--shard-size", default="1GB", help="bytes per shard (default 1GB)")
    parser.add_argument("--layers", type=int, help="override the shape's layer count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = dict(SHAPES[args.shape])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    write_folder(args.out, shape, args.dtype, parse_size(args.shard_size), args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
