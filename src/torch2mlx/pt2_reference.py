"""torch's own run of a ``.pt2`` archive, built without letting torch deserialize its bytes.

``torch.export.load`` is not safe on a file a user hands us: it unpickles weights stored
with ``use_pickle`` and custom objects with ``weights_only=False``, retries a failed
``weights_only=True`` load of the state dict, constants and sample inputs without it, and
evaluates every symbolic size expression with ``sympy.sympify`` (Python's ``eval``). So the
reference model for verification is assembled here instead:

- the C++ reader has already validated the archive: every value name an identifier, every
  size expression plain sympy (no quotes but quoted names, no attributes, no calls but
  sympy's), every node an op of our registry (``torch_hazard`` says why not otherwise);
- the weights and constants come from that reader (raw bytes, or pickles through our
  restricted unpickler), and the sample inputs from our torch.save reader;
- torch gets only the program's JSON and those tensors, as dicts, through
  ``torch._export.serde.serialize.deserialize``, which then never calls ``torch.load``;
- while it runs, ``torch.load``, ``pickle.load(s)`` and torch's C++ unpickler raise, so a
  torch release that adds another unpickling path fails loudly instead of running code.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from torch2mlx import _core
from torch2mlx.checkpoint import Torch2MLXError, _view

# Members torch.export.save writes the example inputs to (pt2 layout, legacy layout).
_SAMPLE_INPUT_SUFFIXES = ("/data/sample_inputs/model.pt", "serialized_example_inputs.pt")
_MAX_SAMPLE_INPUT_BYTES = 1 << 30


class UnsafeLoadError(Torch2MLXError):
    """torch tried to unpickle bytes from a user's file."""


def _refuse(what: str):
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise UnsafeLoadError(
            f"[verify] torch tried to {what} bytes from the archive while building the "
            "reference model; torch2mlx never lets torch unpickle a user's file. Pass the "
            "live model to torch2mlx.convert instead of a .pt2, or convert with verify=False"
        )

    return refuse


@contextlib.contextmanager
def refuse_unpickling() -> Iterator[None]:
    """While active, torch.load, pickle.load/loads and torch's C++ unpickler raise."""
    import torch

    patches = [
        (torch, "load", _refuse("torch.load")),
        (torch.serialization, "load", _refuse("torch.load")),
        (pickle, "load", _refuse("unpickle")),
        (pickle, "loads", _refuse("unpickle")),
        (torch._C, "_pickle_load_obj", _refuse("unpickle (torch._C._pickle_load_obj)")),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _to_torch(array: np.ndarray) -> Any:
    import torch

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _tensors(raw: dict, key: str) -> dict[str, np.ndarray]:
    storages = raw["storages"]
    return {
        name: _view(storages[storage], dtype, shape, strides, offset)
        for name, dtype, shape, strides, offset, storage, _ in raw[key]
    }


def sample_inputs(archive: Path) -> tuple[tuple, dict] | None:
    """The archive's example inputs as (args, kwargs) of tensors, read by our own reader.

    None when the archive has none. Only flat tuples and dicts of tensors are rebuilt;
    anything else is refused with a message saying to pass example inputs.
    """
    with zipfile.ZipFile(archive) as zip_file:
        members = [
            info
            for info in zip_file.infolist()
            if info.filename.endswith(_SAMPLE_INPUT_SUFFIXES) and info.filename.count("/") <= 3
        ]
        if not members:
            return None
        member = members[0]
        if member.file_size > _MAX_SAMPLE_INPUT_BYTES:
            raise Torch2MLXError(
                f"[verify] {archive} ({member.filename}): the sample inputs claim "
                f"{member.file_size} bytes; pass example_inputs instead"
            )
        with tempfile.TemporaryDirectory(prefix="torch2mlx-inputs-") as scratch:
            path = Path(scratch) / "sample_inputs.pt"
            with zip_file.open(member) as source, open(path, "wb") as target:
                _copy_bounded(source, target, _MAX_SAMPLE_INPUT_BYTES)
            raw = _core.read_checkpoint(os.fspath(path))
            arrays = _tensors(raw, "tensors")
    where = f"{archive} ({member.filename})"
    # An empty kwargs dict (or args tuple) is reported as a leaf; anything else is a value.
    others = [leaf for leaf in raw["others"] if leaf[2] not in ("{}", "()", "[]")]
    if others:
        shown = ", ".join(f"{path}={value}" for path, _, value in others[:4])
        raise Torch2MLXError(
            f"[verify] {where}: the sample inputs hold values that are not tensors ({shown}); "
            "pass example_inputs (or --input-shape) to verify against them"
        )
    args: dict[int, Any] = {}
    kwargs: dict[str, Any] = {}
    for name, array in arrays.items():
        top, _, rest = name.partition(".")
        if top == "0" and rest.isdigit():
            args[int(rest)] = _to_torch(array)
        elif top == "1" and rest and "." not in rest:
            kwargs[rest] = _to_torch(array)
        else:
            raise Torch2MLXError(
                f"[verify] {where}: sample input '{name}' is nested; only flat tuples and dicts "
                "of tensors are read: pass example_inputs to verify"
            )
    if sorted(args) != list(range(len(args))):
        raise Torch2MLXError(f"[verify] {where}: the positional sample inputs have gaps")
    return tuple(args[index] for index in range(len(args))), kwargs


def _copy_bounded(source: io.BufferedIOBase, target: io.BufferedIOBase, limit: int) -> None:
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > limit:
            raise Torch2MLXError(f"[verify] the sample inputs inflate past {limit} bytes")
        target.write(chunk)


def reference_module(archive: Path) -> Any:
    """The archive's program as a torch module, built from JSON and our reader's tensors."""
    import torch
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    raw = _core.read_pt2(os.fspath(archive))
    if raw["torch_hazard"]:
        raise Torch2MLXError(
            f"[verify] {archive}: {raw['torch_hazard']}, so torch cannot be trusted to load "
            "it; convert with verify=False (--no-verify) or pass the live model"
        )
    tensors = _tensors(raw, "weights")
    kinds = {item["target"]: item for item in raw["inputs"]}
    state_dict: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    for name, array in tensors.items():
        tensor = _to_torch(array)
        spec = kinds.get(name, {"kind": "constant", "persistent": None})
        if spec["kind"] == "parameter":
            state_dict[name] = torch.nn.Parameter(tensor, requires_grad=False)
        elif spec["kind"] == "buffer" and spec["persistent"] is not False:
            state_dict[name] = tensor
        else:
            constants[name] = tensor
    artifact = SerializedArtifact(raw["program_json"], state_dict, constants, None)
    with refuse_unpickling():
        program = deserialize(artifact)
    return program.module()
