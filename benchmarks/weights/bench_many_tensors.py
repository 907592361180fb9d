"""Benchmark: `torch2mlx convert-weights` and `torch2mlx inspect` on checkpoints of many tiny
tensors, as mixture-of-experts checkpoints hold tens of thousands of them. Each checkpoint
holds N one-element float32 tensors (N = 10k, 20k, 40k, 80k by default), the weight and bias
of N / 2 `nn.Linear(1, 1)` experts, written in three forms: one safetensors file, a
torch.save `.pt`, and a Hugging Face folder of 8 safetensors shards with its index (converted
to 8 output shards, so the shard writer and the index writer are timed too). Run:

    .venv/bin/python benchmarks/weights/bench_many_tensors.py [--sizes 10000,20000,40000,80000]
        [--repeat 3]

Every case is its own `torch2mlx` process; the report gives, per N, the median wall time, the
CPU time (user + system of all threads: on a busy machine other processes stretch the wall
time, not this), and for convert-weights the time the CLI reports for the conversion proper
(after torch is imported and the `--model` factory has built the model, which is most of the
wall time and grows linearly on its own). The last column is the ratio of the largest N to
the one before: 2.0 is linear in the number of tensors, a quadratic step shows as 4. It is a
measurement, not a test: nothing is asserted. The fixtures are written into a temporary
folder and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARDS = 8

# The --model factory: N / 2 experts on the meta device whose weight and bias are the
# checkpoint's tensors. nn.Linear initialises its parameters even on the meta device, which
# costs more per module than converting its tensors; that is torch's time, not torch2mlx's,
# so the initialisation is skipped.
MODEL_CODE = """
import os
from unittest import mock

from torch import nn

def make():
    experts = int(os.environ["BENCH_TENSORS"]) // 2
    with mock.patch.object(nn.Linear, "reset_parameters", lambda self: None):
        model = nn.Module()
        model.experts = nn.ModuleList(nn.Linear(1, 1, device="meta") for _ in range(experts))
    return model
"""


def write_fixtures(folder: Path, count: int) -> dict[str, Path]:
    """The checkpoint of `count` one-element tensors as safetensors, .pt and a sharded folder."""
    import numpy as np
    import torch

    from torch2mlx import save_safetensors

    arrays = {}
    for expert in range(count // 2):
        arrays[f"experts.{expert}.weight"] = np.full((1, 1), expert, dtype=np.float32)
        arrays[f"experts.{expert}.bias"] = np.full((1,), expert, dtype=np.float32)
    paths = {"safetensors": folder / "model.safetensors", "pt": folder / "model.pt"}
    save_safetensors(paths["safetensors"], arrays)
    torch.save({name: torch.from_numpy(array) for name, array in arrays.items()}, paths["pt"])

    sharded = folder / "sharded"
    sharded.mkdir()
    names = list(arrays)
    weight_map = {}
    for shard in range(SHARDS):
        file = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        part = names[shard * len(names) // SHARDS : (shard + 1) * len(names) // SHARDS]
        save_safetensors(sharded / file, {name: arrays[name] for name in part})
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": 4 * count}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    paths["sharded folder"] = sharded
    return paths


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float | None]:
    """Wall time of a command, its CPU time (user + system, all threads), and the conversion
    time convert-weights reports ("in X s")."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        command, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env, cwd=cwd,
    ).stdout  # fmt: skip
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    engine = re.search(r" in ([0-9.]+) s$", out, re.MULTILINE)
    return seconds, cpu, float(engine.group(1)) if engine else None


def cases(cli: str, paths: dict[str, Path], out: Path, count: int) -> dict[str, list[str]]:
    model = ["--model", "many_tensors_model:make"]
    shard_size = str(4 * count // SHARDS)  # bytes: 8 output shards of one-element float32
    return {
        "convert-weights .safetensors --model": [
            cli, "convert-weights", str(paths["safetensors"]), "-o",
            str(out / "st" / "model.safetensors"), *model,
        ],
        "convert-weights .pt --model": [
            cli, "convert-weights", str(paths["pt"]), "-o", str(out / "pt" / "model.safetensors"),
            *model,
        ],
        "convert-weights sharded folder --model --shard-size": [
            cli, "convert-weights", str(paths["sharded folder"]), "-o",
            str(out / "sharded" / "model.safetensors"), *model, "--shard-size", shard_size,
        ],
        "inspect .safetensors": [cli, "inspect", str(paths["safetensors"])],
        "inspect .pt": [cli, "inspect", str(paths["pt"])],
        "inspect sharded folder": [cli, "inspect", str(paths["sharded folder"])],
    }  # fmt: skip


def measure(count: int, repeat: int) -> dict[str, list[float | None]]:
    """Median wall, CPU and conversion times of every case on a checkpoint of `count` tensors."""
    cli = str(Path(sys.executable).with_name("torch2mlx"))
    with tempfile.TemporaryDirectory(prefix="bench_many_tensors-") as name:
        folder = Path(name)
        (folder / "many_tensors_model.py").write_text(MODEL_CODE)
        paths = write_fixtures(folder, count)
        out = folder / "out"
        env = {**os.environ, "BENCH_TENSORS": str(count), "PYTHONPATH": str(folder)}
        results = {}
        for case, command in cases(cli, paths, out, count).items():
            samples = []
            for _ in range(repeat):
                samples.append(run(command, env, folder))
                for stale in out.rglob("*"):
                    if stale.is_file():
                        stale.unlink()
            results[case] = [
                None if sample[0] is None else statistics.median(sample)
                for sample in zip(*samples, strict=True)
            ]
        print(f"{count} tensors done", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,20000,40000,80000", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median counts")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {count: measure(count, args.repeat) for count in sizes}

    last, before = sizes[-1], sizes[-2] if len(sizes) > 1 else sizes[-1]
    print(f"{os.cpu_count()} cores, median of {args.repeat}; seconds per number of tensors")
    header = "".join(f"{count:>10}" for count in sizes)
    print(f"{'case':<56}{header}  {last}/{before}")
    rows = ("wall", "CPU (user + system)", "conversion proper (wall, as the CLI reports it)")
    for case in results[sizes[0]]:
        print(case)
        for column, label in enumerate(rows):
            times = [results[count][case][column] for count in sizes]
            if None in times:
                continue
            row = "".join(f"{t:>10.2f}" for t in times)
            ratio = times[-1] / times[-2] if len(times) > 1 else 1.0
            print(f"  {label:<54}{row}  {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
