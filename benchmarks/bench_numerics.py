"""Benchmark: the core's cast and quantize against torch's `.to()` and `mx.quantize`.

Casts 256M float32 values to bfloat16 (torch2mlx vs torch `.to(torch.bfloat16)`, also with
torch on one thread, and MLX's `astype`) and quantizes an [8192, 8192] float32 matrix to 4
bits, group size 64 (torch2mlx vs `mx.quantize` on the CPU). Everything runs in this one
process on the same inputs; the report gives the median of `--repeat` runs and the ratio of
each baseline's time to ours (above 1: we are faster). Outputs are checked bit for bit.
The core runs on one thread. Run:

    .venv/bin/python benchmarks/bench_numerics.py [--repeat 5] [--count 268435456] [--size 8192]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
import torch

from torch2mlx.numerics import cast, quantize


def median_seconds(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        del result
    return statistics.median(times)


def report(title: str, ours: float, baselines: dict[str, float], items: int) -> None:
    print(f"\n{title}")
    print(f"  {'torch2mlx core':<34} {ours:8.3f} s  {items / ours / 1e9:6.2f} G elements/s")
    for name, seconds in baselines.items():
        print(f"  {name:<34} {seconds:8.3f} s  ratio {seconds / ours:5.2f}x")


def bench_cast(count: int, repeat: int) -> None:
    values = np.random.default_rng(0).standard_normal(count, dtype=np.float32)
    tensor = torch.from_numpy(values)  # shares the buffer
    ours = cast(values, "bfloat16")
    theirs = tensor.to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(ours.view(np.uint16), theirs.view(np.uint16)), "cast differs from torch"
    del ours, theirs

    ours_seconds = median_seconds(lambda: cast(values, "bfloat16"), repeat)
    threads = torch.get_num_threads()
    baselines = {
        f"torch .to(bfloat16), {threads} threads": median_seconds(
            lambda: tensor.to(torch.bfloat16), repeat
        )
    }
    torch.set_num_threads(1)
    baselines["torch .to(bfloat16), 1 thread"] = median_seconds(
        lambda: tensor.to(torch.bfloat16), repeat
    )
    torch.set_num_threads(threads)
    source = mx.array(values)
    mx.eval(source)

    def mlx_cast() -> mx.array:
        result = source.astype(mx.bfloat16)
        mx.eval(result)
        return result

    baselines["mlx astype(bfloat16)"] = median_seconds(mlx_cast, repeat)
    report(f"cast {count:,} float32 -> bfloat16", ours_seconds, baselines, count)


def bench_quantize(size: int, repeat: int) -> None:
    values = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    source = mx.array(values)
    mx.eval(source)

    def mlx_quantize() -> list[mx.array]:
        result = mx.quantize(source, group_size=64, bits=4)
        mx.eval(result)
        return result

    for ours, theirs in zip(quantize(values, 4, 64), mlx_quantize(), strict=True):
        assert np.array_equal(ours, np.asarray(theirs)), "quantize differs from mx.quantize"

    ours_seconds = median_seconds(lambda: quantize(values, 4, 64), repeat)
    baselines = {"mx.quantize (CPU)": median_seconds(mlx_quantize, repeat)}
    report(f"quantize [{size}, {size}] float32, 4 bits, group 64", ours_seconds, baselines, size**2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--count", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--size", type=int, default=8192)
    args = parser.parse_args()
    mx.set_default_device(mx.cpu)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), mlx {mx.__version__}")
    bench_cast(args.count, args.repeat)
    bench_quantize(args.size, args.repeat)


if __name__ == "__main__":
    main()
