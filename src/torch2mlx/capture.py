"""Capturing a live ``torch.nn.Module`` with ``torch.export``, with readable diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
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
        with torch.no_grad():
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


def save_program(program: Any, path: Path) -> Path:
    """Writes an ExportedProgram as a .pt2 archive."""
    import torch

    torch.export.save(program, str(path))
    return path
