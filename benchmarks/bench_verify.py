"""The cost of the per-layer diff: verification with every module call recorded, against
outputs only, on the same zoo models in one process.

    .venv/bin/python benchmarks/bench_verify.py [--repeat 5] [--models resnet18 vit gpt llama]

Each model is converted once; then plain `torch2mlx.verify(..., layers=False)` and the
per-layer `verify(...)` run alternately, `--repeat` times each, and the medians and their
ratio are printed. Issue 15 asks for a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.zoo import hf_models, models  # noqa: E402

import torch2mlx  # noqa: E402

FACTORIES = {f.__name__: f for f in models.ZOO} | {f"hf_{f.__name__}": f for f in hf_models.HF_ZOO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=["resnet18", "vit", "gpt", "hf_llama"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"{'model':<12} {'calls':>6} {'outputs ms':>11} {'per-layer ms':>13} {'ratio':>7}")
    for name in args.models:
        model, inputs, dynamic = FACTORIES[name]()
        with tempfile.TemporaryDirectory() as scratch:
            package = Path(scratch) / "pkg"
            torch2mlx.convert(model, inputs, package, dynamic_shapes=dynamic, quiet=True)
            plain, layered, calls = [], [], 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                torch2mlx.verify(model, package, inputs, layers=False)
                plain.append(time.perf_counter() - start)
                start = time.perf_counter()
                report = torch2mlx.verify(model, package, inputs)
                layered.append(time.perf_counter() - start)
                calls = len(report.layers)
        a, b = statistics.median(plain), statistics.median(layered)
        print(f"{name:<12} {calls:>6} {a * 1e3:>11.1f} {b * 1e3:>13.1f} {b / a:>7.2f}")


if __name__ == "__main__":
    main()
