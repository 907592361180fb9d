"""The README's demo: build a small vision model and a small language model with seeded
weights (Hugging Face architectures from tiny configs, no download), convert each end to end
with torch2mlx, run it in MLX, and print the verification summary and the time taken.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch

import torch2mlx


def vision_model():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[2, 2, 2, 2], num_labels=10
    )
    model = ResNetForImageClassification(config).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics, not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return "ResNet-18 layout (Hugging Face ResNet)", model, (torch.randn(2, 3, 128, 128),), None


def language_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=1000, n_positions=128, n_embd=128, n_layer=4, n_head=4)
    model = GPT2LMHeadModel(config).eval()
    tokens = torch.randint(0, 1000, (1, 24))
    sequence = torch.export.Dim("sequence", min=2, max=128)
    inputs = {"input_ids": tokens, "use_cache": False}
    dynamic = {"input_ids": {1: sequence}, "use_cache": None}
    return "GPT-2 (4 layers, dynamic sequence length)", model, inputs, dynamic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="where to write")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    for build in (vision_model, language_model):
        title, model, inputs, dynamic = build()
        out_dir = args.out / build.__name__
        params = sum(p.numel() for p in model.parameters())
        print(f"\n== {title}: {params / 1e6:.2f}M parameters -> {out_dir}")
        start = time.perf_counter()
        result = torch2mlx.convert(model, inputs, out_dir, dynamic_shapes=dynamic, quiet=True)
        seconds = time.perf_counter() - start
        print(
            f"converted and verified in {seconds:.2f} s "
            f"(model.py: {len(result.model_py.read_text().splitlines())} lines, "
            f"{result.config['layout_transposes']} layout transposes)"
        )
        print("\n".join(result.summary))
        # The package runs with MLX alone: load it and time a forward pass.
        mlx_model = torch2mlx.load(out_dir)
        if isinstance(inputs, dict):
            longer = torch.randint(0, 1000, (1, 40))
            mlx_in = (mx.array(longer.numpy()),)
            with torch.no_grad():
                reference = model(input_ids=longer, use_cache=False).logits.numpy()
        else:
            mlx_in = tuple(mx.array(t.numpy()) for t in inputs)
            with torch.no_grad():
                reference = model(*inputs).logits.numpy()
        start = time.perf_counter()
        output = mlx_model(*mlx_in)
        mx.eval(output)
        mlx_seconds = time.perf_counter() - start
        got = np.array(output["logits"])
        print(
            f"MLX forward on {tuple(mlx_in[0].shape)}: {mlx_seconds * 1000:.1f} ms, "
            f"max abs error vs torch {np.abs(got - reference).max():.2e}"
        )
        if not result.passed:
            raise SystemExit(f"{title}: MLX does not match torch; see {out_dir}/report.json")
    print(f"\npackages written to {args.out}/ (open model.py to read the generated MLX code)")


if __name__ == "__main__":
    main()
