"""Loading a converted package: ``torch2mlx.load(out_dir) -> mlx.nn.Module``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError

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


def load(directory: str | Path) -> Any:
    """Builds the package's MLX model and loads its weights (strictly: every key must match).

    The model's outputs keep torch's structure: a tensor, or tuples, lists and dicts of them
    (a Hugging Face ModelOutput becomes a dict).
    """
    import mlx.core as mx

    directory = Path(directory)
    model = load_model_class(directory)()
    weights: dict[str, Any] = {}
    for path in _weight_files(directory):
        weights.update(mx.load(str(path)))
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as error:
        raise Torch2MLXError(f"[load] {directory}: weights do not fit model.py: {error}") from error
    model.eval()
    mx.eval(model.parameters())
    return model
