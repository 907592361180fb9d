"""The README's demo: build two small models with seeded weights, save them the way training
scripts do, and convert their checkpoints to MLX safetensors with torch2mlx.

Until the weight converter and forward translation land, "convert" means: read the torch
checkpoint without running any code from it, write MLX-loadable safetensors, and prove that
MLX reads back exactly the bytes torch saved.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch
from torch import nn

import torch2mlx


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def small_language_model() -> nn.Module:
    class TinyLM(nn.Module):
        def __init__(self, vocab: int = 1000, dim: int = 64) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(dim, vocab, bias=False)
            self.head.weight = self.embed.weight  # tied, as in GPT-2

    return TinyLM()


def convert(source: Path, destination: Path) -> None:
    info = torch2mlx.inspect_checkpoint(source)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch2mlx.CheckpointWarning)
        weights = torch2mlx.load_state_dict(source)
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    torch2mlx.save_safetensors(destination, weights, {"format": "mlx", "source": source.name})
    write_seconds = time.perf_counter() - start

    reference = torch.load(source, weights_only=True)
    reference = reference.get("state_dict", reference)
    loaded = mx.load(str(destination))
    identical = all(
        np.array_equal(np.asarray(loaded[name]), tensor.numpy())
        for name, tensor in reference.items()
    )
    print(
        f"  {source.name}: {info.format}, {len(info.tensors)} tensors, {info.total_bytes:,} bytes"
    )
    for tensor in info.tensors[:4]:
        print(f"    {tensor.name:<40} {tensor.dtype:<8} {tuple(tensor.shape)}")
    if len(info.tensors) > 4:
        print(f"    ... and {len(info.tensors) - 4} more")
    for warning in caught:
        print(f"  reported, not converted: {str(warning.message).split(': ', 1)[1]}")
    print(
        f"  -> {destination} in {1000 * (read_seconds + write_seconds):.1f} ms "
        f"(read {1000 * read_seconds:.1f} ms, write {1000 * write_seconds:.1f} ms); "
        f"MLX reads back {len(loaded)} arrays, bit-identical to torch: {identical}"
    )
    if not identical:
        raise SystemExit("demo: MLX output differs from torch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    print("torch2mlx demo: torch checkpoints -> MLX safetensors, read without running pickle code")
    cnn = small_cnn()
    optimizer = torch.optim.SGD(cnn.parameters(), lr=0.1, momentum=0.9)
    cnn(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    cnn_checkpoint = args.out / "cnn_training.pth"
    torch.save(
        {"state_dict": cnn.state_dict(), "epoch": 3, "optimizer": optimizer.state_dict()},
        cnn_checkpoint,
    )
    print("\nvision model (training checkpoint: weights, epoch, optimizer state):")
    convert(cnn_checkpoint, args.out / "cnn.safetensors")

    language_model = small_language_model()
    lm_checkpoint = args.out / "tiny_lm.pth"
    torch.save(language_model.state_dict(), lm_checkpoint)
    print("\nlanguage model (state dict with tied embedding and head):")
    convert(lm_checkpoint, args.out / "tiny_lm.safetensors")
    print("\nLayouts are copied as torch stores them; module-aware layout rules come with the")
    print("weight converter. Try: .venv/bin/torch2mlx inspect", lm_checkpoint)


if __name__ == "__main__":
    main()
