"""Output by output: how far MLX values are from torch's (used by convert and verify)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Default tolerances (atol, rtol) by the dtype the MLX model runs in.
# float32 as the brief asks of every float32 comparison; half precision keeps 11 (float16)
# or 8 (bfloat16) significant bits, so 1e-2 of the largest magnitudes.
TOLERANCES = {"float32": (1e-5, 1e-5), "float16": (1e-2, 1e-2), "bfloat16": (1e-2, 1e-2)}


@dataclass
class OutputError:
    """How far one MLX output is from torch's."""

    path: str
    shape: list[int]
    dtype: str
    max_abs_error: float
    max_rel_error: float  # relative to the largest reference magnitude
    cosine_similarity: float
    passed: bool


def to_numpy(value: Any) -> Any:
    """A torch tensor or MLX array as a float64-safe numpy array; other leaves unchanged."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            return value.numpy()
    except ImportError:  # verifying needs torch; only MLX values then
        pass
    try:
        import mlx.core as mx

        if isinstance(value, mx.array):
            if value.dtype == mx.bfloat16:
                value = value.astype(mx.float32)
            return np.array(value)
    except ImportError:
        pass
    return value


def flatten(value: Any, path: str = "out") -> list[tuple[str, Any]]:
    """Leaves of nested tuples, lists and dicts (and ModelOutputs), in pytree order."""
    if hasattr(value, "to_tuple") and hasattr(value, "keys"):  # transformers.ModelOutput
        value = dict(value.items())
    if isinstance(value, dict):
        leaves = []
        for key, item in value.items():
            leaves.extend(flatten(item, f"{path}[{key!r}]"))
        return leaves
    if isinstance(value, (tuple, list)):
        leaves = []
        for index, item in enumerate(value):
            leaves.extend(flatten(item, f"{path}[{index}]"))
        return leaves
    return [(path, value)]


def compare(reference: Any, actual: Any, atol: float, rtol: float) -> list[OutputError]:
    """Per-output errors of ``actual`` (MLX) against ``reference`` (torch)."""
    expected = flatten(reference)
    got = flatten(actual)
    if len(expected) != len(got):
        raise ValueError(
            f"[verify] torch returned {len(expected)} outputs, MLX {len(got)}: "
            f"{[p for p, _ in expected]} vs {[p for p, _ in got]}"
        )
    errors = []
    for (path, ref), (_, out) in zip(expected, got, strict=True):
        ref_np, out_np = to_numpy(ref), to_numpy(out)
        if not isinstance(ref_np, np.ndarray):
            same = ref_np == (out_np.item() if isinstance(out_np, np.ndarray) else out_np)
            errors.append(
                OutputError(
                    path,
                    [],
                    type(ref_np).__name__,
                    0.0 if same else float("inf"),
                    0.0 if same else float("inf"),
                    1.0,
                    bool(same),
                )
            )
            continue
        out_np = np.asarray(out_np)
        if ref_np.shape != out_np.shape:
            errors.append(
                OutputError(
                    path,
                    list(ref_np.shape),
                    str(ref_np.dtype),
                    float("inf"),
                    float("inf"),
                    0.0,
                    False,
                )
            )
            continue
        a = ref_np.astype(np.float64)
        b = out_np.astype(np.float64)
        diff = np.abs(a - b)
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(a).max()) if a.size else 0.0
        max_rel = max_abs / scale if scale > 0 else max_abs
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float((a.ravel() @ b.ravel()) / norm) if norm > 0 else float(max_abs == 0)
        if np.issubdtype(ref_np.dtype, np.floating):
            passed = bool(np.allclose(b, a, atol=atol, rtol=rtol, equal_nan=True))
        else:
            passed = bool(np.array_equal(a, b))
        errors.append(
            OutputError(
                path, list(ref_np.shape), str(ref_np.dtype), max_abs, max_rel, cosine, passed
            )
        )
    return errors


def summary_lines(errors: list[OutputError], atol: float, rtol: float) -> list[str]:
    """One line per output, then a verdict."""
    lines = []
    for error in errors:
        mark = "ok  " if error.passed else "FAIL"
        lines.append(
            f"  {mark} {error.path:<24} shape {tuple(error.shape)!s:<18} max abs "
            f"{error.max_abs_error:.3g}  max rel {error.max_rel_error:.3g}  cosine "
            f"{error.cosine_similarity:.6f}"
        )
    passed = all(error.passed for error in errors)
    verdict = "matches torch" if passed else "DOES NOT match torch"
    lines.append(f"  {verdict} (atol {atol:g}, rtol {rtol:g})")
    return lines


def as_dicts(errors: list[OutputError]) -> list[dict]:
    """JSON-ready per-output errors."""
    return [asdict(error) for error in errors]
