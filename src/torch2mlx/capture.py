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


def export_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None):
    """``torch.export.export`` of ``model`` in eval mode; errors name what to change."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise Torch2MLXError(
            f"[capture] expected a torch.nn.Module, got {type(model).__name__}: pass the model "
            "object, or a .pt2 archive path to the CLI"
        )
    model.eval()
    args, kwargs = split_inputs(example_inputs)
    try:
        with torch.no_grad(), export_workarounds():
            return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes)
    except Exception as error:  # torch raises many types here; keep its message
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise Torch2MLXError(
            f"[capture] torch.export could not capture {type(model).__name__}: "
            f"{type(error).__name__}: {first_line}. Fix the inputs or dynamic_shapes named "
            "above; data-dependent control flow, untraceable Python and custom kernels also "
            "stop torch.export (rewrite that code, or export the model yourself and pass the "
            ".pt2 archive)"
        ) from error


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
