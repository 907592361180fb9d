"""Loading a converted package: ``torch2mlx.load(out_dir) -> mlx.nn.Module``."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError, inspect_checkpoint

_PACKAGE_HINT = (
    "pass the folder that `torch2mlx convert -o` or torch2mlx.convert wrote "
    "(read checkpoints with torch2mlx.load_state_dict)"
)


def _not_regular(path: Path) -> Torch2MLXError:
    return Torch2MLXError(
        f"[load] {path}: is not a regular file (a FIFO, a device or a folder); only regular "
        f"files are read: {_PACKAGE_HINT}"
    )


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file (a FIFO would block)."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise _not_regular(path)
        return file.read()


def _weight_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        weight_map = json.loads(_read_regular(index))["weight_map"]
        files = [directory / name for name in sorted(set(weight_map.values()))]
    else:
        raise Torch2MLXError(
            f"[load] {directory}: no model.safetensors or model.safetensors.index.json, so this "
            f"is not a complete package; {_PACKAGE_HINT}"
        )
    for path in files:
        # mx.load opens the file itself; a FIFO there would block it.
        if path.exists() and not path.is_file():
            raise _not_regular(path)
    return files


def load_model_class(directory: Path) -> type:
    """Imports ``model.py`` of a package under a name unique to its contents."""
    source = directory / "model.py"
    if not source.exists():
        raise Torch2MLXError(
            f"[load] {directory}: no model.py, so this is not a package written by "
            f"torch2mlx convert; {_PACKAGE_HINT}"
        )
    digest = hashlib.sha1(_read_regular(source)).hexdigest()[:12]
    name = f"torch2mlx_package_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return module.Model


def new_model(directory: Path, model_args: dict | None = None) -> Any:
    """The package's model, untrained: ``Model(ModelArgs(**model_args))`` when model.py reads
    its sizes from a ModelArgs dataclass (``model_args`` defaults to config.json's), else
    ``Model()``."""
    model_class = load_model_class(directory)
    module = sys.modules[model_class.__module__]
    if not hasattr(module, "ModelArgs"):
        return model_class()
    if model_args is None:
        path = directory / "config.json"
        config = json.loads(_read_regular(path)) if path.exists() else {}
        model_args = config.get("model_args")
        if not isinstance(model_args, dict):
            raise Torch2MLXError(
                f"[load] {path}: model.py reads its sizes from ModelArgs, but config.json has "
                f'no "model_args"; {_PACKAGE_HINT}'
            )
    try:
        args = module.ModelArgs(**model_args)
    except TypeError as error:
        raise Torch2MLXError(
            f"[load] {directory}: config.json's model_args do not fit model.py's ModelArgs "
            f"({error}); {_PACKAGE_HINT}"
        ) from None
    return model_class(args)


def quantization_of(directory: Path) -> dict | None:
    """The ``quantization`` block of a package's config.json (mlx-lm's form), if any."""
    path = directory / "config.json"
    if not path.exists():
        return None
    block = json.loads(_read_regular(path)).get("quantization")
    return block if isinstance(block, dict) else None


def apply_quantization(model: Any, block: dict, weight_names: Any) -> None:
    """Swaps the layers a quantized package stores quantized for their quantized forms,
    as mlx-lm's load does: ``nn.quantize`` with the block's default setting, each layer's
    own entry, and otherwise whether the weights hold its scales."""
    import mlx.nn as nn

    names = set(weight_names)

    def predicate(path: str, module: Any) -> bool | dict:
        if path in block:
            return block[path]
        return hasattr(module, "to_quantized") and f"{path}.scales" in names

    nn.quantize(
        model,
        group_size=block["group_size"],
        bits=block["bits"],
        mode=block.get("mode", "affine"),
        class_predicate=predicate,
    )


def _config_model_args(directory: Path) -> dict:
    path = directory / "config.json"
    config = json.loads(_read_regular(path)) if path.exists() else {}
    model_args = config.get("model_args")
    return dict(model_args) if isinstance(model_args, dict) else {}


def load(directory: str | Path, model_args: dict | None = None) -> Any:
    """Builds the package's MLX model and loads its weights (strictly: every key must match).

    The model's outputs keep torch's structure: a tensor, or tuples, lists and dicts of them
    (a Hugging Face ModelOutput becomes a dict). A quantized package (config.json has a
    ``quantization`` block) gets its quantized layers first, through ``nn.quantize``.
    ``model_args`` overrides fields of config.json's (``{"num_hidden_layers": 2}``: the
    first two layers only); the package's weights that such a model has no place for are
    left unread.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten

    directory = Path(directory)
    override = {**_config_model_args(directory), **model_args} if model_args else None
    model = new_model(directory, override)
    weights: dict[str, Any] = {}
    for path in _weight_files(directory):
        weights.update(mx.load(str(path)))
    if override is not None:
        # mx.load maps lazily: the weights left out are never read.
        wanted = {name for name, _ in tree_flatten(model.parameters())}
        prefixes = {name.rsplit(".", 1)[0] for name in wanted}
        weights = {
            name: value
            for name, value in weights.items()
            if name in wanted or name.rsplit(".", 1)[0] in prefixes
        }
    block = quantization_of(directory)
    if block is not None:
        apply_quantization(model, block, weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as error:
        raise Torch2MLXError(f"[load] {directory}: weights do not fit model.py: {error}") from error
    model.eval()
    mx.eval(model.parameters())
    return model


_BUG = "this is a torch2mlx bug: please report it with the model that caused it"


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").partition(".")[0])
    return names


def check_package(
    directory: str | Path, quantization: dict | None = None, model_args: dict | None = None
) -> None:
    """Refuses a package that must not be written: model.py does not compile, imports more
    than mlx and the standard library, or its parameters differ from its weights.

    The parameter check builds the model, so it needs mlx; without it, the first two hold.
    ``quantization`` (else config.json's block) quantizes the model first, as load does;
    ``model_args`` (else config.json's) builds a model that reads ModelArgs.
    """
    directory = Path(directory)
    path = directory / "model.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        compile(tree, str(path), "exec")
    except SyntaxError as error:
        raise Torch2MLXError(
            f"[codegen] {path.name}:{error.lineno}: the generated code does not compile "
            f"({error.msg}); {_BUG}"
        ) from None
    foreign = sorted(_imported_modules(tree) - {"mlx"} - set(sys.stdlib_module_names))
    if foreign:
        raise Torch2MLXError(
            f"[codegen] {path.name} imports {', '.join(foreign)}, but a package may import only "
            f"mlx and the standard library; {_BUG}"
        )
    try:
        from mlx.utils import tree_flatten
    except ImportError:
        return
    model = new_model(directory, model_args)
    weights: dict[str, tuple[int, ...]] = {}
    for weight_file in _weight_files(directory):
        weights.update({t.name: t.shape for t in inspect_checkpoint(weight_file).tensors})
    block = quantization if quantization is not None else quantization_of(directory)
    if block is not None:
        apply_quantization(model, block, weights)
    parameters = {name: tuple(value.shape) for name, value in tree_flatten(model.parameters())}
    missing = sorted(set(parameters) - set(weights))
    unexpected = sorted(set(weights) - set(parameters))
    misshapen = sorted(n for n in set(parameters) & set(weights) if parameters[n] != weights[n])
    problems = [
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (
            ("parameters without a weight", missing),
            ("weights no parameter takes", unexpected),
            (
                "shapes that differ",
                [f"{n} {parameters[n]} vs {weights[n]}" for n in misshapen],
            ),
        )
        if names
    ]
    if problems:
        raise Torch2MLXError(
            f"[codegen] {path.name} does not fit its weights ({'; '.join(problems)}); {_BUG}"
        )
