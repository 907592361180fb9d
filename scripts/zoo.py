"""Runs the public zoo: converts every model, compares it with torch, writes docs/models.md.

    .venv/bin/python scripts/zoo.py                    # the whole zoo (about an hour)
    .venv/bin/python scripts/zoo.py --only timm.       # names containing "timm."
    .venv/bin/python scripts/zoo.py --json build/zoo.json --markdown docs/models.md

Each model is built, converted and verified in a child process of its own (one at a time,
or --jobs N), so that one model's memory or a crash cannot touch the next. The tolerances
are convert's defaults for float32 (atol 1e-5, rtol 1e-5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
    except Exception as error:  # the zoo records every failure and goes on
        row["error"] = f"{type(error).__name__}: {error}".strip()
        row["traceback"] = traceback.format_exc(limit=-3)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _status(passed: bool, max_rel_error: float) -> str:
    """ "pass": within atol 1e-5, rtol 1e-5 elementwise. "scaled": every output within 1e-5
    of its largest magnitude, where a deep net's outputs are large enough that float32
    rounding of their sums alone exceeds the absolute tolerance on the smaller elements."""
    if passed:
        return "pass"
    return "scaled" if max_rel_error <= SCALED_TOLERANCE else "fail"


SCALED_TOLERANCE = 1e-5

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
        "- **fail**: larger errors; **error**: the conversion stopped (its message).",
        "",
        f"**{passed + scaled} of {len(rows)} convert and match torch** ({passed} pass, "
        f"{scaled} scaled).",
        "",
        "| source | models | pass | scaled |",
        "|---|---:|---:|---:|",
    ]
    for source, group in sources.items():
        count = sum(row["status"] == "pass" for row in group)
        count_scaled = sum(row["status"] == "scaled" for row in group)
        lines.append(f"| {source} | {len(group)} | {count} | {count_scaled} |")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run names containing this (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="models converted at once")
    parser.add_argument("--json", type=Path, help="write every row, tracebacks included")
    parser.add_argument("--markdown", type=Path, help="write the table (docs/models.md)")
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
    passed = sum(row["status"] in ("pass", "scaled") for row in rows)
    print(f"{passed} of {len(rows)} match torch")
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
