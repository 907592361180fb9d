"""Capturing a live ``torch.nn.Module`` with ``torch.export``, with readable diagnostics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError


def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """Positional and keyword example inputs from a tensor, a tuple/list, or a dict."""
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def _mask_as_given(mask: Any, is_causal: bool | None = None, size: int | None = None) -> bool:
    """torch's _detect_is_causal_mask without the look at the mask's values."""
    return is_causal is True


@contextlib.contextmanager
def without_cache_outputs(model: Any, kwargs: dict) -> Iterator[None]:
    """Hugging Face decoders return a DynamicCache when ``config.use_cache`` is on, which
    torch.export cannot put in an output. Unless the caller passed ``use_cache``, the model
    is captured with the cache off: the converted model computes logits for the whole
    sequence (incremental decoding with a cache is a separate form of the model)."""
    config = getattr(model, "config", None)
    if "use_cache" in kwargs or not getattr(config, "use_cache", False):
        yield
        return
    config.use_cache = False
    try:
        yield
    finally:
        config.use_cache = True


@contextlib.contextmanager
def export_workarounds() -> Iterator[None]:
    """Works around torch.export's own blockers in torch.nn while a model is captured.

    - nn.Transformer and nn.TransformerEncoder/Decoder detect whether a mask is causal by
      comparing its values (``_detect_is_causal_mask``): a data-dependent guard export
      cannot trace. During capture the mask is used as given (``is_causal=False``), which
      torch documents as always correct (the hint only selects a faster kernel).
    """
    from torch.nn.modules import transformer

    original = transformer._detect_is_causal_mask
    transformer._detect_is_causal_mask = _mask_as_given
    try:
        yield
    finally:
        transformer._detect_is_causal_mask = original


@contextlib.contextmanager
def batched_experts(model: Any) -> Iterator[None]:
    """Mixture-of-experts layers of ``transformers`` (Mixtral, Qwen-MoE, ...) run their
    experts through a custom op by default (``grouped_mm``, a kernel outside ATen that no
    graph translation can read) or a loop over experts with data-dependent sizes (``eager``).
    During capture they run as ``batched_mm``: each token gathers its experts' weights and
    multiplies them in one batched matmul, ATen ops only, with the same result."""
    configs = {
        id(config): config
        for module in model.modules()
        if (config := getattr(module, "config", None)) is not None
        and getattr(config, "_experts_implementation", None) not in (None, "batched_mm")
    }
    previous = {key: config._experts_implementation for key, config in configs.items()}
    for config in configs.values():
        config._experts_implementation = "batched_mm"
    try:
        yield
    finally:
        for key, config in configs.items():
            config._experts_implementation = previous[key]


# Which axes of an example input are batch or sequence axes, by (integer or not, rank):
# token ids and masks are (batch, sequence); float sequences are (batch, sequence, features)
# or (sequence, batch, features) for recurrent nets, and (batch, channels, time) for 1-D
# convolutions; images are batch only (height and width are sizes of the model, often fixed
# by a linear layer after them). Axis 0 is the batch everywhere else.
_AUTO_AXES: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 2): (0, 1),
    (False, 3): (0, 1, 2),
}


def default_dynamic_shapes(example_inputs: Any) -> Any:
    """``Dim.AUTO`` on the batch and sequence axes of every tensor input, for ``torch.export``.

    AUTO lets torch decide: an axis stays dynamic unless the model fixes it (a linear layer
    over it, a size-1 example, a check in the code), in which case it is specialized without
    an error. So a model that can run at any batch or sequence length converts into a
    ``model.py`` that takes its sizes from ``x.shape``, and one that cannot is captured as
    before.
    """
    import torch
    from torch.utils import _pytree

    def spec(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.ndim == 0:
            return None
        integer = not (value.dtype.is_floating_point or value.dtype.is_complex)
        axes = _AUTO_AXES.get((integer, value.ndim), (0,))
        return dict.fromkeys(axes, torch.export.Dim.AUTO)

    args, kwargs = split_inputs(example_inputs)
    if kwargs:
        return {name: _pytree.tree_map(spec, value) for name, value in kwargs.items()}
    return tuple(_pytree.tree_map(spec, value) for value in args)


def export_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None):
    """``torch.export.export`` of ``model`` in eval mode; errors name what to change.

    ``dynamic_shapes=None`` makes the batch and sequence axes dynamic where the model
    allows (``default_dynamic_shapes``); ``False`` fixes every size to the example inputs.
    """
    import torch

    # The default tries dynamic batch and sequence axes first and falls back to the example
    # sizes: torch can fail on a symbolic size where a number would do (a size compared in
    # Python code it cannot guard), and such a model still converts, for those sizes.
    attempts = [dynamic_shapes]
    if dynamic_shapes is None:
        attempts = [default_dynamic_shapes(example_inputs), None]
    elif dynamic_shapes is False:
        attempts = [None]

    if not isinstance(model, torch.nn.Module):
        raise Torch2MLXError(
            f"[capture] expected a torch.nn.Module, got {type(model).__name__}: pass the model "
            "object, or a .pt2 archive path to the CLI"
        )
    model.eval()
    args, kwargs = split_inputs(example_inputs)
    failure: Exception = AssertionError("no export attempted")
    for shapes in attempts:
        try:
            with torch.no_grad(), export_workarounds(), batched_experts(model):
                return torch.export.export(model, args, kwargs, dynamic_shapes=shapes)
        except Exception as error:  # torch raises many types here; the last one is reported
            failure = error
    message = str(failure).strip()
    first_line = message.splitlines()[0] if message else repr(failure)
    raise Torch2MLXError(
        f"[capture] torch.export could not capture {type(model).__name__}: "
        f"{type(failure).__name__}: {first_line}. Fix the inputs or dynamic_shapes named "
        "above; data-dependent control flow, untraceable Python and custom kernels also "
        "stop torch.export (rewrite that code, or export the model yourself and pass the "
        ".pt2 archive)"
    ) from failure


# How many rounds of decomposition to try: a decomposition may itself use an op that needs
# decomposing (cdist -> _cdist_forward is one round; none seen needs more than two).
_MAX_DECOMPOSITION_ROUNDS = 4


def _untranslated_ops(program: Any, supported: set[str]) -> set[Any]:
    import torch

    return {
        node.target
        for node in program.graph.nodes
        if node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
        and str(node.target) not in supported
    }


def _writes_through_a_view(program: Any) -> bool:
    """Whether an in-place op writes into a view of another tensor (`t[:, 2] = x`)."""
    import torch

    def is_view(node: Any) -> bool:
        schema = getattr(node.target, "_schema", None)
        return (
            isinstance(node.target, torch._ops.OpOverload)
            and not schema.is_mutable
            and any(r.alias_info is not None for r in schema.returns)
        )

    for node in program.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        for argument, value in zip(node.target._schema.arguments, node.args, strict=False):
            written = argument.alias_info is not None and argument.alias_info.is_write
            node_input = isinstance(value, torch.fx.Node) and value.op == "call_function"
            if written and node_input and is_view(value):
                return True
    return False


def decompose_untranslated(program: Any) -> tuple[Any, list[str]]:
    """Decomposes, with torch's own tables, the ops torch2mlx has no translation for.

    Only those ops are decomposed (``run_decompositions`` with a table restricted to them),
    so attention, norms and convolutions that translate directly stay whole. Returns the
    program and the names of the ops that were decomposed, in order. Ops with no
    decomposition are left for the code generator to refuse by name.
    """
    import torch

    from torch2mlx import _core

    supported = set(_core.supported_ops())
    defaults = torch.export.default_decompositions()
    decomposed: list[str] = []
    if _writes_through_a_view(program):
        # `table[:, :, 2] = x` on a temporary writes through a view (select, then copy_):
        # translated op by op, the write would be lost. Functionalization (an empty table
        # decomposes nothing else) turns it into select_scatter, which translates.
        program = program.run_decompositions({})
    for _ in range(_MAX_DECOMPOSITION_ROUNDS):
        missing = _untranslated_ops(program, supported)
        table = {op: defaults[op] for op in missing if op in defaults}
        # Composite ops outside the default table (reshape_as, swapaxes, ...) decompose
        # through their own implementation whenever run_decompositions runs at all.
        implicit = {
            op
            for op in missing
            if op not in table
            and op.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd)
        }
        if not table and not implicit:
            break
        program = program.run_decompositions(table)
        left = _untranslated_ops(program, supported)
        done = sorted(str(op) for op in missing - left)
        if not done:
            break
        decomposed += done
    return program, decomposed


def save_program(program: Any, path: Path) -> Path:
    """Writes an ExportedProgram as a .pt2 archive."""
    import torch

    torch.export.save(program, str(path))
    return path
