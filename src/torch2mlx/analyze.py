"""``torch2mlx.analyze``: a portability report before conversion.

Without example inputs the report walks the module tree against the layer registry and
scans each module class's ``forward`` source (with ``ast``, nothing is run) for known
hazards. With example inputs (or a ``.pt2`` archive) it also captures the graph the way
``convert`` does (``torch.export``, then the decomposition fallback), runs the core's graph
rules over it (``_core.analyze_graph``: op coverage, custom kernels, mutation that aliases,
quantizable parameters) and the code generator itself, in memory: the verdict
"convertible" means ``convert`` will write the package.

The analysis never changes the model: it is put in eval mode only for the capture (as
``convert`` does) and its training flag is restored afterwards; parameters are not touched.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import math
import os
import sys
import sysconfig
import tempfile
import textwrap
import traceback
import types
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch2mlx import _core
from torch2mlx.checkpoint import Torch2MLXError

SCHEMA_VERSION = 1

# Exit statuses of `torch2mlx analyze`.
EXIT_CONVERTIBLE = 0
EXIT_BLOCKED = 3
EXIT_UNDETERMINED = 4  # no graph to examine (no example inputs) and no blocker found


@dataclass
class Finding:
    """One thing the analysis found, at the user's file:line where there is one."""

    kind: str
    blocker: bool
    message: str
    fix: str = ""
    file: str = ""
    line: int = 0
    code: str = ""
    module_path: str = ""
    module_type: str = ""
    target: str = ""

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.file else ""


