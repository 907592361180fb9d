"""Benchmark: reading the header of a safetensors file with many tensors.

Writes (once, under benchmarks/data/headers/) safetensors files of 10k, 100k and 1M tiny
tensors (shape [1] float32, so the files are mostly header: 0.8, 8.3 and 86 MB) with the
`safetensors` package, then times, alternately in one process with a warm page cache,
`torch2mlx.inspect_checkpoint` (names, dtypes, shapes and sizes as Python objects) against
`safetensors.safe_open(...).keys()` (the reference implementation's header parse, names
only). Prints a markdown table of medians and their ratio. Run:

    .venv/bin/python benchmarks/bench_safetensors_header.py [--repeat 5] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

import torch2mlx

DATA = Path(__file__).resolve().parent / "data" / "headers"


def fixture(count: int) -> Path:
    """A safetensors file of `count` float32 tensors of shape [1], written once."""
    path = DATA / f"tiny_{count}.safetensors"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        one = np.zeros(1, np.float32)
        save_file({f"layers.{i}.weight": one for i in range(count)}, str(path))
    return path


def read_torch2mlx(path: Path) -> int:
    return len(torch2mlx.inspect_checkpoint(path).tensors)


def read_safetensors(path: Path) -> int:
    with safe_open(str(path), framework="numpy") as file:
        return len(file.keys())


def seconds(read: Callable[[Path], int], path: Path, count: int) -> float:
    start = time.perf_counter()
    found = read(path)
    elapsed = time.perf_counter() - start
    if found != count:
        raise SystemExit(f"{read.__name__} found {found} tensors in {path}, expected {count}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    counts = [int(size) for size in args.sizes.split(",")]
    print(f"{args.repeat} runs each, alternating, warm page cache; medians\n")
    print(
        "| tensors | header MB | torch2mlx.inspect_checkpoint s | safe_open(...).keys() s | ratio |"
    )
    print("|---:|---:|---:|---:|---:|")
    for count in counts:
        path = fixture(count)
        with path.open("rb") as file:
            header_mb = int.from_bytes(file.read(8), "little") / 1e6
        # One untimed round each, so that neither pays for the first read of the file.
        seconds(read_torch2mlx, path, count)
        seconds(read_safetensors, path, count)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.repeat):
            ours.append(seconds(read_torch2mlx, path, count))
            theirs.append(seconds(read_safetensors, path, count))
        mine, reference = statistics.median(ours), statistics.median(theirs)
        print(
            f"| {count:,} | {header_mb:.1f} | {mine:.4f} | {reference:.4f} "
            f"| {mine / reference:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
