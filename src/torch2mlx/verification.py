"""Verify: torch and MLX side by side, output by output, and the first layer that diverges.

``verify(model, out_dir, inputs)`` runs the torch model and the converted package on the
same inputs and reports the error of every output. It also records what every module
returns, in torch through forward hooks and in MLX through an observer installed on the
loaded model for the run (``observe``: the generated code itself carries no hook, so a
model that is not observed runs at full speed). The package's ``modules.json`` names the
module calls the generated code makes, where each sits in the MLX tree, and the axis order
each value is stored in, so that channels-last activations are compared with torch's
channels-first ones. The first module, in the order calls complete, whose output leaves
the tolerance while its input is still within it is the culprit: the report names it with
its torch source line and the ops inside.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.comparison import (
    OutputError,
    Rule,
    compare,
    flatten,
    judge,
    rule_for,
    to_numpy,
)


@dataclass
class LayerError:
    """How far one module call's output in MLX is from torch's."""

    order: int  # position in the order calls complete (children before their parent)
    path: str
    type: str
    shape: list[int]
    max_abs_error: float
    max_rel_error: float  # relative to the largest torch magnitude
    cosine_similarity: float
    passed: bool
    input_passed: bool | None  # None when the first inputs could not be paired
    input_max_abs_error: float | None


@dataclass
class Divergence:
    """Where MLX first leaves torch: the module, the line, the ops, the error."""

    path: str
    type: str
    source_line: str
    ops: list[str]
    max_abs_error: float
    max_rel_error: float
    cosine_similarity: float
    explanation: str


@dataclass
class VerificationReport:
    """The outcome of one side-by-side run. ``text()``, ``to_dict()`` and ``html()`` render it."""

    passed: bool
    dtype: str
    tolerance: dict
    outputs: list[OutputError]
    layers: list[LayerError] = field(default_factory=list)
    first_divergence: Divergence | None = None
    environment: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def text(self) -> str:
        return "\n".join(report_lines(self))

    def html(self) -> str:
        return report_html(self)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 6 << 30


# The bytes verify may spend on the reference copy of the model (docs/verify.md): its
# parameters in float64 (or, past this, in float32 for a half-precision model), held
# beside the model's own for the run. A third of the machine's memory, at least 2 GiB.
REFERENCE_BUDGET = max(2 << 30, _physical_memory() // 3)


def compute_dtype(model: Any, package_dtype: str | None = None) -> str:
    """The dtype a model computes in: the package's when it was cast, else that of most of
    the torch model's floating parameters (float32 when it has none)."""
    if package_dtype:
        return package_dtype
    counts: dict[str, int] = {}
    for parameter in _floating_tensors(model):
        name = str(parameter.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + parameter.numel()
    return max(counts, key=counts.get) if counts else "float32"


def _floating_tensors(model: Any) -> list[Any]:
    """The model's floating parameters and buffers, each once."""
    seen, tensors = set(), []
    named = (
        [*model.named_parameters(), *model.named_buffers()]
        if hasattr(model, "named_buffers")
        else []
    )
    for _, tensor in named:
        if tensor is not None and tensor.is_floating_point() and id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append(tensor)
    return tensors


@contextlib.contextmanager
def cast_floating(model: Any, dtype: str = "float64") -> Iterator[bool]:
    """The model with its floating parameters and buffers in ``dtype`` for the block,
    restored afterwards; yields False (and changes nothing) for a model whose copy in that
    dtype would exceed REFERENCE_BUDGET, or that is not on the CPU."""
    import torch

    tensors = _floating_tensors(model)
    size = sum(tensor.numel() for tensor in tensors) * getattr(torch, dtype).itemsize
    if not tensors or size > REFERENCE_BUDGET or any(t.device.type != "cpu" for t in tensors):
        yield False
        return
    originals = [tensor.data for tensor in tensors]
    try:
        with torch.no_grad():
            for tensor in tensors:
                tensor.data = tensor.data.to(getattr(torch, dtype))
        yield True
    finally:
        for tensor, original in zip(tensors, originals, strict=True):
            tensor.data = original


def in_float64(model: Any) -> contextlib.AbstractContextManager[bool]:
    """`cast_floating` to float64: the reference every check judges against."""
    return cast_floating(model, "float64")


def _cast_inputs(value: Any, dtype: str) -> Any:
    """Inputs with their floating tensors in ``dtype``."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(getattr(torch, dtype)) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_inputs(item, dtype) for item in value)
    if isinstance(value, dict):
        return {key: _cast_inputs(item, dtype) for key, item in value.items()}
    return value


def environment() -> dict:
    """What the MLX numbers depend on: its version, device, and TF32 matmuls."""
    import mlx.core as mx

    return {
        "mlx": getattr(mx, "__version__", "unknown"),
        "device": str(mx.default_device()),
        # On Apple silicon MLX may run float32 matmuls in TF32; MLX_ENABLE_TF32=0 turns that
        # off for a comparison at full float32 precision (docs/verify.md).
        "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32", "unset"),
    }


# --- Observing module calls.


@dataclass
class _Call:
    path: str
    start: int
    inputs: list[Any]
    outputs: list[Any]
    end: int = -1


def _leaves(value: Any) -> list[Any]:
    """The tensor or array leaves of a value, in pytree order; torch's copied, since a later
    in-place op (ReLU(inplace=True)) would change them; MLX arrays are immutable."""
    leaves = []
    for _, leaf in flatten(value):
        if getattr(leaf, "is_nested", False):
            # nn.TransformerEncoder's layers pass a nested tensor (padding dropped) between
            # them in eager inference: nothing in MLX has that form, so it is not compared.
            continue
        if hasattr(leaf, "clone") and hasattr(leaf, "detach"):
            leaves.append(leaf.detach().clone())
        elif hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            leaves.append(leaf)
    return leaves


class _Recorder:
    """Module calls as they start and complete; values become numpy arrays in ``arrays()``,
    after the run, so that MLX evaluates the whole graph once rather than call by call."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.open: list[_Call] = []
        self.completed = 0

    def start(self, path: str, inputs: Any) -> None:
        self.open.append(_Call(path, len(self.calls) + len(self.open), _leaves(inputs)[:1], []))

    def finish(self, outputs: Any) -> None:
        call = self.open.pop()
        call.outputs = _leaves(outputs)
        call.end = self.completed
        self.completed += 1
        self.calls.append(call)

    def arrays(self) -> list[_Call]:
        for call in self.calls:
            call.inputs = [to_numpy(value) for value in call.inputs]
            call.outputs = [to_numpy(value) for value in call.outputs]
        return self.calls


@contextlib.contextmanager
def observe(mlx_model: Any, paths: set[str], recorder: _Recorder) -> Iterator[None]:
    """Records the first input and the outputs of the MLX modules at ``paths`` while the
    block runs.

    Each observed module's class is swapped for a subclass whose ``__call__`` reports to the
    recorder, and swapped back afterwards: nothing stays on the model.
    """

    swapped = []
    subclasses: dict[type, type] = {}
    path_of: dict[int, str] = {}
    for path, module in mlx_model.named_modules():
        if path not in paths:
            continue
        base = type(module)
        if base not in subclasses:

            def call(self, *args, __base=base, **kwargs):
                recorder.start(path_of[id(self)], (args, kwargs))
                out = __base.__call__(self, *args, **kwargs)
                recorder.finish(out)
                return out

            subclasses[base] = type(f"Observed{base.__name__}", (base,), {"__call__": call})
        path_of[id(module)] = path
        module.__class__ = subclasses[base]
        swapped.append((module, base))
    try:
        yield
    finally:
        for module, base in swapped:
            module.__class__ = base


@contextlib.contextmanager
def _torch_hooks(module: Any, paths: set[str], recorder: _Recorder) -> Iterator[None]:
    handles = []
    for path, child in module.named_modules():
        if path not in paths:
            continue
        handles.append(
            child.register_forward_pre_hook(
                lambda _m, args, kwargs, p=path: recorder.start(p, (args, kwargs)),
                with_kwargs=True,
            )
        )
        handles.append(child.register_forward_hook(lambda _m, _args, out: recorder.finish(out)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# --- Comparing.


def _to_torch_order(array: np.ndarray, perm: list[int]) -> np.ndarray:
    """A value stored in ``perm`` order (stored axis i holds torch's axis perm[i]) in torch's."""
    if not perm or len(perm) != array.ndim:
        return array
    return np.transpose(array, np.argsort(perm))


def _error(
    reference: np.ndarray,
    actual: np.ndarray,
    rule: Rule,
    exact: Any = None,
    compute: Any = None,
    exact_dtype: str = "float64",
) -> tuple:
    verdict = judge(reference, actual, rule, exact, compute, exact_dtype)
    return (
        verdict.max_abs_error,
        verdict.max_rel_error,
        verdict.cosine_similarity,
        verdict.passed,
    )


def _pair(torch_values: list[np.ndarray], mlx_values: list[np.ndarray], perms: list[list[int]]):
    """Pairs each torch output with the next MLX output of its shape in torch's order:
    (index of the torch output, torch value, MLX value)."""
    ordered = [
        _to_torch_order(value, perms[i] if i < len(perms) else [])
        for i, value in enumerate(mlx_values)
    ]
    pairs, used = [], set()
    for position, reference in enumerate(torch_values):
        for index, value in enumerate(ordered):
            if index not in used and value.shape == reference.shape:
                pairs.append((position, reference, value))
                used.add(index)
                break
    return pairs


def _same_calls(torch_calls: list[_Call], other_calls: list[_Call] | None) -> list[_Call | None]:
    """Another torch run's call for each of torch's (the same model makes the same calls, in
    the same order, in any dtype); None where the runs differ."""
    if not other_calls or len(other_calls) != len(torch_calls):
        return [None] * len(torch_calls)
    return [
        other if other.path == call.path else None
        for call, other in zip(torch_calls, other_calls, strict=True)
    ]


def _at(values: list[Any] | None, index: int) -> Any:
    return values[index] if values is not None and index < len(values) else None


def compare_layers(
    torch_calls: list[_Call],
    mlx_calls: list[_Call],
    modules: list[dict],
    rule: Rule,
    exact_calls: list[_Call] | None = None,
    compute_calls: list[_Call] | None = None,
    exact_dtype: str = "float64",
) -> list[LayerError]:
    """Errors of every module call both sides made, judged by ``rule`` (against the float64
    run's ``exact_calls`` where given, with torch's own error from ``compute_calls``, its run
    in the package's dtype, where given), in the order torch's calls complete."""
    by_path = {module["path"]: module for module in modules}
    mlx_by_path: dict[str, list[_Call]] = {}
    for call in sorted(mlx_calls, key=lambda c: c.start):
        mlx_by_path.setdefault(call.path, []).append(call)
    exact_for = dict(zip(map(id, torch_calls), _same_calls(torch_calls, exact_calls), strict=True))
    compute_for = dict(
        zip(map(id, torch_calls), _same_calls(torch_calls, compute_calls), strict=True)
    )
    mlx_seen: dict[str, int] = {}
    layers = []
    torch_by_start = sorted(torch_calls, key=lambda c: c.start)
    for call in torch_by_start:
        module = by_path[call.path]
        exact, compute = exact_for[id(call)], compute_for[id(call)]
        index = mlx_seen.get(module["mlx_path"], 0)
        mlx_seen[module["mlx_path"]] = index + 1
        candidates = mlx_by_path.get(module["mlx_path"], [])
        if index >= len(candidates):
            continue
        other = candidates[index]
        pairs = _pair(call.outputs, other.outputs, module["output_perms"])
        if not pairs:
            continue
        exact_outputs = exact.outputs if exact is not None else None
        compute_outputs = compute.outputs if compute is not None else None
        stats = [
            _error(
                ref,
                got,
                rule,
                _at(exact_outputs, position),
                _at(compute_outputs, position),
                exact_dtype,
            )
            for position, ref, got in pairs
        ]
        worst = max(stats, key=lambda s: (not s[3], s[0]))
        input_passed = input_error = None
        if call.inputs and other.inputs:
            got = _to_torch_order(other.inputs[0], module["input_perm"])
            if got.shape == call.inputs[0].shape:
                exact_input = _at(exact.inputs if exact is not None else None, 0)
                compute_input = _at(compute.inputs if compute is not None else None, 0)
                input_error, _, _, input_passed = _error(
                    call.inputs[0], got, rule, exact_input, compute_input, exact_dtype
                )
        layers.append(
            LayerError(
                order=call.end,
                path=call.path,
                type=module["type"],
                shape=list(pairs[0][1].shape),
                max_abs_error=worst[0],
                max_rel_error=worst[1],
                cosine_similarity=worst[2],
                passed=worst[3],
                input_passed=input_passed,
                input_max_abs_error=input_error,
            )
        )
    return layers


def first_divergence(layers: list[LayerError], modules: list[dict]) -> Divergence | None:
    """The first module (in completion order) whose output fails while its input passes."""
    by_path = {module["path"]: module for module in modules}
    for layer in sorted(layers, key=lambda item: item.order):
        if layer.passed:
            continue
        module = by_path[layer.path]
        explanation = "its input matches torch, its output does not: the fault is inside it"
        if layer.input_passed is False:
            # Its input was already wrong, yet no module before it failed: the ops that
            # computed the input are the parent's own, between its child calls.
            parents = [p for p in by_path if layer.path.startswith(p + ".")]
            parent = max(parents, key=len) if parents else ""
            explanation = (
                f"its input already differs (max abs {layer.input_max_abs_error:.3g}) while "
                "every module before it matches: the fault is in the ops of "
                f"{parent or 'the model itself'} that compute that input"
            )
            if parent:
                module = by_path[parent]
        elif layer.input_passed is None:
            explanation = "the first module whose output differs (its input could not be paired)"
        return Divergence(
            path=module["path"],
            type=module["type"],
            source_line=module["source_line"],
            ops=module["ops"],
            max_abs_error=layer.max_abs_error,
            max_rel_error=layer.max_rel_error,
            cosine_similarity=layer.cosine_similarity,
            explanation=explanation,
        )
    return None


# --- Inputs.


def random_inputs(out_dir: Path, seed: int = 0) -> dict:
    """Inputs of the shapes and dtypes config.json records, as torch tensors by name.

    Dynamic dims take their example-sized minimum of 2 (within their range); integer inputs
    are drawn from [0, 2), which every index input (token ids, classes) accepts.
    """
    import torch

    config = json.loads((out_dir / "config.json").read_text())
    ranges = config.get("dynamic_dims", {})
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for spec in config["inputs"]:
        if not spec["dtype"]:
            continue  # a flag or size that export baked in
        shape = []
        for dim in spec["shape"]:
            if dim.isdigit():
                shape.append(int(dim))
            else:
                low = ranges.get(dim, {}).get("min") or 2
                shape.append(max(low, 2))
        dtype = getattr(torch, spec["dtype"])
        if dtype.is_floating_point:
            value = torch.randn(shape, generator=generator).to(dtype)
        elif dtype == torch.bool:
            value = torch.randint(0, 2, shape, generator=generator).bool()
        else:
            value = torch.randint(0, 2, shape, generator=generator, dtype=dtype)
        inputs[spec["name"]] = value
    return inputs


def _split(inputs: Any) -> tuple[tuple, dict]:
    """Positional and keyword inputs: as capture reads example inputs, plus the
    ``(args, kwargs)`` pair that convert passes."""
    from torch2mlx.capture import split_inputs

    if (
        isinstance(inputs, tuple)
        and len(inputs) == 2
        and isinstance(inputs[0], tuple)
        and isinstance(inputs[1], dict)
    ):
        return inputs[0], inputs[1]
    return split_inputs(inputs)


# --- The entry point.


def _run_torch(model: Any, args: tuple, kwargs: dict, paths: set[str], recorder: _Recorder):
    """The torch model's outputs in eval mode, its module calls recorded at ``paths``."""
    import torch

    was_training = getattr(model, "training", None)
    try:
        model.eval()
    except NotImplementedError:  # the module of an exported program runs as it was exported
        was_training = None
    try:
        with torch.no_grad(), _torch_hooks(model, paths, recorder):
            return model(*args, **kwargs)
    finally:
        if was_training is not None:
            model.train(was_training)


def _run_cast(
    model: Any, dtype: str, args: tuple, kwargs: dict, paths: set[str], recorder: _Recorder
):
    """The model's outputs with its weights and float inputs in ``dtype`` (float64: the
    reference the rule judges against), or None where the model does not allow it: too
    large for REFERENCE_BUDGET, or an op without a kernel for that dtype."""
    with cast_floating(model, dtype) as cast:
        if not cast:
            return None
        try:
            return _run_torch(
                model, _cast_inputs(args, dtype), _cast_inputs(kwargs, dtype), paths, recorder
            )
        except Exception:
            recorder.calls.clear()
            return None


def verify(
    model: Any,
    out_dir: str | Path,
    inputs: Any = None,
    *,
    atol: float | None = None,
    layers: bool = True,
    seed: int = 0,
    reference64: bool = True,
    model_args: dict | None = None,
) -> VerificationReport:
    """Runs ``model`` (torch) and the package in ``out_dir`` (MLX) on the same inputs.

    ``inputs`` is a tensor, a tuple of positional inputs, a dict of keyword inputs, or
    None for random inputs of the shapes config.json records. Every output is judged by the
    one rule (torch2mlx.comparison, docs/verify.md): against torch in float64 where the
    model allows (``reference64``), with atol by the compute dtype (float32 1e-5, float16
    and bfloat16 1e-2) unless given. With ``layers`` (the default), every module call is
    compared too and ``first_divergence`` names the module where MLX first leaves torch.
    ``model_args`` overrides the package's (``{"num_hidden_layers": 2}`` to compare a large
    model on its first layers, against a torch model of that depth).
    """
    import mlx.core as mx

    from torch2mlx.conversion import _mlx_inputs
    from torch2mlx.runtime import load

    out_dir = Path(out_dir)
    config_path = out_dir / "config.json"
    if not config_path.is_file():
        raise Torch2MLXError(
            f"[verify] {out_dir}: no config.json, so this is not a package that torch2mlx "
            "convert wrote; pass the folder `torch2mlx convert -o` created"
        )
    config = json.loads(config_path.read_text())
    dtype = config.get("dtype")
    dtype = None if dtype in (None, "as exported") else dtype
    rule = rule_for(compute_dtype(model, dtype), atol)
    modules_path = out_dir / "modules.json"
    modules = json.loads(modules_path.read_text()) if modules_path.is_file() else []
    if inputs is None:
        inputs = random_inputs(out_dir, seed)
    args, kwargs = _split(inputs)

    torch_recorder, mlx_recorder = _Recorder(), _Recorder()
    exact_recorder, compute_recorder = _Recorder(), _Recorder()
    torch_paths = {module["path"] for module in modules} if layers else set()
    mlx_paths = {module["mlx_path"] for module in modules} if layers else set()
    start = time.perf_counter()
    reference = _run_torch(model, args, kwargs, torch_paths, torch_recorder)
    torch_seconds = time.perf_counter() - start
    exact = compute = None
    exact_dtype = "float64"
    if reference64:
        exact = _run_cast(model, "float64", args, kwargs, torch_paths, exact_recorder)
    if exact is None and reference64 and rule.compute_dtype in ("bfloat16", "float16"):
        # Too large for a float64 copy: float32 is still exact to far below half precision.
        exact_dtype = "float32"
        exact = _run_cast(model, "float32", args, kwargs, torch_paths, exact_recorder)
    if exact is not None and dtype and dtype != compute_dtype(model):
        # A package cast to another dtype is judged against torch's own error in that dtype.
        compute = _run_cast(model, dtype, args, kwargs, torch_paths, compute_recorder)
    mlx_model = load(out_dir, model_args)
    mlx_args, mlx_kwargs = _mlx_inputs(args, kwargs, dtype)
    start = time.perf_counter()
    with observe(mlx_model, mlx_paths, mlx_recorder):
        actual = mlx_model(*mlx_args, **mlx_kwargs)
        recorded = [value for call in mlx_recorder.calls for value in call.outputs + call.inputs]
        mx.eval(actual, recorded)
    mlx_seconds = time.perf_counter() - start
    outputs = compare(reference, actual, rule, exact, compute, exact_dtype)
    layer_errors = (
        compare_layers(
            torch_recorder.arrays(),
            mlx_recorder.arrays(),
            modules,
            rule,
            exact_recorder.arrays() if exact is not None else None,
            compute_recorder.arrays() if compute is not None else None,
            exact_dtype,
        )
        if layers
        else []
    )
    passed = all(output.passed for output in outputs)
    divergence = first_divergence(layer_errors, modules) if not passed else None
    return VerificationReport(
        passed=passed,
        dtype=dtype or "float32",
        tolerance={**rule.to_dict(), "reference": exact_dtype if exact is not None else "torch"},
        outputs=outputs,
        layers=layer_errors,
        first_divergence=divergence,
        environment=environment(),
        seconds={"torch": torch_seconds, "mlx": mlx_seconds},
    )


# --- Rendering.


def report_lines(report: VerificationReport) -> list[str]:
    """The terminal report: a verdict, each output, the culprit, then every layer."""
    tolerance = report.tolerance
    verdict = "matches torch" if report.passed else "DOES NOT match torch"
    against = tolerance["reference"] if tolerance["reference"] != "torch" else "its own dtype"
    lines = [
        f"{verdict} ({tolerance['compute_dtype']} compute, atol {tolerance['atol']:g}, against "
        f"torch in {against}; {len(report.layers)} module calls compared)"
    ]
    for output in report.outputs:
        mark = "ok  " if output.passed else "FAIL"
        against = ""
        if output.reference in ("float64", "float32"):
            against = (
                f"  vs {output.reference}: MLX {output.error:.3g}, torch {output.torch_error:.3g}, "
                f"bound {output.bound:.3g}"
            )
        lines.append(
            f"  {mark} {output.path:<24} max abs {output.max_abs_error:.3g}  max rel "
            f"{output.max_rel_error:.3g}  cosine {output.cosine_similarity:.6f}{against}"
        )
    culprit = report.first_divergence
    if culprit is not None:
        lines += [
            f"first divergence: {culprit.path} ({culprit.type})",
            f"  {culprit.explanation}",
            f"  source: {culprit.source_line or 'unknown'}",
            f"  ops: {', '.join(culprit.ops)}",
            f"  max abs {culprit.max_abs_error:.3g}  max rel {culprit.max_rel_error:.3g}  "
            f"cosine {culprit.cosine_similarity:.6f}",
        ]
    failing = [layer for layer in report.layers if not layer.passed]
    if failing:
        lines.append(f"{len(failing)} of {len(report.layers)} module calls differ:")
        for layer in failing[:20]:
            lines.append(f"  {layer.path:<40} max abs {layer.max_abs_error:.3g}")
    env = report.environment
    if env:
        lines.append(
            f"mlx {env.get('mlx')} on {env.get('device')}, "
            f"MLX_ENABLE_TF32={env.get('MLX_ENABLE_TF32')}"
        )
    return lines


def report_html(report: VerificationReport) -> str:
    """A self-contained page: the per-layer error along the model's depth, the culprit in red."""
    width, height, margin = 900, 300, 50
    layers = report.layers
    floor = 1e-12
    values = [max(layer.max_abs_error, floor) for layer in layers]
    finite = [v for v in values if np.isfinite(v)]
    top = np.log10(max([*finite, report.tolerance["atol"] * 10, 1e-6]))
    bottom = np.log10(min([*finite, floor * 10]))
    span = max(top - bottom, 1.0)

    def y(value: float) -> float:
        value = value if np.isfinite(value) else 10**top
        return margin + (height - 2 * margin) * (top - np.log10(max(value, floor))) / span

    def x(index: int) -> float:
        return margin + (width - 2 * margin) * (index / max(len(layers) - 1, 1))

    culprit = report.first_divergence.path if report.first_divergence else None
    marks = []
    for index, (layer, value) in enumerate(zip(layers, values, strict=True)):
        color = "#d62728" if layer.path == culprit else ("#1f77b4" if layer.passed else "#ff7f0e")
        radius = 6 if layer.path == culprit else 3
        title = html.escape(f"{layer.path} ({layer.type}): max abs {layer.max_abs_error:.3g}")
        marks.append(
            f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="{radius}" fill="{color}">'
            f"<title>{title}</title></circle>"
        )
    tolerance_y = y(report.tolerance["atol"])
    rows = "".join(
        f"<tr{' class=culprit' if layer.path == culprit else ''}><td>{index}</td>"
        f"<td>{html.escape(layer.path)}</td><td>{html.escape(layer.type)}</td>"
        f"<td>{layer.max_abs_error:.3g}</td><td>{layer.max_rel_error:.3g}</td>"
        f"<td>{layer.cosine_similarity:.6f}</td><td>{'ok' if layer.passed else 'FAIL'}</td></tr>"
        for index, layer in enumerate(layers)
    )
    summary = "<br>".join(html.escape(line) for line in report_lines(report)[:12])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>torch2mlx verify</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; }}
tr.culprit {{ background: #fdd; }}
</style></head><body>
<h1>torch2mlx verify: {"matches torch" if report.passed else "differs from torch"}</h1>
<p>{summary}</p>
<svg width="{width}" height="{height}" role="img" aria-label="per-layer error">
<line x1="{margin}" y1="{tolerance_y:.1f}" x2="{width - margin}" y2="{tolerance_y:.1f}"
 stroke="#999" stroke-dasharray="4"/>
<text x="{width - margin}" y="{tolerance_y - 4:.1f}" text-anchor="end" font-size="11">atol</text>
<text x="{margin}" y="{height - 10}" font-size="11">module calls, in the order they start</text>
<text x="5" y="{margin - 10}" font-size="11">max abs error (log)</text>
{"".join(marks)}
</svg>
<table><tr><th>#</th><th>module</th><th>type</th><th>max abs</th><th>max rel</th>
<th>cosine</th><th></th></tr>{rows}</table>
</body></html>
"""


def load_inputs(path: str | Path) -> dict:
    """Keyword inputs from an .npz file whose keys are the package's input names."""
    import torch

    with np.load(path, allow_pickle=False) as archive:
        return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
