"""Loading a converted package: ``torch2mlx.load(out_dir) -> mlx.nn.Module``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError

_PACKAGE_HINT = (
    "pass the folder that `torch2mlx convert -o` or torch2mlx.convert wrote "
    "(read checkpoints with torch2mlx.load_state_dict)"
)


def _weight_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    if single.exists():
        return [single]
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    raise Torch2MLXError(
        f"[load] {directory}: no model.safetensors or model.safetensors.index.json, so this is "
        f"not a complete package; {_PACKAGE_HINT}"
    )


def load_model_class(directory: Path) -> type:
    """Imports ``model.py`` of a package under a name unique to its contents."""
    source = directory / "model.py"
    if not source.exists():
        raise Torch2MLXError(
            f"[load] {directory}: no model.py, so this is not a package written by "
            f"torch2mlx convert; {_PACKAGE_HINT}"
        )
    digest = hashlib.sha1(source.read_bytes()).hexdigest()[:12]
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
