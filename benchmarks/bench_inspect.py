"""Benchmark: `torch2mlx inspect` against `torch.load` on ~2 GB checkpoints.

Builds (once, under benchmarks/data/) a 2 GB float32 state dict shaped like a small language
model, saved as safetensors and as a torch.save `.pth`. Each measurement runs in a fresh
subprocess (so imports and page cache are accounted for the same way), repeated; the report
gives medians, peak RSS and the ratio of each to `torch.load`. Run:

    .venv/bin/python benchmarks/bench_inspect.py [--repeat 5] [--cold]

`--cold` drops the page cache before each run (needs root); without it every run sees a
warm cache, which favours torch.load (it reads all 2 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SAFETENSORS = DATA / "model_2gb.safetensors"
PTH = DATA / "model_2gb.pth"

# name -> (imports, call) run in a fresh interpreter; the call alone is timed, and the
# imports are timed separately, since `import torch` alone costs more than a header read.
CASES = {
    "inspect safetensors (torch2mlx API)": (
        "import torch2mlx",
        "torch2mlx.inspect_checkpoint({st!r})",
    ),
    "inspect .pth (torch2mlx API)": ("import torch2mlx", "torch2mlx.inspect_checkpoint({pth!r})"),
    "inspect .pth (torch2mlx CLI --json, whole command)": (
        "import subprocess, sys",
        "subprocess.run([sys.prefix + '/bin/torch2mlx', 'inspect', {pth!r}, '--json'], "
        "check=True, stdout=subprocess.DEVNULL)",
    ),
    "load_state_dict .pth (torch2mlx, zero-copy)": (
        "import torch2mlx",
        "torch2mlx.load_state_dict({pth!r})",
    ),
    "torch.load .pth (weights_only=True)": (
        "import torch",
        "torch.load({pth!r}, weights_only=True)",
    ),
    "torch.load .pth (weights_only=True, mmap=True)": (
        "import torch",
        "torch.load({pth!r}, weights_only=True, mmap=True)",
    ),
}
BASELINE = "torch.load .pth (weights_only=True)"

HARNESS = """
import resource, time, json
start = time.perf_counter()
{imports}
imported = time.perf_counter()
{call}
elapsed = time.perf_counter() - imported
import_seconds = imported - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking process.
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
rss_kb = max(own, child)
print(json.dumps({{"seconds": elapsed, "import_seconds": import_seconds, "rss_kb": rss_kb}}))
"""


def build_fixtures() -> None:
    if SAFETENSORS.exists() and PTH.exists():
        return
    import torch
    from safetensors.torch import save_file

    DATA.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state: dict[str, torch.Tensor] = {"embed.weight": torch.randn(32000, 1024)}
    layer = 0
    total = state["embed.weight"].numel()
    while total * 4 < 2 * 10**9:
        for name, shape in (
            ("attn.qkv.weight", (3072, 1024)),
            ("attn.out.weight", (1024, 1024)),
            ("mlp.up.weight", (4096, 1024)),
            ("mlp.down.weight", (1024, 4096)),
            ("norm1.weight", (1024,)),
            ("norm2.weight", (1024,)),
        ):
            state[f"layers.{layer}.{name}"] = torch.randn(shape)
            total += state[f"layers.{layer}.{name}"].numel()
        layer += 1
    print(
        f"building fixtures: {len(state)} tensors, {total * 4 / 1e9:.2f} GB each file", flush=True
    )
    save_file(state, str(SAFETENSORS))
    torch.save(state, PTH)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def measure(case: tuple[str, str], cold: bool) -> dict[str, float]:
    if cold:
        drop_caches()
    imports, call = case
    script = HARNESS.format(imports=imports, call=call.format(st=str(SAFETENSORS), pth=str(PTH)))
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    args = parser.parse_args()
    build_fixtures()
    print(
        f"files: {SAFETENSORS.name} {SAFETENSORS.stat().st_size / 1e9:.2f} GB, "
        f"{PTH.name} {PTH.stat().st_size / 1e9:.2f} GB; {args.repeat} runs each, "
        f"{'cold' if args.cold else 'warm'} page cache; 'call' times the read alone, "
        f"'imports' the imports before it"
    )
    # Warm-up so that the first case does not pay for reading the files into the cache.
    if not args.cold:
        measure(CASES[BASELINE], cold=False)
    results = {}
    for name, case in CASES.items():
        runs = [measure(case, args.cold) for _ in range(args.repeat)]
        results[name] = (
            statistics.median(r["seconds"] for r in runs),
            statistics.median(r["import_seconds"] for r in runs),
            max(r["rss_kb"] for r in runs) / 1024,
        )
    base_seconds, _, base_rss = results[BASELINE]
    print(
        f"\n{'case':<52} {'call s':>8} {'imports s':>9} {'peak RSS MB':>11} "
        f"{'call vs torch.load':>18}"
    )
    for name, (seconds, import_seconds, rss) in results.items():
        print(
            f"{name:<52} {seconds:>8.4f} {import_seconds:>9.3f} {rss:>11.0f} "
            f"{seconds / base_seconds:>17.4f}x"
        )
    print(f"\nbaseline: {BASELINE}: {base_seconds:.3f} s, {base_rss:.0f} MB peak RSS")


if __name__ == "__main__":
    main()
