"""The one tolerance rule, and output by output how far MLX is from torch.

Every check in torch2mlx judges with `Rule` (docs/verify.md): ``convert``, ``verify``, the
generation and mlx-lm formats' own checks, and the tests. An MLX value passes when its
largest error against the reference is within the larger of

- ``atol * max(1, magnitude)``: atol (1e-5 for float32 compute, 1e-2 for bfloat16 and
  float16) scaled by the reference's largest magnitude, and
- ``multiple * torch_error``: a small multiple of torch's own error against the same
  reference, in the dtype the model computes in.

The reference is torch in float64 where the model allows it (``verify`` runs a float64 copy
of small enough models), else torch in its own dtype, whose own error is then unknown. A
deep model accumulates rounding in torch and MLX alike: judged against float64, MLX passes
when it is about as close to the exact result as torch is, on any CPU, while a wrong weight
layout or rope theta still fails by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# atol by the dtype the model computes in: float32 as the brief asks of every float32
# comparison; half precision keeps 11 (float16) or 8 (bfloat16) significant bits.
ATOL = {"float64": 1e-5, "float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}

# How much further from the float64 reference than torch's own result MLX may be. Two
# correct implementations land at comparable distances from the exact result, but not
# equal ones: MLX's CPU matmul sums a float32 dot product in one running order, whose error
# grows with the inner dimension faster than torch's blocked sums (2x torch's at k=576,
# 3.8x at 1536, 7.7x at 8192; SmolLM2's 30 layers end 7.0x from float64 where torch is).
# 10 covers that, and is still far below what a real bug costs (docs/verify.md).
TORCH_ERROR_MULTIPLE = 10.0


@dataclass(frozen=True)
class Rule:
    """How far MLX may be from the reference: max(atol * max(1, magnitude), multiple *
    torch's own error)."""

    compute_dtype: str = "float32"
    atol: float = ATOL["float32"]
    multiple: float = TORCH_ERROR_MULTIPLE

    def bound(self, magnitude: float, torch_error: float | None) -> float:
        """The largest error allowed for an output of this magnitude."""
        scaled = self.atol * max(1.0, magnitude)
        return max(scaled, self.multiple * torch_error) if torch_error is not None else scaled

    def describe(self) -> str:
        return (
            f"{self.compute_dtype} compute: atol {self.atol:g} x max(1, |torch|), or "
            f"{self.multiple:g}x torch's own error against the reference"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def rule_for(compute_dtype: str | None, atol: float | None = None) -> Rule:
    """The rule for a model computing in ``compute_dtype`` (None: float32); ``atol`` overrides
    the dtype's default."""
    dtype = compute_dtype if compute_dtype in ATOL else "float32"
    return Rule(dtype, ATOL[dtype] if atol is None else atol)


@dataclass
class Judgement:
    """One value judged by a `Rule`."""

    max_abs_error: float  # MLX against torch in its own dtype
    max_rel_error: float  # max_abs_error over the largest torch magnitude
    cosine_similarity: float
    reference: str  # "float64", "float32" (a half-precision model too large) or "torch"
    error: float  # MLX against the reference
    torch_error: float | None  # torch against the reference; None without a float64 one
    bound: float
    passed: bool


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64; equal infinities and NaN where both are NaN count as 0, any
    other non-finite mismatch as inf."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    diff = np.where(same, 0.0, np.abs(a - b))
    if not diff.size:
        return 0.0
    return float(np.nan_to_num(diff, nan=np.inf).max())


def magnitude(a: np.ndarray) -> float:
    """The largest finite |value| (0 for none)."""
    finite = np.abs(a[np.isfinite(a)]) if a.size else a
    return float(finite.max()) if finite.size else 0.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a0 = np.nan_to_num(a.astype(np.float64).ravel(), posinf=0.0, neginf=0.0)
    b0 = np.nan_to_num(b.astype(np.float64).ravel(), posinf=0.0, neginf=0.0)
    norm = float(np.linalg.norm(a0) * np.linalg.norm(b0))
    return float(a0 @ b0 / norm) if norm > 0 else float(np.array_equal(a0, b0))


def judge(
    torch_value: np.ndarray,
    mlx_value: np.ndarray,
    rule: Rule,
    reference64: np.ndarray | None = None,
    torch_compute: np.ndarray | None = None,
    reference_dtype: str = "float64",
) -> Judgement:
    """`mlx_value` against torch's, by `rule`; with ``reference64`` (torch in float64) MLX's
    and torch's errors are both measured against it, torch's from ``torch_compute`` (torch
    run in the rule's compute dtype) when the package computes in another dtype than torch.
    Integer and bool values must be equal, and NaN only where torch has NaN."""
    torch_value = np.asarray(torch_value)
    mlx_value = np.asarray(mlx_value)
    if torch_value.shape != mlx_value.shape:
        inf = float("inf")
        return Judgement(inf, inf, 0.0, "torch", inf, None, 0.0, False)
    max_abs = max_abs_difference(torch_value, mlx_value)
    scale = magnitude(torch_value)
    similarity = cosine(torch_value, mlx_value)
    relative = max_abs / scale if scale > 0 else max_abs
    if not np.issubdtype(torch_value.dtype, np.floating):
        exact = bool(np.array_equal(torch_value, mlx_value))
        return Judgement(max_abs, relative, similarity, "torch", max_abs, None, 0.0, exact)
    usable = reference64 is not None and np.shape(reference64) == torch_value.shape
    if usable:
        reference64 = np.asarray(reference64, dtype=np.float64)
        error = max_abs_difference(reference64, mlx_value)
        own = torch_value
        if torch_compute is not None and np.shape(torch_compute) == torch_value.shape:
            own = np.asarray(torch_compute)
        torch_error = max_abs_difference(reference64, own)
        bound = rule.bound(magnitude(reference64), torch_error)
        # torch's own NaN and inf are the model's: MLX must reproduce them, not the float64
        # run (which may not overflow where float32 does).
        mismatch = max_abs == float("inf")
        passed = error <= bound and not mismatch
        return Judgement(
            max_abs, relative, similarity, reference_dtype, error, torch_error, bound, passed
        )
    bound = rule.bound(scale, None)
    return Judgement(max_abs, relative, similarity, "torch", max_abs, None, bound, max_abs <= bound)


@dataclass
class OutputError:
    """How far one MLX output is from torch's, and the rule's verdict."""

    path: str
    shape: list[int]
    dtype: str
    max_abs_error: float  # against torch in its own dtype
    max_rel_error: float  # relative to the largest reference magnitude
    cosine_similarity: float
    passed: bool
    reference: str = "torch"  # what `error` is measured against: "float64" or "torch"
    error: float = 0.0
    torch_error: float | None = None  # torch's own error against the float64 reference
    bound: float = 0.0


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


def compare(
    reference: Any,
    actual: Any,
    rule: Rule,
    reference64: Any = None,
    compute: Any = None,
    reference_dtype: str = "float64",
) -> list[OutputError]:
    """Per-output errors of ``actual`` (MLX) against ``reference`` (torch), judged by
    ``rule``; ``reference64`` is the same model's outputs in float64, when it ran, and
    ``compute`` torch's in the package's dtype, when that differs from torch's."""
    expected = flatten(reference)
    got = flatten(actual)
    if len(expected) != len(got):
        raise ValueError(
            f"[verify] torch returned {len(expected)} outputs, MLX {len(got)}: "
            f"{[p for p, _ in expected]} vs {[p for p, _ in got]}"
        )
    exact = flatten(reference64) if reference64 is not None else []
    exact_by_path = {path: to_numpy(value) for path, value in exact}
    own = flatten(compute) if compute is not None else []
    compute_by_path = {path: to_numpy(value) for path, value in own}
    errors = []
    for (path, ref), (_, out) in zip(expected, got, strict=True):
        ref_np, out_np = to_numpy(ref), to_numpy(out)
        if not isinstance(ref_np, np.ndarray):
            same = ref_np == (out_np.item() if isinstance(out_np, np.ndarray) else out_np)
            error = 0.0 if same else float("inf")
            errors.append(
                OutputError(path, [], type(ref_np).__name__, error, error, 1.0, bool(same))
            )
            continue
        verdict = judge(
            ref_np,
            np.asarray(out_np),
            rule,
            exact_by_path.get(path),
            compute_by_path.get(path),
            reference_dtype,
        )
        errors.append(
            OutputError(
                path,
                list(ref_np.shape),
                str(ref_np.dtype),
                verdict.max_abs_error,
                verdict.max_rel_error,
                verdict.cosine_similarity,
                verdict.passed,
                verdict.reference,
                verdict.error,
                verdict.torch_error,
                verdict.bound,
            )
        )
    return errors


def summary_lines(errors: list[OutputError], rule: Rule) -> list[str]:
    """One line per output, then a verdict."""
    lines = []
    for error in errors:
        mark = "ok  " if error.passed else "FAIL"
        against = ""
        if error.reference in ("float64", "float32"):
            against = (
                f"  vs {error.reference}: MLX {error.error:.3g}, torch {error.torch_error:.3g}, "
                f"bound {error.bound:.3g}"
            )
        elif error.bound:
            against = f"  bound {error.bound:.3g}"
        lines.append(
            f"  {mark} {error.path:<24} shape {tuple(error.shape)!s:<18} max abs "
            f"{error.max_abs_error:.3g}  cosine {error.cosine_similarity:.6f}{against}"
        )
    passed = all(error.passed for error in errors)
    verdict = "matches torch" if passed else "DOES NOT match torch"
    lines.append(f"  {verdict} ({rule.describe()})")
    return lines


def as_dicts(errors: list[OutputError]) -> list[dict]:
    """JSON-ready per-output errors."""
    return [asdict(error) for error in errors]
