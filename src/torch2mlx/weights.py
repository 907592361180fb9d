"""Weight conversion keyed on module types, and `to_mlx_module` for sequential models."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from torch2mlx import _core
from torch2mlx.registry import (
    constructor_arguments,
    find_entry,
    layer_registry,
    resolve_class,
    torch_type_name,
)

_SEQUENTIAL = "torch.nn.modules.container.Sequential"
_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1}


class ConversionWarning(UserWarning):
    """Something about a conversion the user should know (layouts not converted, ...)."""


def module_map(model: Any) -> list[tuple[str, str, int]]:
    """(path, fully qualified type, groups) for every module of a live torch model, or of
    the program in a .pt2 archive (from each node's nn_module_stack; no torch needed)."""
    if isinstance(model, (str, os.PathLike)):
        return _program_module_map(Path(model))
    modules = []
    for path, module in model.named_modules(remove_duplicate=False):
        entry = find_entry(module)
        type_name = entry.torch_type if entry is not None else torch_type_name(module)
        modules.append((path, type_name, int(getattr(module, "groups", 1) or 1)))
    return modules


def _program_module_map(path: Path) -> list[tuple[str, str, int]]:
    if _core.detect_format(os.fspath(path)) != "pt2":
        raise ValueError(
            f"[convert] {path}: model= takes a torch module or a .pt2 archive "
            "(torch.export.save), and this file is neither"
        )
    program = _core.read_pt2(os.fspath(path), headers_only=True)
    types: dict[str, str] = {"": ""}
    groups: dict[str, int] = {}
    for node in program["nodes"]:
        for _, module_path, module_type in node["module_stack"]:
            types.setdefault(module_path, module_type)
        if node["module_stack"] and "groups" in node:
            groups[node["module_stack"][-1][1]] = int(node["groups"])
    # The root module's type is not in the stacks: it owns only its own parameters.
    return [(p, t, groups.get(p, 1)) for p, t in sorted(types.items()) if p or t]


def quantizable_layers(modules: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
    """(path, type) of the modules whose weights MLX quantizes: those that become
    mlx.nn.Linear or mlx.nn.Embedding, as nn.quantize would pick them."""
    registry = layer_registry()
    return [
        (path, type_name)
        for path, type_name, _ in modules
        if type_name in registry
        and registry[type_name].mlx_layer in ("mlx.nn.Linear", "mlx.nn.Embedding")
    ]


def start_digest(src: str | os.PathLike[str]) -> Any:
    """Starts hashing ``src`` (SHA-256; a folder's index and shards) on a background thread,
    for convert_weights. The files are those the conversion will read, in the same order."""
    path = os.fspath(src)
    files = [path] if os.path.isfile(path) else _core.read_checkpoint(path, True)["files"]
    return _core.FileDigest(files)


def parse_size(size: int | str) -> int:
    """5000000000, "5GB" or "500MB" -> bytes."""
    if isinstance(size, int):
        return size
    text = size.strip().lower()
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def convert_weights(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: Any = None,
    dtype: str | None = None,
    quantize: dict[str, int] | None = None,
    *,
    reverse: bool = False,
    shard_size: int | str = "5GB",
    keep_unknown: bool = False,
    progress: bool = True,
    digest: Any = None,
) -> dict[str, Any]:
    """Converts a torch checkpoint into MLX safetensors (or back, with ``reverse=True``).

    With a ``model`` (a torch ``nn.Module``), every tensor gets the rule of the module type
    that owns it (conv weights become channels-last, Sequential children move under
    ``layers``, BatchNorm bookkeeping is dropped...), and the result loads strictly into
    ``to_mlx_module(model)``. Without one, tensors are copied unchanged and a warning says so.
    ``quantize={"bits": 4, "group_size": 64}`` quantizes the weights of the layers that
    ``mlx.nn.quantize`` would (Linear and Embedding whose last dim splits into whole groups),
    bit-identically to ``mx.quantize``; the result loads into ``nn.quantize(to_mlx_module(model))``.
    ``"mode"`` picks MLX's mode (affine, mxfp4, mxfp8, nvfp4), ``"recipe"`` a mixed recipe
    (``torch2mlx.quantization.RECIPES``) and ``"predicate"`` a callable (path, module type)
    returning True, False or a setting dict, per layer; the metadata's ``quantization``
    records the default and each layer that differs, as mlx-lm's config.json does.
    Writes ``dst`` (or shards plus an index), and ``dst + ".key_map.json"`` when names change.
    The metadata records the SHA-256 of ``src`` (of a folder: ``name:sha256`` of its index and
    each shard, comma-separated), hashed while the tensors are written; pass
    ``digest=start_digest(src)``, made earlier, to overlap the hashing with other work too.
    Returns a report of what was done.
    """
    from torch2mlx.quantization import config_block, core_layers, plan_from

    plan = plan_from(quantize)
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"[convert] {dst}: the output must be a .safetensors path")
    if model is None and not reverse and _core.detect_format(os.fspath(src)) == "pt2":
        model = src  # a .pt2 archive carries its own module tree
    modules = module_map(model) if model is not None else []
    layers = plan.layers(quantizable_layers(modules)) if plan is not None else {}
    if model is None:
        warnings.warn(
            f"{src}: no model given, so layouts were not converted (tensors are copied as "
            "torch stores them); pass model= to apply the registry's layout rules",
            ConversionWarning,
            stacklevel=2,
        )
    from torch2mlx import __version__  # here, not at the top: torch2mlx imports this module

    metadata = {
        "format": "pt" if reverse else "mlx",
        **({"quantization": json.dumps(config_block(plan, layers))} if plan else {}),
        "torch2mlx_version": __version__,
        "source": src.name,
    }
    bar = _ProgressBar(f"converting {src.name}") if progress else None
    started = time.perf_counter()
    created = _make_parents(dst.parent)
    try:
        report = _core.convert_weights(
            os.fspath(src),
            os.fspath(dst),
            modules,
            dtype,
            plan.default.bits if plan else 0,
            plan.default.group_size if plan else 64,
            parse_size(shard_size),
            reverse,
            keep_unknown,
            metadata,
            "source_sha256",  # filled in by the core: hashed while the tensors are written
            digest,
            bar.update if bar is not None else None,
            plan.default.mode if plan else "affine",
            core_layers(layers),
        )
    except BaseException:
        for folder in reversed(created):  # a failed conversion leaves nothing behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    report["seconds"] = time.perf_counter() - started
    if report["unknown"]:
        warnings.warn(
            f"{src}: kept unchanged, no rule covers: {'; '.join(report['unknown'])}",
            ConversionWarning,
            stacklevel=2,
        )
    if report["renamed"]:
        key_map = Path(f"{dst}.key_map.json")
        _write_json_atomically(key_map, dict(sorted(report["renamed"].items())))
        report["key_map"] = os.fspath(key_map)
    return report


def to_mlx_module(model: Any) -> Any:
    """Builds the MLX module for a torch model whose forward composes its children in order
    (``nn.Sequential``, the ``nn.Transformer*`` classes, or any single registered layer), with
    the model's weights loaded and in eval mode.

    A Sequential takes and returns torch's layout (NCHW) and runs channels-last inside; a
    single convolution, pool or channel norm takes MLX's channels-last layout.
    """
    mlx_model = _build(model, "")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "model.safetensors"
        target = Path(folder) / "mlx.safetensors"
        _save_state_dict(model, source)
        convert_weights(source, target, model=model, progress=False)
        mlx_model.load_weights(os.fspath(target), strict=True)
    mlx_model.eval()
    return mlx_model


def _build(module: Any, path: str) -> Any:
    entry = find_entry(module)
    if entry is None:
        raise TypeError(
            f"[registry] module '{path or '(root)'}' of type {torch_type_name(module)} is not in "
            "the layer registry, and its forward is arbitrary Python: translate the whole model "
            "with torch2mlx.convert instead, or add the type to cpp/src/registry.cpp"
        )
    if entry.torch_type == _SEQUENTIAL:
        from torch2mlx.layout import Sequential

        children = list(module.named_children())
        layers = [_build(child, f"{path}.{name}" if path else name) for name, child in children]
        layouts = [find_entry(child).layout for _, child in children]
        return Sequential(layers, layouts)
    cls = resolve_class(entry.mlx_layer)
    if entry.arguments == ":from_torch":
        return cls.from_torch(module)
    return cls(**constructor_arguments(entry, module))


def _save_state_dict(model: Any, path: Path) -> None:
    import ml_dtypes
    import torch

    from torch2mlx.checkpoint import save_safetensors

    arrays = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            arrays[name] = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            arrays[name] = tensor.numpy()
    save_safetensors(path, arrays)


def _make_parents(folder: Path) -> list[Path]:
    """Creates `folder` and any missing parents; returns those created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _write_json_atomically(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


class _ProgressBar:
    """A progress bar on stderr that appears only for jobs longer than a second or so."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.perf_counter()
        self.progress: Any = None
        self.task: Any = None

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            if time.perf_counter() - self.started < 1.5 or done >= total:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


__all__ = ["ConversionWarning", "convert_weights", "layer_registry", "module_map", "to_mlx_module"]
