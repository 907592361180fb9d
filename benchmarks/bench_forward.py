"""Forward-pass speed of generated MLX packages against torch eager, side by side.

    .venv/bin/python benchmarks/bench_forward.py [--repeat 20] [--models resnet18 vit gpt]

For each zoo model: the time `torch2mlx.convert` takes (capture, code generation, weights,
verification), then the median latency of torch eager (no_grad) and of the MLX package on
the same inputs after warm-up, and their ratio; then the same package under `mx.compile`,
which fuses elementwise ops into generated kernels (on the CPU it needs a C++ compiler at
run time). Both run on the CPU here (MLX's CPU backend on Linux); on a Mac the MLX side
runs on Metal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlx.core as mx
import torch
from mlx.utils import tree_flatten

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.zoo import models  # noqa: E402

import torch2mlx  # noqa: E402


def median_seconds(run, repeat: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_torch(model, inputs) -> None:
    with torch.no_grad():
        model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", nargs="*", default=["resnet18", "mobilenet", "vit", "gpt"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    header = f"{'model':<12} {'convert s':>10} {'torch ms':>10} {'mlx ms':>10} {'torch/mlx':>10}"
    print(f"{header} {'compiled ms':>12} {'torch/compiled':>15}")
    for name in args.models:
        model, inputs, dynamic = getattr(models, name)()
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            torch2mlx.convert(
                model, inputs, Path(scratch) / "pkg", dynamic_shapes=dynamic, quiet=True
            )
            convert_seconds = time.perf_counter() - start
            mlx_model = torch2mlx.load(Path(scratch) / "pkg")
        values = inputs.values() if isinstance(inputs, dict) else inputs
        mlx_inputs = [mx.array(t.numpy()) for t in values]

        torch_s = median_seconds(lambda m=model, i=inputs: run_torch(m, i), args.repeat)
        mlx_s = median_seconds(lambda m=mlx_model, i=mlx_inputs: mx.eval(m(*i)), args.repeat)
        # Traced on the first call; the weights the model closes over are constants to it.
        compiled = mx.compile(mlx_model)
        for plain, fused in zip(
            tree_flatten(mlx_model(*mlx_inputs)), tree_flatten(compiled(*mlx_inputs)), strict=True
        ):
            difference = mx.abs(plain[1] - fused[1]).max().item()
            assert difference <= 1e-5, f"{name}: mx.compile changed {plain[0]} by {difference}"
        compiled_s = median_seconds(lambda f=compiled, i=mlx_inputs: mx.eval(f(*i)), args.repeat)
        print(
            f"{name:<12} {convert_seconds:>10.2f} {torch_s * 1e3:>10.2f} {mlx_s * 1e3:>10.2f} "
            f"{torch_s / mlx_s:>10.2f} {compiled_s * 1e3:>12.2f} {torch_s / compiled_s:>15.2f}"
        )


if __name__ == "__main__":
    main()
