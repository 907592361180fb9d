"""Benchmark: `torch2mlx convert-weights` on a ~1B-parameter float32 checkpoint (~4 GB),
against (a) a plain Python reference (torch.load, numpy transposes, safetensors.save_file)
and (b) `cp` of the same bytes, the floor. Each runs as its own process, side by side in
this one command; the report gives wall time, peak RSS and ratios. Run:

    .venv/bin/python benchmarks/weights/bench_convert_weights.py [--layers 20] [--shard-size 1GB]

The fixtures (a .pth and a sharded safetensors folder of the same state dict) are built
once under benchmarks/data/ (about 8 GB of disk; outputs take another 8 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "weights"

MODEL_CODE = """
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

def make(layers={layers}, dim=2048, hidden=8192, device="meta"):
    with torch.device(device):
        return nn.Sequential(
            nn.Conv2d(3, 256, 7, stride=2), nn.BatchNorm2d(256), nn.Conv2d(256, 512, 3, groups=4),
            nn.ConvTranspose2d(512, 256, 4, stride=2), nn.Embedding(32000, dim),
            *[Block(dim, hidden) for _ in range(layers)],
        )
"""

REFERENCE = """
import sys, numpy as np, torch
from safetensors.numpy import save_file
state = torch.load(sys.argv[1], weights_only=True)
out = {}
for name, tensor in state.items():
    array = tensor.numpy()
    if name.endswith("num_batches_tracked"):
        continue
    if name in ("0.weight", "2.weight"):                      # Conv2d: O,I,H,W -> O,H,W,I
        array = np.ascontiguousarray(array.transpose(0, 2, 3, 1))
    elif name == "3.weight":                                  # ConvTranspose2d: I,O,H,W -> O,H,W,I
        array = np.ascontiguousarray(array.transpose(1, 2, 3, 0))
    parts = name.split(".", 1)
    out["layers." + parts[0] + "." + parts[1]] = array
save_file(out, sys.argv[2], metadata={"format": "mlx"})
"""

HARNESS = """
import resource, subprocess, sys, time, json
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def build(layers: int) -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "bench_model.py").write_text(MODEL_CODE.replace("{layers}", str(layers)))
    pth = DATA / "model.pth"
    sharded = DATA / "sharded"
    if pth.exists() and (sharded / "model.safetensors.index.json").exists():
        return pth, sharded
    import torch

    sys.path.insert(0, str(DATA))
    import bench_model

    torch.manual_seed(0)
    model = bench_model.make(device="cpu")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    count = sum(v.numel() for v in state.values())
    print(f"building fixtures: {count / 1e9:.2f} B parameters", flush=True)
    torch.save(state, pth)
    from safetensors.torch import save_file

    sharded.mkdir(exist_ok=True)
    weight_map, shard, size, index = {}, {}, 0, 0

    def flush() -> None:
        nonlocal shard, size, index
        name = f"model-{index:05d}.safetensors"
        save_file(shard, str(sharded / name))
        weight_map.update(dict.fromkeys(shard, name))
        shard, size, index = {}, 0, index + 1

    for key, tensor in state.items():
        shard[key] = tensor
        size += tensor.numel() * tensor.element_size()
        if size > 1_000_000_000:
            flush()
    if shard:
        flush()
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return pth, sharded


def run(command: list[str]) -> dict[str, float]:
    os.sync()
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, *command], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--shard-size", default="1GB")
    args = parser.parse_args()
    pth, sharded = build(args.layers)
    out = DATA / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    size = pth.stat().st_size
    cli = str(Path(sys.executable).with_name("torch2mlx"))
    env_model = "bench_model:make"
    os.environ["PYTHONPATH"] = str(DATA)
    cases = {
        "cp (floor)": ["cp", str(pth), str(out / "copy.pth")],
        "python reference (torch.load + numpy + save_file)": [
            sys.executable, "-c", REFERENCE, str(pth), str(out / "reference.safetensors")
        ],
        "torch2mlx convert-weights .pth": [
            cli, "convert-weights", str(pth), "-o", str(out / "pth" / "model.safetensors"),
            "--model", env_model, "--shard-size", args.shard_size,
        ],
        "torch2mlx convert-weights sharded safetensors": [
            cli, "convert-weights", str(sharded), "-o", str(out / "st" / "model.safetensors"),
            "--model", env_model, "--shard-size", args.shard_size,
        ],
        "torch2mlx convert-weights .pth --dtype bfloat16": [
            cli, "convert-weights", str(pth), "-o", str(out / "bf16" / "model.safetensors"),
            "--model", env_model, "--shard-size", args.shard_size, "--dtype", "bfloat16",
        ],
    }  # fmt: skip
    for sub in ("pth", "st", "bf16"):
        (out / sub).mkdir()
    results = {name: run(command) for name, command in cases.items()}
    floor = results["cp (floor)"]["seconds"]
    reference = results["python reference (torch.load + numpy + save_file)"]["seconds"]
    print(
        f"input: {size / 1e9:.2f} GB float32, shard size {args.shard_size}, {os.cpu_count()} cores"
    )
    print(f"{'case':<52} {'seconds':>8} {'peak RSS MB':>12} {'vs cp':>7} {'vs reference':>13}")
    for name, result in results.items():
        print(
            f"{name:<52} {result['seconds']:>8.2f} {result['rss_mb']:>12.0f} "
            f"{result['seconds'] / floor:>6.2f}x {result['seconds'] / reference:>12.3f}x"
        )
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
