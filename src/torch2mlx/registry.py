"""The layer registry as Python sees it: the C++ table, plus building MLX layers from it."""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from torch2mlx import _core


@dataclass(frozen=True)
class LayerEntry:
    """One torch module type and its MLX counterpart (see cpp/src/registry.cpp)."""

    torch_type: str
    mlx_layer: str
    arguments: str
    layout: str  # "any", "channels_last" or "torch_order"
    tensors: tuple[tuple[str, str], ...]  # (tensor name, transform)
    patterned: bool


@cache
def layer_registry() -> dict[str, LayerEntry]:
    """Every registry entry, by fully qualified torch type."""
    return {
        raw["torch_type"]: LayerEntry(
            raw["torch_type"],
            raw["mlx_layer"],
            raw["arguments"],
            raw["layout"],
            tuple(tuple(t) for t in raw["tensors"]),
            raw["patterned"],
        )
        for raw in _core.layer_registry()
    }


def torch_type_name(module: Any) -> str:
    """The fully qualified type name the registry is keyed on."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def find_entry(module: Any) -> LayerEntry | None:
    """The entry for a module's type, or for the nearest registered base class."""
    registry = layer_registry()
    for cls in type(module).__mro__:
        entry = registry.get(f"{cls.__module__}.{cls.__qualname__}")
        if entry is not None:
            return entry
    return None


def constructor_arguments(entry: LayerEntry, module: Any) -> dict[str, Any]:
    """Reads the MLX layer's constructor arguments off a torch module (see registry.h)."""
    arguments: dict[str, Any] = {}
    for spec in filter(None, entry.arguments.split(",")):
        keyword, _, source = spec.partition("=")
        source = source or keyword
        if source.startswith(":"):
            arguments[keyword] = ast.literal_eval(source[1:])
            continue
        source, _, default = source.partition("|")
        is_present = source.endswith("?")
        source = source.rstrip("?")
        index = None
        if source.endswith("]"):
            source, _, index_text = source[:-1].partition("[")
            index = int(index_text)
        value = module
        for part in source.split("."):
            value = getattr(value, part, None)
        if is_present:
            value = value is not None
        elif index is not None:
            value = value[index]
        if value is None and default:
            value = ast.literal_eval(default)
        arguments[keyword] = value
    return arguments


def resolve_class(name: str) -> type:
    """Imports "mlx.nn.Linear" or "torch2mlx.templates.LSTM"."""
    module_name, _, class_name = name.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)
