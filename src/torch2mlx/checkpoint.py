"""Reading checkpoints into numpy arrays and writing safetensors, through the C++ core."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

from torch2mlx import _core

# Raised for any file the core refuses; its message reads "[component] file: what, what to do".
Torch2MLXError = _core.CoreError


class CheckpointWarning(UserWarning):
    """A checkpoint held something that was not returned (an epoch counter, optimizer state...)."""


# The core's dtype table (tensor.h) as numpy dtypes; numpy has no bfloat16 of its own.
NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(ml_dtypes.bfloat16 if name == "bfloat16" else name)
    for name in _core.dtype_names()
}


# Top-level keys under which training scripts nest the model's weights, most specific first.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
# Top-level keys of training checkpoints that are not the model.
_TRAINING_KEYS = frozenset(
    {
        "optimizer",
        "optimizer_state_dict",
        "optim",
        "scheduler",
        "lr_scheduler",
        "scaler",
        "epoch",
        "step",
        "global_step",
        "iteration",
        "args",
        "config",
        "hyper_parameters",
        "loss",
        "best_metric",
        "rng_state",
    }
)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a header describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read from headers only."""

    path: str
    format: str
    files: list[str]
    tensors: list[TensorInfo]
    others: list[tuple[str, str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def total_elements(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "files": self.files,
            "metadata": self.metadata,
            "tensors": [
                {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "nbytes": t.nbytes}
                for t in self.tensors
            ],
            "others": [{"path": p, "type": k, "value": v} for p, k, v in self.others],
            "total_bytes": self.total_bytes,
            "total_elements": self.total_elements,
        }


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic GC while a header's objects are built (they hold no cycles)."""
    # A header may list a million tensors; every few hundred new objects would trigger a
    # collection that walks all of those built so far.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Lists the tensors of a checkpoint (file or Hugging Face folder) without reading them."""
    with _gc_paused():
        return _inspect_checkpoint(path)


def _inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    raw = _core.read_checkpoint(os.fspath(path), headers_only=True)
    tensors = [
        # math.prod, not np.prod: a header may list a million tensors, and np.prod costs
        # microseconds per call.
        TensorInfo(name, dtype, tuple(shape), math.prod(shape) * _itemsize(dtype))
        for name, dtype, shape, _strides, _offset, _storage, _storage_bytes in raw["tensors"]
    ]
    return CheckpointInfo(
        path=os.fspath(path),
        format=raw["format"],
        files=list(raw["files"]),
        tensors=tensors,
        others=[tuple(leaf) for leaf in raw["others"]],
        metadata=dict(raw["metadata"]),
    )


def load_state_dict(
    path: str | os.PathLike[str], *, key: str | None = None
) -> dict[str, np.ndarray]:
    """Reads a checkpoint into ``{name: numpy array}`` without running any code from it.

    Arrays view the memory-mapped file where the layout allows (no copy); tensors that
    shared a storage in torch share memory here. bfloat16 arrives as ``ml_dtypes.bfloat16``.

    ``key`` picks a subtree by its dotted prefix (``"state_dict"``, ``"model"``). By default a
    training checkpoint such as ``{"state_dict": ..., "epoch": 3, "optimizer": ...}`` is
    unwrapped to its model weights. Whatever is left out is reported in a CheckpointWarning.
    Pass ``key=""`` to get every tensor under its full dotted name.
    """
    raw = _core.read_checkpoint(os.fspath(path))
    storages = raw["storages"]
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, shape, strides, offset, storage, _storage_bytes in raw["tensors"]:
        arrays[name] = _view(storages[storage], dtype, shape, strides, offset)
    others = [(p, kind, value) for p, kind, value in raw["others"]]

    prefix = _choose_prefix(arrays, others) if key is None else key
    if not prefix:
        _report(path, others, [], "")
        return arrays
    selected = {n[len(prefix) + 1 :]: a for n, a in arrays.items() if n.startswith(prefix + ".")}
    if not selected:
        tops = sorted({n.split(".", 1)[0] for n in arrays})
        raise KeyError(f"{os.fspath(path)}: no tensors under '{prefix}'; top-level keys: {tops}")
    left_out = [n for n in arrays if not n.startswith(prefix + ".")]
    _report(path, others, left_out, prefix)
    return selected


def save_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Writes arrays (numpy, or anything ``np.asarray`` accepts) to a safetensors file.

    The file is written under a temporary name and renamed into place, so a failure never
    leaves a partial file at ``path``.
    """
    entries = []
    for name, value in tensors.items():
        array = np.asarray(value)
        if not array.flags.c_contiguous:
            _check_expansion(path, name, array)
            array = array.copy(order="C")  # not np.ascontiguousarray: it turns 0-d into 1-d
        if array.dtype.name not in NUMPY_DTYPES:
            raise Torch2MLXError(
                f"[safetensors] {os.fspath(path)}: tensor '{name}' has dtype {array.dtype}, "
                f"which safetensors output does not support; cast it to one of "
                f"{', '.join(NUMPY_DTYPES)}"
            )
        entries.append(
            (name, array.dtype.name, list(array.shape), array.reshape(-1).view(np.uint8))
        )
    _core.save_safetensors(os.fspath(path), entries, dict(metadata or {}))


# The core's kMaxExpandedBytes: an expanded or broadcast view is written out in full only
# up to this size, so that a tiny file cannot stand for a terabyte.
_MAX_EXPANDED_BYTES = 1 << 30


def _check_expansion(path: str | os.PathLike[str], name: str, array: np.ndarray) -> None:
    if array.nbytes <= _MAX_EXPANDED_BYTES or array.size == 0:
        return
    low, high = np.lib.array_utils.byte_bounds(array)
    if high - low < array.nbytes:
        raise Torch2MLXError(
            f"[tensor] {os.fspath(path)}: tensor '{name}': an expanded view of {high - low} "
            f"bytes in memory that would take {array.nbytes} bytes written out (shape "
            f"{list(array.shape)}, strides {list(array.strides)}), over the limit of "
            f"{_MAX_EXPANDED_BYTES} for expanded views; pass a contiguous copy if that is meant"
        )


def _itemsize(dtype: str) -> int:
    return NUMPY_DTYPES[dtype].itemsize


def _view(
    storage: np.ndarray | None, dtype: str, shape: list[int], strides: list[int], offset: int
) -> np.ndarray:
    np_dtype = NUMPY_DTYPES[dtype]
    if storage is None or 0 in shape:
        return np.empty(shape, dtype=np_dtype)
    item = np_dtype.itemsize
    return np.ndarray(
        tuple(shape),
        dtype=np_dtype,
        buffer=storage,
        offset=offset * item,
        strides=tuple(s * item for s in strides),
    )


def _choose_prefix(arrays: Mapping[str, np.ndarray], others: list[tuple[str, str, str]]) -> str:
    """The wrapper key of a training checkpoint, or "" when the file is a plain state dict."""
    tensor_tops = {name.split(".", 1)[0] for name in arrays}
    other_tops = {path.split(".", 1)[0] for path, _, _ in others}
    for wrapper in _WRAPPER_KEYS:
        if not any(name.startswith(wrapper + ".") for name in arrays):
            continue
        rest = (tensor_tops | other_tops) - {wrapper}
        # "state_dict" always wraps; "model" or "net" only when the rest is training state,
        # since Hugging Face models name their own submodules "model".
        unambiguous = wrapper in ("state_dict", "model_state_dict") and not rest & tensor_tops
        if unambiguous or (rest and rest <= (_TRAINING_KEYS | (other_tops - tensor_tops))):
            return wrapper
    return ""


def _report(
    path: str | os.PathLike[str],
    others: list[tuple[str, str, str]],
    left_out: list[str],
    prefix: str,
) -> None:
    if not others and not left_out:
        return
    parts = []
    if prefix:
        parts.append(f"returned the tensors under '{prefix}'")
    if left_out:
        tops = sorted({n.split(".", 1)[0] for n in left_out})
        parts.append(f"left out {len(left_out)} other tensors (under {', '.join(tops)})")
    if others:
        # Name every top-level key, so "epoch" is reported even after 8 optimizer settings.
        tops = sorted({p.split(".", 1)[0] or "(root)" for p, _, _ in others})
        shown = ", ".join(f"{p or '(root)'}={v}" for p, _, v in others[:8])
        more = f" and {len(others) - 8} more" if len(others) > 8 else ""
        parts.append(
            f"skipped {len(others)} non-tensor values (under {', '.join(tops)}): {shown}{more}"
        )
    warnings.warn(f"{os.fspath(path)}: {'; '.join(parts)}", CheckpointWarning, stacklevel=3)
