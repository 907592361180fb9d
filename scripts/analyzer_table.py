"""The analyzer measured on the zoo: predicted verdict against what convert achieves.

For every model of tests/zoo (hand-written and Hugging Face) and every crafted model of
tests/analyzer_models.py, runs torch2mlx.analyze, then torch2mlx.convert (with
verification), and writes the table between the markers of docs/analyzer.md:

    .venv/bin/python scripts/analyzer_table.py          # rewrite the table
    .venv/bin/python scripts/analyzer_table.py --check  # exit 1 if a prediction is wrong

A prediction is wrong when the analyzer says "convertible" and convert fails (or the package
does not match torch): that must never happen. "blocked" for a model convert writes anyway
is reported too (the analyzer may be stricter, e.g. a buffer update the MLX model drops).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEGIN = "<!-- analyzer-table:begin -->"
END = "<!-- analyzer-table:end -->"


def factories() -> dict:
    from tests.analyzer_models import FACTORIES as CRAFTED
    from tests.zoo.hf_models import HF_ZOO
    from tests.zoo.models import ZOO

    result = {f"zoo.{f.__name__}": f for f in ZOO}
    result |= {f"hf.{f.__name__}": f for f in HF_ZOO}
    result |= {f"crafted.{name}": f for name, f in CRAFTED.items()}
    return result


def measure(name: str, factory) -> dict:
    import torch2mlx

    model, inputs, dynamic = factory()
    start = time.perf_counter()
    report = torch2mlx.analyze(model, inputs, dynamic)
    seconds = time.perf_counter() - start
    model, inputs, dynamic = factory()
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = torch2mlx.convert(
                model, inputs, Path(scratch) / "pkg", dynamic_shapes=dynamic, quiet=True
            )
            actual = "converts, matches torch" if result.passed else "converts, differs"
            converted = bool(result.passed)
        except Exception as error:  # any failure of convert is an outcome to record
            actual = f"fails ({str(error).split(']')[0].lstrip('[') or type(error).__name__})"
            converted = False
    kinds = sorted({f.kind for f in report.blockers})
    coverage = f"{report.ops['coverage'] * 100:.0f}%" if report.ops else "-"
    return {
        "name": name,
        "predicted": report.verdict,
        "blockers": ", ".join(kinds) or "-",
        "coverage": coverage,
        "actual": actual,
        "wrong": report.convertible and not converted,
        "stricter": not report.convertible and converted,
        "seconds": seconds,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | predicted | blockers | op coverage | convert | analysis (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['predicted']} | {row['blockers']} | {row['coverage']} | "
            f"{row['actual']} | {row['seconds']:.2f} |"
        )
    wrong = sum(row["wrong"] for row in rows)
    stricter = sum(row["stricter"] for row in rows)
    convertible = sum(row["predicted"] == "convertible" for row in rows)
    lines += [
        "",
        f"{len(rows)} models: {convertible} predicted convertible, "
        f"{len(rows) - convertible} blocked; {wrong} predicted convertible that failed; "
        f"{stricter} blocked that convert writes anyway.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write the doc")
    args = parser.parse_args()
    rows = []
    for name, factory in factories().items():
        row = measure(name, factory)
        print(f"{name}: predicted {row['predicted']}, {row['actual']}", file=sys.stderr)
        rows.append(row)
    text = table(rows)
    print(text)
    if not args.check:
        doc = ROOT / "docs/analyzer.md"
        content = doc.read_text()
        head, _, rest = content.partition(BEGIN)
        _, _, tail = rest.partition(END)
        doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 1 if any(row["wrong"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
