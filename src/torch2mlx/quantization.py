"""Quantization settings: every MLX mode, mixed recipes, and the ``quantization`` block of
``config.json`` in the form mlx-lm reads.

A setting is ``{"bits": 4, "group_size": 64, "mode": "affine"}`` (bits and group size
default to the mode's). A recipe or a predicate gives some layers their own setting (or
none: left in float). The core quantizes bit for bit as ``mx.quantize``; which layers is
decided here, by name, before a byte is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.numerics import QUANT_MODES

# mlx-lm's mixed recipes (mlx_lm.convert, after llama.cpp's Q4_K_M): (low bits, high bits).
# The LM head, and v_proj/down_proj in the first and last eighth of the layers and every
# third layer between, get the high bits; everything else the low bits; group size 64.
MIXED_RECIPES = {"mixed_2_6": (2, 6), "mixed_3_4": (3, 4), "mixed_3_6": (3, 6), "mixed_4_6": (4, 6)}
# Our own preset: the chosen setting everywhere but the embeddings and the LM head, which
# keep 8-bit affine (group 64): the layers where quantization error costs the most.
EDGE_RECIPES = {"edges_8": (8, 64)}
RECIPES = (*MIXED_RECIPES, *EDGE_RECIPES)

# Module names that are a language model's output projection.
_HEAD_NAMES = ("lm_head", "embed_out", "output_projection")
_EMBEDDING_TYPES = ("Embedding",)


@dataclass(frozen=True)
class QuantSpec:
    bits: int
    group_size: int
    mode: str = "affine"

    def as_dict(self) -> dict[str, Any]:
        return {"group_size": self.group_size, "bits": self.bits, "mode": self.mode}


def make_spec(bits: int | None = None, group_size: int | None = None, mode: str = "affine"):
    """A validated setting: the mode exists and takes these bits and this group size."""
    if mode not in QUANT_MODES:
        raise Torch2MLXError(
            f"[quantize] unknown mode '{mode}': use one of {', '.join(QUANT_MODES)}"
        )
    table = QUANT_MODES[mode]
    default_bits, default_group = table["default"]
    bits = default_bits if bits is None else int(bits)
    group_size = default_group if group_size is None else int(group_size)
    if bits not in table["bits"] or group_size not in table["group_size"]:
        allowed = (
            f"bits {', '.join(map(str, table['bits']))} and group sizes "
            f"{', '.join(map(str, table['group_size']))}"
        )
        raise Torch2MLXError(
            f"[quantize] mode {mode} takes {allowed}, not {bits} bits with group size "
            f"{group_size}: pass one of those (--quantize BITS --group-size N), or leave them "
            "out for the mode's own"
        )
    return QuantSpec(bits, group_size, mode)


@dataclass
class QuantPlan:
    """What to quantize: a default setting, and a recipe or predicate for some layers."""

    default: QuantSpec
    recipe: str | None = None
    predicate: Callable[[str, str], bool | dict] | None = None

    def layers(self, modules: Iterable[tuple[str, str]]) -> dict[str, QuantSpec | None]:
        """The setting of each quantizable layer (path, type) that differs from the
        default: a QuantSpec, or None to leave it in float."""
        modules = list(modules)
        table: dict[str, QuantSpec | None] = {}
        count = _layer_count(path for path, _ in modules)
        for path, kind in modules:
            spec = self._spec_for(path, kind, count)
            if spec != self.default:
                table[path] = spec
        return table

    def _spec_for(self, path: str, kind: str, count: int) -> QuantSpec | None:
        if self.predicate is not None:
            answer = self.predicate(path, kind)
            if answer is True:
                return self.default
            if not answer:
                return None
            if isinstance(answer, dict):
                return make_spec(answer.get("bits"), answer.get("group_size"), answer["mode"])
            raise Torch2MLXError(
                f"[quantize] the predicate returned {answer!r} for '{path}': return True, "
                "False, or a dict with bits, group_size and mode"
            )
        name = path.rsplit(".", 1)[-1]
        if self.recipe in MIXED_RECIPES:
            low, high = MIXED_RECIPES[self.recipe]
            index = _layer_index(path)
            more = index is not None and (
                index < count // 8 or index >= 7 * count // 8 or (index - count // 8) % 3 == 2
            )
            if name in _HEAD_NAMES or (more and name in ("v_proj", "down_proj")):
                return QuantSpec(high, 64, "affine")
            return QuantSpec(low, 64, "affine")
        if self.recipe in EDGE_RECIPES:
            bits, group = EDGE_RECIPES[self.recipe]
            if name in _HEAD_NAMES or kind.rsplit(".", 1)[-1] in _EMBEDDING_TYPES:
                return QuantSpec(bits, group, "affine")
        return self.default


def plan_from(quantize: dict | None) -> QuantPlan | None:
    """A QuantPlan from ``quantize={"bits", "group_size", "mode", "recipe", "predicate"}``."""
    if not quantize:
        return None
    options = dict(quantize)
    bits = options.pop("bits", None)
    group_size = options.pop("group_size", None)
    mode = options.pop("mode", None) or "affine"
    recipe = options.pop("recipe", None)
    predicate = options.pop("predicate", None)
    if options:
        raise Torch2MLXError(
            f"[quantize] quantize= takes bits, group_size, mode, recipe and predicate, not "
            f"{', '.join(sorted(options))}"
        )
    if recipe is not None and recipe not in RECIPES:
        raise Torch2MLXError(
            f"[quantize] unknown recipe '{recipe}': use one of {', '.join(RECIPES)}"
        )
    if recipe in MIXED_RECIPES:
        if mode != "affine":
            raise Torch2MLXError(
                f"[quantize] recipe {recipe} is mlx-lm's affine mix; it takes no mode {mode}"
            )
        low, _ = MIXED_RECIPES[recipe]
        default = make_spec(low if bits is None else bits, group_size or 64, "affine")
    else:
        default = make_spec(bits, group_size, mode)
    if predicate is not None and not callable(predicate):
        raise Torch2MLXError("[quantize] predicate must be a callable (path, module_type)")
    return QuantPlan(default, recipe, predicate)


def config_block(plan: QuantPlan, layers: dict[str, QuantSpec | None]) -> dict[str, Any]:
    """``config.json``'s quantization block as mlx-lm reads it: the default setting, then
    each layer that differs (its setting, or false for a layer kept in float)."""
    block: dict[str, Any] = plan.default.as_dict()
    for path, spec in sorted(layers.items()):
        block[path] = spec.as_dict() if spec is not None else False
    return block


def core_layers(layers: dict[str, QuantSpec | None]) -> dict[str, tuple[int, int, str] | None]:
    """The per-layer table as the core takes it."""
    return {
        path: None if spec is None else (spec.bits, spec.group_size, spec.mode)
        for path, spec in layers.items()
    }


def _layer_index(path: str) -> int | None:
    match = re.search(r"\.(\d+)(\.|$)", path)
    return int(match.group(1)) if match else None


def _layer_count(paths: Iterable[str]) -> int:
    indices = {index for index in map(_layer_index, paths) if index is not None}
    return max(indices) + 1 if indices else 0


def quantize_predicate(block: dict[str, Any], weights: Iterable[str]) -> Callable:
    """The class_predicate that loads a quantized package or mlx-lm folder, as mlx-lm's
    load: a layer's own entry in the block, else whether its scales are in the weights."""
    names = set(weights)

    def predicate(path: str, module: Any) -> bool | dict:
        if path in block:
            return block[path]
        return hasattr(module, "to_quantized") and f"{path}.scales" in names

    return predicate
