"""Benchmark: converting a Hugging Face folder with torch2mlx, in each format, against
`mlx_lm.convert` on the same folder, side by side in one run: wall time, peak RSS, ratios.

    .venv/bin/python benchmarks/make_llama_folder.py /tmp/tl11 --shape tinyllama-1.1b
    .venv/bin/python benchmarks/bench_folder_convert.py /tmp/tl11 [--repeat 1]
        [--formats package,mlx-lm,generation] [--out /tmp/bench-out]

Each command runs as its own process under `/usr/bin/time` (peak RSS is the kernel's
maxrss of that process tree's largest member); outputs go to fresh folders, removed after
each run. torch2mlx verifies as it does by default (mlx_lm.convert does not verify), so its
time includes a comparison with torch that the baseline skips.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GB, exit code) of one command."""
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True
    )
    wall, rss_kb = result.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) / 1e6, result.returncode


def commands(folder: Path, out: Path, formats: list[str]) -> dict[str, list[str]]:
    cases = {"mlx_lm.convert": [str(BIN / "mlx_lm.convert"), "--hf-path", str(folder),
                                "--mlx-path", str(out / "mlx_lm")]}  # fmt: skip
    for name in formats:
        target = out / f"torch2mlx-{name}"
        cases[f"torch2mlx {name}"] = [
            str(BIN / "torch2mlx"), "convert", str(folder), "-o", str(target), "--format", name
        ]  # fmt: skip
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--formats", default="package,mlx-lm,generation")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/torch2mlx-bench-folder"))
    args = parser.parse_args()
    cases = commands(args.folder, args.out, args.formats.split(","))
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, command in cases.items():  # interleaved rounds
            shutil.rmtree(args.out, ignore_errors=True)
            args.out.mkdir(parents=True)
            runs[name].append(timed(command))
            print(f"{name}: {runs[name][-1]}", file=sys.stderr)
    shutil.rmtree(args.out, ignore_errors=True)
    base_wall = statistics.median(r[0] for r in runs["mlx_lm.convert"])
    base_rss = statistics.median(r[1] for r in runs["mlx_lm.convert"])
    print("| command | exit | wall s | x mlx_lm | peak RSS GB | x mlx_lm |")
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        wall = statistics.median(r[0] for r in results)
        rss = statistics.median(r[1] for r in results)
        codes = ",".join(str(r[2]) for r in results)
        print(
            f"| {name} | {codes} | {wall:.1f} | {wall / base_wall:.2f} | {rss:.2f} | "
            f"{rss / base_rss:.2f} |"
        )


if __name__ == "__main__":
    main()
