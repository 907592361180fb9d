"""Runs the public zoo: converts every model, compares it with torch, writes docs/models.md.

    .venv/bin/python scripts/zoo.py                    # the whole zoo (about an hour)
    .venv/bin/python scripts/zoo.py --only timm.       # names containing "timm."
    .venv/bin/python scripts/zoo.py --json build/zoo.json --markdown docs/models.md
    .venv/bin/python scripts/zoo.py --only timm.inception_v4 --markdown docs/models.md --merge

Each model is built, converted and verified in a child process of its own (one at a time,
or --jobs N), so that one model's memory or a crash cannot touch the next. The tolerances
are convert's defaults for float32 (atol 1e-5, rtol 1e-5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def public_zoo() -> dict:
    """Every entry of the public zoo, by name: torchvision, timm, then transformers."""
    from tests.zoo.hf_public import HF_PUBLIC
    from tests.zoo.vision_public import timm_zoo, torchvision_zoo

    return torchvision_zoo() | timm_zoo() | HF_PUBLIC


def run_one(name: str) -> dict:
    """Builds, converts and verifies one model; the result as a row of docs/models.md."""
    import torch

    import torch2mlx

    torch.set_num_threads(1)
    row = {"name": name, "status": "error", "max_abs_error": None, "decomposed": []}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, inputs, dynamic = public_zoo()[name]()
            row["parameters"] = sum(p.numel() for p in model.parameters())
            with tempfile.TemporaryDirectory() as scratch:
                result = torch2mlx.convert(
                    model, inputs, Path(scratch) / "pkg", dynamic_shapes=dynamic, quiet=True
                )
                outputs = result.report["outputs"]
                row["max_abs_error"] = max((o["max_abs_error"] for o in outputs), default=0.0)
                row["max_rel_error"] = max((o["max_rel_error"] for o in outputs), default=0.0)
                row["status"] = _status(result.passed, row["max_rel_error"])
                row["decomposed"] = result.report.get("decomposed_ops", [])
                if row["status"] == "fail":
                    row["float64"] = float64_errors(model, inputs, Path(scratch) / "pkg")
                    row["status"] = _status(result.passed, row["max_rel_error"], row["float64"])
    except Exception as error:  # the zoo records every failure and goes on
        row["error"] = f"{type(error).__name__}: {error}".strip()
        row["traceback"] = traceback.format_exc(limit=-3)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def float64_errors(model, inputs, package: Path) -> dict | None:
    """How far torch's float32 result and the package's are from torch's float64 result on
    the same inputs (max abs error over every output), or None when the model does not run
    in float64. A translation that is exact to rounding is about as far as torch float32 is."""
    import copy

    import numpy as np
    import torch

    import torch2mlx
    from torch2mlx.capture import split_inputs
    from torch2mlx.comparison import flatten, to_numpy
    from torch2mlx.conversion import _mlx_inputs

    def as_float64(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.double()
        return value

    args, kwargs = split_inputs(inputs)
    try:
        with torch.no_grad():
            exact = copy.deepcopy(model).double()(
                *[as_float64(v) for v in args], **{k: as_float64(v) for k, v in kwargs.items()}
            )
            single = model(*args, **kwargs)
        mlx_args, mlx_kwargs = _mlx_inputs(args, kwargs, None)
        converted = torch2mlx.load(package)(*mlx_args, **mlx_kwargs)
    except (RuntimeError, TypeError, ValueError):  # an op or a check without float64
        return None

    def worst(values) -> float:
        errors = []
        for (_, reference), (_, value) in zip(flatten(exact), flatten(values), strict=True):
            reference, value = to_numpy(reference), to_numpy(value)
            if isinstance(reference, np.ndarray) and np.issubdtype(reference.dtype, np.floating):
                errors.append(float(np.abs(np.asarray(value, np.float64) - reference).max()))
        return max(errors, default=0.0)

    return {"torch_float32": worst(single), "mlx": worst(converted)}


def _status(passed: bool, max_rel_error: float, float64: dict | None = None) -> str:
    """ "pass": within atol 1e-5, rtol 1e-5 elementwise. "scaled": every output within 1e-5
    of its largest magnitude, where a deep net's outputs are large enough that float32
    rounding of their sums alone exceeds the absolute tolerance on the smaller elements.
    "rounding": beyond both, but no further from torch's float64 result than torch's own
    float32 result is (ROUNDING_FACTOR): the model amplifies float32 rounding, in torch too."""
    if passed:
        return "pass"
    if max_rel_error <= SCALED_TOLERANCE:
        return "scaled"
    if float64 and float64["mlx"] <= ROUNDING_FACTOR * float64["torch_float32"]:
        return "rounding"
    return "fail"


SCALED_TOLERANCE = 1e-5
# Two float32 computations of the same sums in different orders round independently: each
# is off the exact result by about the same amount, and from each other by up to twice it.
ROUNDING_FACTOR = 2.0
MATCHING = ("pass", "scaled", "rounding")

# Why a model of the zoo does not convert yet, where that is known: docs/models.md lists it.
KNOWN_EXCEPTIONS: dict[str, str] = {}


def _first_line(text: str, width: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.replace("|", "\\|")
    return line if len(line) <= width else line[: width - 3] + "..."


def markdown(rows: list[dict]) -> str:
    """docs/models.md: a summary line per source, then one row per model."""
    sources: dict[str, list[dict]] = {}
    for row in rows:
        sources.setdefault(row["name"].split(".")[0], []).append(row)
    passed = sum(row["status"] == "pass" for row in rows)
    scaled = sum(row["status"] == "scaled" for row in rows)
    rounding = sum(row["status"] == "rounding" for row in rows)
    lines = [
        "# Models",
        "",
        "The public zoo (`tests/zoo/`): torchvision, timm and Hugging Face `transformers`",
        "models built from their configs with seeded random weights (parameters that start",
        "at a constant randomised), converted with `torch2mlx.convert` and compared with torch",
        "in float32. Written by `scripts/zoo.py`; CI runs a fixed subset of it",
        "(`tests/test_public_zoo.py`). Results:",
        "",
        "- **pass**: every output element within atol 1e-5 + rtol 1e-5 of torch's;",
        "- **scaled**: every output within 1e-5 of its own largest magnitude (max rel error),",
        "  not elementwise: deep nets with random weights have outputs in the tens or more,",
        "  where float32 rounding of the same sums in another order exceeds 1e-5 on the",
        "  small elements; the relative error shows the translation is exact to rounding;",
        "- **rounding**: beyond both, but no further from torch's float64 result than",
        f"  torch's own float32 result is (at most {ROUNDING_FACTOR:g} times as far; the numbers",
        "  are listed below): the model amplifies float32 rounding, in torch as in MLX, and",
        "  a wrong translation would be much further from float64 than torch float32 is;",
        "- **fail**: larger errors; **error**: the conversion stopped (its message).",
        "",
        f"**{passed + scaled + rounding} of {len(rows)} convert and match torch** "
        f"({passed} pass, {scaled} scaled, {rounding} within float32 rounding).",
        "",
        "| source | models | pass | scaled | rounding |",
        "|---|---:|---:|---:|---:|",
    ]
    for source, group in sources.items():
        counts = [sum(row["status"] == status for row in group) for status in MATCHING]
        lines.append(f"| {source} | {len(group)} | {' | '.join(map(str, counts))} |")
    rounded = [row for row in rows if row["status"] == "rounding"]
    if rounded:
        lines += ["", "## Within float32 rounding", ""]
        lines += [
            "| model | MLX vs torch float32 | torch float32 vs float64 | MLX vs float64 |",
            "|---|---:|---:|---:|",
        ]
        for row in rounded:
            exact = row["float64"]
            lines.append(
                f"| {row['name']} | {row['max_abs_error']:.1e} | "
                f"{exact['torch_float32']:.1e} | {exact['mlx']:.1e} |"
            )
    exceptions = [row for row in rows if row["status"] in ("fail", "error")]
    if exceptions:
        lines += ["", "## Not converting yet", ""]
        for row in exceptions:
            relative = row.get("max_rel_error")
            measured = "" if relative is None else f"max rel error {relative:.1e}"
            reason = KNOWN_EXCEPTIONS.get(row["name"]) or _first_line(
                row.get("error", "") or measured, 300
            )
            lines.append(f"- **{row['name']}** ({row['status']}): {reason}")
    lines += [
        "",
        "## Every model",
        "",
        "| model | result | max abs error | max rel error | seconds | decomposed ops | error |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        error = row["max_abs_error"]
        relative = row.get("max_rel_error")
        lines.append(
            f"| {row['name']} | {row['status']} | "
            f"{'' if error is None else f'{error:.1e}'} | "
            f"{'' if relative is None else f'{relative:.1e}'} | {row['seconds']} | "
            f"{', '.join(row['decomposed'])} | {_first_line(row.get('error', ''))} |"
        )
    return "\n".join(lines) + "\n"


def read_markdown(text: str) -> list[dict]:
    """The rows of a docs/models.md that markdown() wrote, as far as the page keeps them:
    its table of every model, and the float64 numbers of the rows within rounding."""
    float64 = {}
    rows = []
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line
        # Cells split at the pipes that are not escaped (an error message may hold "\\|").
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        if not line.startswith("| ") or not cells[0] or cells[0] == "model":
            continue
        if section == "## Within float32 rounding":
            float64[cells[0]] = {"torch_float32": float(cells[2]), "mlx": float(cells[3])}
        elif section == "## Every model":
            name, status, absolute, relative, seconds, decomposed, error = cells[:7]
            row = {
                "name": name,
                "status": status,
                "max_abs_error": float(absolute) if absolute else None,
                "max_rel_error": float(relative) if relative else None,
                "seconds": float(seconds),
                "decomposed": [op.strip() for op in decomposed.split(",") if op.strip()],
            }
            if error:
                row["error"] = error.replace("\\|", "|")
            rows.append(row)
    for row in rows:
        if row["name"] in float64:
            row["float64"] = float64[row["name"]]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run names containing this (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="models converted at once")
    parser.add_argument("--json", type=Path, help="write every row, tracebacks included")
    parser.add_argument("--markdown", type=Path, help="write the table (docs/models.md)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of --markdown's table for the models not run (with --only)",
    )
    args = parser.parse_args(argv)

    names = [
        name
        for name in public_zoo()
        if not args.only or any(pattern in name for pattern in args.only)
    ]
    rows = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.jobs, maxtasksperchild=1) as pool:
        for row in pool.imap(run_one, names):
            rows.append(row)
            error = row["max_abs_error"]
            detail = _first_line(row.get("error", ""), 120) or f"max abs error {error:.1e}"
            print(f"{row['name']:<48} {row['status']:<5} {row['seconds']:>6}s  {detail}")
            sys.stdout.flush()
            if args.json:  # after every model: a long run stopped early keeps its rows
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.merge and args.markdown and args.markdown.exists():
        # Rows of the models not run now come from the table already written.
        ran = {row["name"] for row in rows}
        kept = [row for row in read_markdown(args.markdown.read_text()) if row["name"] not in ran]
        order = {name: index for index, name in enumerate(public_zoo())}
        rows = sorted([*kept, *rows], key=lambda row: order.get(row["name"], len(order)))
    passed = sum(row["status"] in MATCHING for row in rows)
    print(f"{passed} of {len(rows)} match torch")
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
