"""Calibration of the tolerance rule (docs/verify.md): for every model of the test zoo, in
float32 and cast to bfloat16, how far MLX and torch each are from torch's float64 result,
and how far MLX is from its bound.

    .venv/bin/python benchmarks/calibrate_tolerance.py [--only gpt,hf.llama]
        [--dtypes float32,bfloat16]

Prints one row per model and dtype: MLX's error, torch's, their ratio (the rule allows
TORCH_ERROR_MULTIPLE), the bound, and the share of the bound MLX uses. The rule's multiple
is set from the largest ratio seen here, with room for other CPUs' rounding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.test_zoo import FACTORIES

    import torch2mlx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated zoo names")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else sorted(FACTORIES)
    print("| model | dtype | MLX err | torch err | ratio | bound | used |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for dtype in args.dtypes.split(","):
            model, inputs, dynamic = FACTORIES[name]()
            with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = torch2mlx.convert(
                    model,
                    inputs,
                    Path(scratch) / "pkg",
                    dynamic_shapes=dynamic,
                    dtype=None if dtype == "float32" else dtype,
                    quiet=True,
                    model_args=False,
                )
            for output in result.report["outputs"]:
                if output["torch_error"] is None:
                    continue
                ratio = output["error"] / max(output["torch_error"], 1e-30)
                print(
                    f"| {name} {output['path']} | {dtype} | {output['error']:.3g} | "
                    f"{output['torch_error']:.3g} | {ratio:.2f} | {output['bound']:.3g} | "
                    f"{output['error'] / output['bound']:.0%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
