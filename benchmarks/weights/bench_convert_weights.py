"""Benchmark: `torch2mlx convert-weights` on a ~1B-parameter float32 checkpoint (~4 GB),
against (a) a plain Python reference (torch.load, numpy transposes, safetensors.save_file)
and (b) `cp` of the same bytes, the floor. Each runs as its own process, side by side in
this one command; the report gives wall time, peak RSS and ratios. Run:

    .venv/bin/python benchmarks/weights/bench_convert_weights.py [--layers 20] [--shard-size 1GB]
        [--repeat 3] [--only cp,pth]

Cases run in rounds, interleaved, and the report gives each case's median. Before every case
the page cache is dropped when the user may (root: /proc/sys/vm/drop_caches), so each starts
cold; otherwise the report says the cache was warm. torch2mlx makes its output durable (fsync
before the rename), cp does not, so "cp + sync" is reported too: the floor for a durable copy.

The fixtures (a .pth and a sharded safetensors folder of the same state dict) are built
once under benchmarks/data/ (about 8 GB of disk; outputs take another 8 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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

# Runs a case and reports its wall time and peak RSS; for torch2mlx also the time the CLI
# reports for the conversion proper (after torch is imported and the model is built).
HARNESS = """
import re, resource, subprocess, sys, time, json
start = time.perf_counter()
out = subprocess.run(sys.argv[1:], check=True, stdout=subprocess.PIPE, text=True).stdout
seconds = time.perf_counter() - start
engine = re.search(r" in ([0-9.]+) s$", out, re.MULTILINE)
print(json.dumps({"seconds": seconds, "engine": float(engine.group(1)) if engine else None,
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


def drop_caches() -> bool:
    """Empties the page cache so the next case reads from disk; False when not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run(command: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, *command], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--shard-size", default="1GB")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the median is reported")
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
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
        "cp + sync (durable floor)": [
            "sh", "-c", f"cp {pth} {out / 'copy-sync.pth'} && sync {out / 'copy-sync.pth'}"
        ],
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
    wanted = [part for part in args.only.split(",") if part]
    floors = ("cp (floor)", "python reference (torch.load + numpy + save_file)")
    cases = {
        name: command
        for name, command in cases.items()
        if name in floors or not wanted or any(part in name for part in wanted)
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    cold = True
    for round_index in range(args.repeat):
        for name, command in cases.items():
            cold = drop_caches() and cold
            samples[name].append(run(command))
            for stale in out.rglob("*"):
                if stale.is_file():
                    stale.unlink()
        print(f"round {round_index + 1}/{args.repeat} done", file=sys.stderr, flush=True)
    results = {
        name: {
            "seconds": statistics.median(s["seconds"] for s in runs),
            "rss_mb": max(s["rss_mb"] for s in runs),
            "spread": max(s["seconds"] for s in runs) - min(s["seconds"] for s in runs),
            "engine": statistics.median(s["engine"] for s in runs) if runs[0]["engine"] else None,
        }
        for name, runs in samples.items()
    }
    floor = results["cp (floor)"]["seconds"]
    reference = results["python reference (torch.load + numpy + save_file)"]["seconds"]
    print(
        f"input: {size / 1e9:.2f} GB float32, shard size {args.shard_size}, {os.cpu_count()} cores,"
        f" {'cold' if cold else 'WARM'} page cache, median of {args.repeat}"
    )
    header = f"{'case':<52} {'seconds':>8} {'spread':>7} {'peak RSS MB':>12} {'vs cp':>7}"
    print(f"{header} {'vs reference':>13}")
    for name, result in results.items():
        print(
            f"{name:<52} {result['seconds']:>8.2f} {result['spread']:>7.2f}"
            f" {result['rss_mb']:>12.0f} {result['seconds'] / floor:>6.2f}x"
            f" {result['seconds'] / reference:>12.3f}x"
        )
    print("\nthe conversion proper (the time the CLI reports, after torch is imported and the")
    print("model is built; the rest of each torch2mlx case is that start-up):")
    for name, result in results.items():
        if result["engine"] is not None:
            print(f"{name:<52} {result['engine']:>8.2f} {result['engine'] / floor:>6.2f}x cp")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