@dataclass
class PortabilityReport:
    """What converts, what does not, and the line to change. See docs/analyzer.md."""

    model: str
    verdict: str  # "convertible", "blocked" or "undetermined"
    graph_examined: bool
    modules: dict
    ops: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    mutations: dict = field(default_factory=lambda: {"harmless": [], "aliasing": []})
    quantizable: list[dict] = field(default_factory=list)
    decomposed_ops: list[str] = field(default_factory=list)
    export: dict = field(default_factory=lambda: {"attempted": False})

    @property
    def blockers(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.blocker]

    @property
    def convertible(self) -> bool:
        return self.verdict == "convertible"

    @property
    def exit_code(self) -> int:
        return {"convertible": EXIT_CONVERTIBLE, "blocked": EXIT_BLOCKED}.get(
            self.verdict, EXIT_UNDETERMINED
        )

    def to_dict(self) -> dict:
        result = asdict(self)
        result = {"schema_version": SCHEMA_VERSION, **result}
        result["blockers"] = sum(finding.blocker for finding in self.findings)
        for finding in result["findings"]:
            finding["location"] = f"{finding['file']}:{finding['line']}" if finding["file"] else ""
        return result

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        parts = [f"{self.model}: {self.verdict.upper()}"]
        if self.ops is not None:
            parts.append(f"op coverage {self.ops['coverage'] * 100:.1f}%")
        modules = self.modules
        parts.append(
            f"modules mapped {modules['share_by_modules'] * 100:.1f}% "
            f"({modules['share_by_parameters'] * 100:.1f}% of parameters)"
        )
        parts.append(f"{len(self.blockers)} blocker(s)")
        hazards = len(self.findings) - len(self.blockers)
        if hazards:
            parts.append(f"{hazards} note(s)")
        if not self.graph_examined and not self.export.get("attempted"):
            parts.append("graph not examined: pass example inputs to confirm")
        return ", ".join(parts)

    def format_text(self) -> str:
        """The terminal report: summary line, table of blockers, then details."""
        lines = [self.summary(), ""]
        if self.blockers:
            rows = [
                (f.kind, f.location or "-", f.module_path or "-", f.target or "-")
                for f in self.blockers
            ]
            header = ("blocker", "where", "module", "what")
            widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
            lines.append(
                "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + "  what"
            )
            for row in rows:
                lines.append(
                    "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3]
                )
            lines.append("")
        details = [f for f in self.blockers] + [f for f in self.findings if not f.blocker]
        for finding in details:
            label = "blocker" if finding.blocker else "note"
            where = f" at {finding.location}" if finding.location else ""
            module = f" in {finding.module_path}" if finding.module_path else ""
            lines.append(f"[{label}] {finding.kind}{where}{module}: {finding.message}")
            if finding.code:
                lines.append(f"    {finding.code}")
            if finding.fix:
                lines.append(f"    fix: {finding.fix}")
        modules = self.modules
        lines.append(
            f"modules: {modules['total']} ({modules['mapped']} mapped to MLX layers, "
            f"{modules['composite']} composite, {modules['unmapped']} translated op by op); "
            f"parameters: {modules['parameters']}"
        )
        for item in modules["unmapped_types"]:
            paths = ", ".join(item["paths"][:3]) + (" ..." if len(item["paths"]) > 3 else "")
            lines.append(f"  unmapped {item['type']} x{item['count']}: {paths}")
        if self.ops is not None:
            lines.append(
                f"ops: {self.ops['translated_nodes']} of {self.ops['nodes']} nodes translated "
                f"({len(self.ops['distinct'])} distinct overloads)"
            )
        if self.decomposed_ops:
            lines.append(
                "decomposed with torch's tables (no direct translation): "
                + ", ".join(self.decomposed_ops)
            )
        if self.mutations["harmless"]:
            lines.append(
                f"harmless in-place updates (functionalized, or x[idx] = v on a temporary): "
                f"{len(self.mutations['harmless'])}"
            )
        if self.quantizable and self.ops is not None:
            group = self.ops["quantize_group_size"]
            names = ", ".join(item["target"] for item in self.quantizable)
            lines.append(f"quantizable parameters (group size {group}): {names}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Hazards in forward source: kind -> (blocker when no graph is examined, message, fix).

_HAZARDS: dict[str, tuple[bool, str, str]] = {
    "item": (
        False,
        ".item() reads a tensor's value into Python: torch.export traces it as a value known "
        "only from the data, which fails as soon as code branches on it or sizes a tensor by it",
        "keep the value a tensor (tensor arithmetic, torch.where) instead of calling .item()",
    ),
    "numpy": (
        True,
        ".numpy() leaves torch, so torch.export cannot trace what follows",
        "compute it with torch ops on the tensor instead of numpy",
    ),
    "tolist": (
        False,
        ".tolist() turns a tensor into Python values known only from the data: the capture "
        "fails if they decide a branch or a size",
        "index the tensor, or keep the values in a tensor",
    ),
    "tensor_control_flow": (
        True,
        "Python control flow on a tensor's value: torch.export cannot branch on data",
        "use torch.where(cond, a, b) for both branches, or torch.cond; branch on shapes or "
        "flags only",
    ),
    "attribute_mutation": (
        True,
        "forward updates a module attribute or buffer in place: state outside the call that "
        "an MLX model cannot keep",
        "return the new value from forward instead of storing it on the module",
    ),
    "input_mutation": (
        True,
        "forward writes into one of its inputs in place: the caller's MLX array cannot change",
        "work on a copy (x = x.clone()) or return the result instead of writing into the input",
    ),
    "inplace_local": (
        False,
        "in-place update of a temporary: functionalization removes it (harmless)",
        "",
    ),
    "hook": (
        False,
        "a hook runs code around forward: torch.export traces it into the graph or skips it, "
        "and the MLX model has no hooks",
        "remove the hook before conversion, or move its computation into forward",
    ),
    "autograd_function": (
        False,
        "a torch.autograd.Function: torch.export traces its forward, which must then be pure "
        "torch code (no custom kernel inside)",
        "call the torch ops of its forward directly (inference needs no custom backward)",
    ),
    "custom_extension": (
        True,
        "a call into a custom C++/CUDA extension, which MLX cannot run",
        "write the kernel in torch ops (or as an MLX op) so the graph holds only ATen ops",
    ),
}

_VALUE_METHODS = frozenset(
    [
        "any",
        "all",
        "sum",
        "max",
        "min",
        "mean",
        "prod",
        "norm",
        "nonzero",
        "item",
        "argmax",
        "argmin",
        "count_nonzero",
        "isnan",
        "isinf",
        "isfinite",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "equal",
        "allclose",
    ]
)
# torch.* calls in a condition that are about the program, not a tensor's values.
_TORCH_PREDICATES = frozenset(
    [
        "is_tensor",
        "is_grad_enabled",
        "is_floating_point",
        "is_complex",
        "is_autocast_enabled",
        "is_inference_mode_enabled",
        "compiler",
        "jit",
        "onnx",
        "_C",
        "cuda",
        "backends",
    ]
)
_HOOK_METHODS = frozenset(
    [
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_backward_hook",
        "register_full_backward_pre_hook",
        "register_hook",
    ]
)
_TORCH_OP_NAMESPACES = frozenset({"aten", "prims", "higher_order", "quantized_decomposed"})
_COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


def _chain(node: ast.AST) -> list[str]:
    """["torch", "ops", "mylib", "f"] for torch.ops.mylib.f; [] if not a plain chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return []


def _resolve(chain: list[str], namespace: dict) -> Any:
    """The object a dotted name refers to in a function's globals, looking only through
    modules and classes (no property or descriptor of an instance is run)."""
    if not chain or chain[0] not in namespace:
        return None
    value = namespace[chain[0]]
    for part in chain[1:]:
        if not isinstance(value, (types.ModuleType, type)):
            return None
        value = inspect.getattr_static(value, part, None)
    return value


def _is_tensor_valued(test: ast.AST) -> bool:
    for node in ast.walk(test):
        if not isinstance(node, ast.Call):
            continue
        chain = _chain(node.func)
        if chain[:1] == ["torch"] and len(chain) > 1:
            if chain[1] not in _TORCH_PREDICATES:
                return True
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in _VALUE_METHODS
            and (chain[:1] != ["self"] or len(chain) > 2)
        ):
            return True
    return False


def _self_attribute(node: ast.AST) -> str | None:
    """'steps' for self.steps, self.steps[...] or self.steps.data; else None."""
    while isinstance(node, ast.Subscript):
        node = node.value
    chain = _chain(node)
    if len(chain) >= 2 and chain[0] == "self":
        return ".".join(chain[1:])
    return None


def _root_name(node: ast.AST) -> str | None:
    """'x' for x and x[...]; None for anything through an attribute (cache.flags[i] is a
    Python object's state, not a tensor's)."""
    while isinstance(node, ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _HazardScanner(ast.NodeVisitor):
    def __init__(self, function: Any, file: str, first_line: int, arguments: set[str]):
        self.namespace = getattr(function, "__globals__", {})
        self.file = file
        self.first_line = first_line
        self.arguments = arguments  # forward's parameters, until reassigned
        self.found: list[tuple[str, int, str]] = []  # (kind, line, target)

    def _add(self, kind: str, node: ast.AST, target: str = "") -> None:
        self.found.append((kind, self.first_line + node.lineno - 1, target))

    def _mutation(self, target_node: ast.AST, at: ast.AST) -> None:
        attribute = _self_attribute(target_node)
        if attribute is not None:
            self._add("attribute_mutation", at, attribute)
            return
        name = _root_name(target_node)
        if name is None:
            return
        self._add("input_mutation" if name in self.arguments else "inplace_local", at, name)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                self._mutation(target, node)
            elif isinstance(target, ast.Attribute) and _self_attribute(target) is not None:
                self._add("attribute_mutation", node, _self_attribute(target) or "")
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    self.arguments.discard(name.id)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        self._mutation(node.target, node)

    def _control_flow(self, node: ast.If | ast.While | ast.IfExp | ast.Assert) -> None:
        if _is_tensor_valued(node.test):
            self._add("tensor_control_flow", node)
        self.generic_visit(node)

    visit_If = visit_While = visit_IfExp = visit_Assert = _control_flow

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        chain = _chain(func)
        if isinstance(func, ast.Attribute):
            method = func.attr
            if method in ("item", "numpy", "tolist") and not node.args:
                self._add(method, node)
            elif method in _HOOK_METHODS:
                self._add("hook", node, method)
            elif method == "apply" and self._is_autograd_function(func.value):
                self._add("autograd_function", node, ".".join(_chain(func.value)))
            elif method.endswith("_") and not method.startswith("_"):
                self._mutation(func.value, node)
        if len(chain) >= 3 and chain[:2] == ["torch", "ops"]:
            if chain[2] not in _TORCH_OP_NAMESPACES:
                self._add("custom_extension", node, ".".join(chain))
        elif chain and chain[0] != "torch" and self._is_extension(chain):
            self._add("custom_extension", node, ".".join(chain))

    def _is_autograd_function(self, node: ast.AST) -> bool:
        import torch

        value = _resolve(_chain(node), self.namespace)
        return isinstance(value, type) and issubclass(value, torch.autograd.Function)

    def _is_extension(self, chain: list[str]) -> bool:
        value = _resolve(chain[:1], self.namespace)
        module = value if isinstance(value, types.ModuleType) else None
        if module is None and callable(value) and inspect.isbuiltin(value):
            module = sys.modules.get(getattr(value, "__module__", "") or "")
        if module is None:
            return False
        name = module.__name__.split(".")[0]
        if name in ("torch", "numpy", "math", "builtins") or name in sys.stdlib_module_names:
            return False
        file = getattr(module, "__file__", "") or ""
        return file.endswith(_COMPILED_SUFFIXES)


def _forward_of(cls: type) -> Any:
    forward = inspect.getattr_static(cls, "forward", None)
    return inspect.unwrap(forward) if inspect.isfunction(forward) else None


def _scan_forward(cls: type) -> list[Finding]:
    function = _forward_of(cls)
    if function is None:
        return []
    try:
        file = inspect.getsourcefile(function) or ""
        lines, first_line = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return []
    code = function.__code__
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    arguments = set(code.co_varnames[:count]) - {"self"}
    scanner = _HazardScanner(function, file, first_line, arguments)
    scanner.visit(tree)
    findings = []
    type_name = f"{cls.__module__}.{cls.__qualname__}"
    for kind, line, target in scanner.found:
        blocker, message, fix = _HAZARDS[kind]
        code = lines[line - first_line].strip() if 0 <= line - first_line < len(lines) else ""
        findings.append(
            Finding(kind, blocker, message, fix, file, line, code, "", type_name, target)
        )
    return findings


def _hook_findings(model: Any) -> list[Finding]:
    import torch

    findings = []
    blocker, message, fix = _HAZARDS["hook"]
    global_hooks = [
        ("", getattr(torch.nn.modules.module, name, {}))
        for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
    ]
    for path, module in [*model.named_modules(), *global_hooks]:
        table = module if isinstance(module, dict) else None
        tables = (
            [table]
            if table is not None
            else [
                getattr(module, name, {})
                for name in (
                    "_forward_hooks",
                    "_forward_pre_hooks",
                    "_backward_hooks",
                    "_backward_pre_hooks",
                )
            ]
        )
        for hooks in tables:
            for hook in list(hooks.values()):
                function = inspect.unwrap(getattr(hook, "func", hook))
                code = getattr(function, "__code__", None)
                file = code.co_filename if code else ""
                line = code.co_firstlineno if code else 0
                name = getattr(function, "__qualname__", type(function).__name__)
                where = path or ("(global)" if table is not None else "")
                findings.append(
                    Finding(
                        "hook",
                        blocker,
                        message,
                        fix,
                        file,
                        line,
                        "",
                        where,
                        "" if table is not None else _type_name(module),
                        name,
                    )
                )
    return findings


def _type_name(module: Any) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def module_report(model: Any) -> tuple[dict, list[Finding]]:
    """The module walk: share mapped by modules and by parameters, unmapped types, and the
    hazards of every module class's forward (torch's own classes are not scanned)."""
    from torch2mlx.registry import find_entry

    modules: dict[str, tuple[str, bool, int, bool]] = {}
    classes: dict[type, None] = {}
    for path, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        owns_tensors = own > 0 or any(True for _ in module.buffers(recurse=False))
        modules[path] = (_type_name(module), find_entry(module) is not None, own, owns_tensors)
        classes.setdefault(type(module))
    report = _module_summary(modules)
    findings: list[Finding] = []
    for cls in classes:
        if not cls.__module__.startswith("torch."):
            findings += _scan_forward(cls)
    findings += _hook_findings(model)
    return report, findings


# ---------------------------------------------------------------------------------------
# Export failures: the first matching row names the blocker. (kind, exception type names
# anywhere in the chain or text in the message, message, fix.)

_EXPORT_FAILURES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str, str], ...] = (
    (
        "dynamic_dim_guard",
        ("ConstraintViolationError",),
        ("Constraints violated", "specialized it to be a constant", "not all values of"),
        "a dimension passed as dynamic is fixed (guarded) by the code",
        "drop that dimension from dynamic_shapes, or remove what fixes it (a check against a "
        "constant size, a reshape to a literal size); torch's suggested fix is in the message",
    ),
    (
        "data_dependent_control_flow",
        ("GuardOnDataDependentSymNode", "UserError"),
        ("data-dependent", "data dependent"),
        "the code branches on, or sizes a tensor by, a value known only from the data",
        "use torch.where(cond, a, b) (both branches computed), or torch.cond; branch on "
        "shapes, never on tensor values",
    ),
    (
        "unsupported_python",
        ("Unsupported",),
        (
            ".numpy()",
            "numpy",
            "tolist",
            "FakeTensor",
            "data pointer",
            "Cannot access data",
            "not supported",
        ),
        "Python that torch.export cannot trace",
        "rewrite this line with torch ops on tensors (no .numpy(), .tolist(), or Python "
        "values computed from tensors)",
    ),
)


def _chain_of(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _not_users(file: str) -> bool:
    import torch

    roots = [
        os.path.dirname(torch.__file__),
        os.path.dirname(os.path.abspath(__file__)),
        sysconfig.get_paths()["stdlib"],
    ]
    return file.startswith("<") or any(file.startswith(root + os.sep) for root in roots)


def user_frame_of(error: BaseException, model: Any = None) -> tuple[str, int, str]:
    """(file, line, code) of the innermost frame of the user's code in the traceback of
    `error` (or of the error it was raised from): not torch, not torch2mlx, not the stdlib.
    Frames that are outside the model's forward call (the caller of analyze) are found
    only when no frame inside it is."""
    best: tuple[str, int, str] = ("", 0, "")
    for item in reversed(_chain_of(error)):
        for frame in traceback.extract_tb(item.__traceback__):
            if not _not_users(frame.filename) and frame.lineno:
                best = (frame.filename, frame.lineno, (frame.line or "").strip())
    return best


def _export_blocker(
    error: BaseException, model: Any, example_inputs: Any, dynamic_shapes: Any
) -> Finding:
    errors = _chain_of(error)
    names = {type(item).__name__ for item in errors}
    text = "\n".join(str(item) for item in errors)
    lowered = text.lower()
    kind, message, fix = (
        "export_failure",
        "torch.export could not capture the model",
        "see torch's message; rewrite that code, or export the model yourself and pass the .pt2",
    )
    for row_kind, row_types, phrases, row_message, row_fix in _EXPORT_FAILURES:
        if names & set(row_types) or any(phrase.lower() in lowered for phrase in phrases):
            kind, message, fix = row_kind, row_message, row_fix
            break
    file, line, code = user_frame_of(error)
    if kind == "dynamic_dim_guard":
        file, line, code = _guard_frame(model, example_inputs, dynamic_shapes) or (
            file,
            line,
            code,
        )
        _, found, rest = str(errors[0]).partition("Suggested fixes:")
        suggested = [s.strip() for s in rest.strip().split("\n\n")[0].splitlines() if s.strip()]
        if found and suggested:
            fix += f" (torch suggests: {'; '.join(suggested[:4])})"
    root = errors[-1] if errors else error
    first = next((s for s in str(root).strip().splitlines() if s.strip()), "")
    return Finding(
        kind,
        True,
        f"{message} ({type(root).__name__}: {first.strip()})",
        fix,
        file,
        line,
        code,
        "",
        _type_name(model),
        "",
    )


def _violated(expr: Any, ranges: dict, hints: dict) -> bool:
    """Whether a shape guard fails for some value of its symbols within their range."""
    symbols = sorted(expr.free_symbols, key=str)
    if not symbols:
        return False
    samples = []
    for symbol in symbols:
        bounds = ranges.get(symbol)
        low = int(bounds.lower) if bounds is not None and bounds.lower.is_finite else 0
        high = int(bounds.upper) if bounds is not None and bounds.upper.is_finite else None
        hint = int(hints.get(symbol, low))
        values = [low, low + 1, hint - 1, hint + 1, 2 * hint + 1]
        if high is not None:
            values.append(high)
        samples.append([v for v in values if v >= low and (high is None or v <= high)])
    for index in range(min(len(values) for values in samples)):
        try:
            if not bool(expr.subs({s: v[index] for s, v in zip(symbols, samples, strict=True)})):
                return True
        except (TypeError, ValueError, ZeroDivisionError):
            continue
    return False


def _guard_frame(
    model: Any, example_inputs: Any, dynamic_shapes: Any
) -> tuple[str, int, str] | None:
    """The user's line that added a guard fixing a dynamic dimension: torch's message does
    not say, so the capture is repeated while each guard records the innermost user frame
    of the stack that created it, and the first guard that fails within the dimension's
    range is the one."""
    from torch.fx.experimental import symbolic_shapes

    from torch2mlx.capture import export_model

    recorded: list[tuple[Any, tuple[str, int, str]]] = []
    original = symbolic_shapes.ShapeGuard

    def recording(expr, sloc, *args, **kwargs):
        frame = sys._getframe(1)
        while frame is not None and _not_users(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is not None:
            code = (inspect.getframeinfo(frame).code_context or [""])[0].strip()
            recorded.append((expr, (frame.f_code.co_filename, frame.f_lineno, code)))
        return original(expr, sloc, *args, **kwargs)

    symbolic_shapes.ShapeGuard = recording
    environment = None
    try:
        export_model(model, example_inputs, dynamic_shapes)
    except Torch2MLXError as error:
        for item in _chain_of(error):
            trace = item.__traceback__
            while trace is not None and environment is None:
                candidate = trace.tb_frame.f_locals.get("self")
                if isinstance(candidate, symbolic_shapes.ShapeEnv):
                    environment = candidate
                trace = trace.tb_next
    finally:
        symbolic_shapes.ShapeGuard = original
    if environment is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hints = dict(getattr(environment, "backed_var_to_val", None) or environment.var_to_val)
    for expr, frame in recorded:
        if _violated(expr, environment.var_to_range, hints):
            return frame
    return None


# ---------------------------------------------------------------------------------------
# The graph: the core's rules and a dry run of the code generator.


def _codegen_blocker(program_json: str | bytes) -> Finding | None:
    """Runs the code generator in memory; its refusal becomes a blocker. The generated
    source also goes through the first checks of runtime.check_package."""
    from torch2mlx.runtime import _imported_modules

    text = program_json.decode() if isinstance(program_json, bytes) else program_json
    try:
        source = _core.generate_model(text, "model.json")["source"]
        tree = ast.parse(source)
        compile(tree, "model.py", "exec")
    except (Torch2MLXError, SyntaxError) as error:
        return Finding(
            "codegen", True, str(error), "see the message: it names the node, op and source line"
        )
    foreign = sorted(_imported_modules(tree) - {"mlx"} - set(sys.stdlib_module_names))
    if foreign:
        return Finding("codegen", True, f"the generated model.py imports {', '.join(foreign)}")
    return None


def graph_report(program_json: str | bytes, decomposed: list[str], dry_run: bool = True) -> dict:
    """The graph part of a report from a program's JSON: ops, findings, mutations,
    quantizable parameters (as dicts; see docs/analyzer.md)."""
    text = program_json.decode() if isinstance(program_json, bytes) else program_json
    raw = _core.analyze_graph(text, "model.json")
    findings = [
        Finding(
            item["kind"],
            item["blocker"],
            item["message"],
            item["fix"],
            item["source"]["file"],
            item["source"]["line"],
            item["source"]["code"],
            item["module_path"],
            item["module_type"],
            item["target"],
        )
        for item in raw["findings"]
    ]
    if dry_run and not any(f.kind in ("unsupported_op", "custom_kernel") for f in findings):
        blocker = _codegen_blocker(text)
        if blocker is not None:
            findings.append(blocker)
    nodes = raw["nodes"]
    ops = {
        "nodes": nodes,
        "translated_nodes": raw["translated_nodes"],
        "coverage": raw["translated_nodes"] / nodes if nodes else 1.0,
        "distinct": raw["ops"],
        "unsupported": [op["target"] for op in raw["ops"] if op["status"] != "translated"],
        "quantize_group_size": raw["quantize_group_size"],
    }
    harmless = [
        {
            "target": item["target"],
            "location": f"{item['source']['file']}:{item['source']['line']}"
            if item["source"]["file"]
            else "",
            "node": item["node"],
            "kind": "inplace_local",
        }
        for item in raw["harmless"]
    ]
    return {
        "ops": ops,
        "findings": findings,
        "quantizable": raw["quantizable"],
        "decomposed": decomposed,
        "harmless": harmless,
    }


def harmless_in_place(program: Any) -> list[dict]:
    """In-place writes into temporaries in the captured program, before the decomposition
    fallback functionalizes them: harmless, since nothing outside the call sees them.
    (Writes into inputs and buffers, through any views, are the core's aliasing findings.)"""
    import torch

    roots: dict[Any, Any] = {}
    found = []
    for node in program.graph.nodes:
        if node.op == "placeholder":
            roots[node] = node
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        first = next((arg for arg in node.args if isinstance(arg, torch.fx.Node)), None)
        name = node.target._schema.name.split("::")[-1]
        in_place = name.endswith("_") and not name.startswith("__")
        if (in_place or node.target.is_view) and first in roots:
            roots[node] = roots[first]
        elif in_place:
            frame = _core.user_frame(node.meta.get("stack_trace") or "")
            location = f"{frame['file']}:{frame['line']}" if frame["file"] else ""
            found.append(
                {
                    "target": str(node.target),
                    "location": location,
                    "node": node.name,
                    "kind": "inplace_local",
                }
            )
    return found


def _apply_graph(report: PortabilityReport, graph: dict) -> None:
    report.graph_examined = True
    report.ops = graph["ops"]
    report.quantizable = graph["quantizable"]
    report.decomposed_ops = graph["decomposed"]
    report.mutations["harmless"] = [*graph.get("captured_harmless", []), *graph["harmless"]]
    # With the graph in hand, source hazards are notes: the capture and the graph rules
    # decide (a hazard that matters shows up there, at its line).
    for finding in report.findings:
        finding.blocker = False
    report.findings += graph["findings"]


def _classify_mutations(report: PortabilityReport) -> None:
    """Harmless (temporaries) apart from aliasing (inputs, buffers, parameters): from the
    graph when it was examined, else from the source."""
    graph_kinds = {"aliasing_mutation"}
    source_kinds = {"attribute_mutation", "input_mutation"}
    for finding in report.findings:
        entry = {"target": finding.target, "location": finding.location, "kind": finding.kind}
        if finding.kind in (graph_kinds if report.graph_examined else source_kinds):
            report.mutations["aliasing"].append(entry)
        elif finding.kind == "inplace_local" and not report.graph_examined:
            report.mutations["harmless"].append(entry)


def _finish(report: PortabilityReport) -> PortabilityReport:
    _classify_mutations(report)
    if report.blockers:
        report.verdict = "blocked"
    elif report.graph_examined:
        report.verdict = "convertible"
    else:
        report.verdict = "undetermined"
    return report


@contextlib.contextmanager
def _training_restored(model: Any) -> Iterator[None]:
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def analyze(
    model: Any, example_inputs: Any = None, dynamic_shapes: Any = None
) -> PortabilityReport:
    """A portability report for ``model`` (a ``torch.nn.Module``, or the path of a ``.pt2``).

    Without ``example_inputs`` the module tree and forward sources are examined; with them
    the model is also captured as ``convert`` captures it and the graph is checked. The
    model, its parameters and its buffers are not changed.
    """
    if isinstance(model, (str, Path)):
        return analyze_pt2(model)
    import torch

    from torch2mlx.capture import (
        decompose_untranslated,
        export_model,
        save_program,
        split_inputs,
        without_cache_outputs,
    )

    if not isinstance(model, torch.nn.Module):
        raise Torch2MLXError(
            f"[analyze] expected a torch.nn.Module or a .pt2 path, got {type(model).__name__}"
        )
    modules, findings = module_report(model)
    report = PortabilityReport(_type_name(model), "undetermined", False, modules, None, findings)
    if example_inputs is None:
        return _finish(report)
    report.export = {"attempted": True, "ok": False}
    with _training_restored(model), without_cache_outputs(model, split_inputs(example_inputs)[1]):
        try:
            program = export_model(model, example_inputs, dynamic_shapes)
        except Torch2MLXError as error:
            cause = error.__cause__ or error
            report.export["error"] = f"{type(cause).__name__}: {str(cause).strip()[:2000]}"
            for finding in report.findings:
                finding.blocker = False  # the capture's own failure is the blocker
            report.findings.append(_export_blocker(cause, model, example_inputs, dynamic_shapes))
            return _finish(report)
        report.export["ok"] = True
        harmless = harmless_in_place(program)
        program, decomposed = decompose_untranslated(program)
        with tempfile.TemporaryDirectory(prefix="torch2mlx-analyze-") as scratch:
            archive = save_program(program, Path(scratch) / "model.pt2")
            program_json = _core.read_pt2(str(archive), headers_only=True)["program_json"]
    graph = graph_report(program_json, decomposed)
    graph["captured_harmless"] = harmless
    _apply_graph(report, graph)
    return _finish(report)


def _module_summary(modules: dict[str, tuple[str, bool, int, bool]]) -> dict:
    """The module part of a report from {path: (type, mapped, own parameters, owns
    tensors)}."""
    counts = {"mapped": 0, "composite": 0, "unmapped": 0}
    unmapped: dict[str, list[str]] = {}
    total_parameters = mapped_parameters = 0
    for path, (type_name, mapped, own, owns_tensors) in modules.items():
        total_parameters += own
        if mapped:
            counts["mapped"] += 1
            mapped_parameters += own
        elif owns_tensors:
            counts["unmapped"] += 1
            unmapped.setdefault(type_name, []).append(path or "(root)")
        else:
            counts["composite"] += 1
    total = len(modules)
    return {
        "total": total,
        **counts,
        "parameters": total_parameters,
        "parameters_mapped": mapped_parameters,
        "share_by_modules": (counts["mapped"] + counts["composite"]) / total if total else 1.0,
        "share_by_parameters": mapped_parameters / total_parameters if total_parameters else 1.0,
        "unmapped_types": [
            {"type": name, "count": len(paths), "paths": paths}
            for name, paths in sorted(unmapped.items(), key=lambda item: -len(item[1]))
        ],
    }


def _graph_modules(archive: dict) -> dict:
    """The module part of a report for a .pt2: modules from the nodes' nn_module_stack
    (exact type names: the class itself is not imported), tensors from the signature."""
    from torch2mlx.registry import layer_registry

    registry = layer_registry()
    sizes = {name: math.prod(shape) for name, _, shape, *_ in archive["weights"]}
    owned: dict[str, list[tuple[str, str]]] = {}
    for item in archive["inputs"]:
        if item["kind"] in ("parameter", "buffer"):
            owner, _, _ = item["target"].rpartition(".")
            owned.setdefault(owner, []).append((item["kind"], item["target"]))
    modules: dict[str, tuple[str, bool, int, bool]] = {}
    for node in archive["nodes"]:
        for _, path, type_name in node["module_stack"]:
            tensors = owned.get(path, [])
            own = sum(sizes.get(target, 0) for kind, target in tensors if kind == "parameter")
            modules[path] = (type_name, type_name in registry, own, bool(tensors))
    return _module_summary(modules)


def analyze_pt2(path: str | Path) -> PortabilityReport:
    """The graph report of a .pt2 archive, read by our reader (torch never loads it)."""
    path = Path(path)
    archive = _core.read_pt2(str(path), headers_only=True)
    report = PortabilityReport(str(path), "undetermined", False, _graph_modules(archive))
    report.export = {"attempted": False, "note": "a .pt2 archive: the graph is read as saved"}
    _apply_graph(report, graph_report(archive["program_json"], []))
    return _finish(report)


def report_for_package(
    model: Any, archive: Path, decomposed: list[str], harmless: list[dict]
) -> dict:
    """The report convert writes into report.json: the same analysis, on the graph that
    convert translated (no second capture, no dry run of the generator that just ran). The
    archive may hold its parameters on the meta device: only the graph is read."""
    read = _core.read_pt2(str(archive), headers_only=True, allow_meta_weights=True)
    if model is None:
        modules, findings, name = _graph_modules(read), [], str(archive)
    else:
        modules, findings = module_report(model)
        name = _type_name(model)
    report = PortabilityReport(name, "undetermined", False, modules, None, findings)
    report.export = {"attempted": model is not None, "ok": True}
    graph = graph_report(read["program_json"], decomposed, dry_run=False)
    graph["captured_harmless"] = harmless
    _apply_graph(report, graph)
    return _finish(report).to_dict()
