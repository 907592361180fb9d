"""Fixture builders shared by the test suite.

Nothing binary is committed: every checkpoint is written by torch (or safetensors, or by
hand from torch's own output) into a temporary directory while the tests run.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch

# Every dtype torch.save writes that torch2mlx reads, as (torch dtype, numpy dtype name).
DTYPES: list[tuple[torch.dtype, str]] = [
    (torch.float64, "float64"),
    (torch.float32, "float32"),
    (torch.float16, "float16"),
    (torch.bfloat16, "bfloat16"),
    (torch.int64, "int64"),
    (torch.int32, "int32"),
    (torch.int16, "int16"),
    (torch.int8, "int8"),
    (torch.uint8, "uint8"),
    (torch.bool, "bool"),
    (torch.uint16, "uint16"),
    (torch.uint32, "uint32"),
    (torch.uint64, "uint64"),
]
TORCH_TO_NUMPY = {
    t: np.dtype(ml_dtypes.bfloat16) if n == "bfloat16" else np.dtype(n) for t, n in DTYPES
}

# Same-size signed integer dtypes, to read any tensor's raw bits through torch.
_TORCH_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_NUMPY_UBITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def random_array(dtype: np.dtype | str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random bits of `dtype` (NaNs with payloads, infinities, -0.0 included); bools are 0/1."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A tensor of random bits in `dtype`, built through numpy so every bit pattern occurs."""
    array = random_array(TORCH_TO_NUMPY[dtype], shape, seed)
    if dtype == torch.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def tensor_bits(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's elements (in its logical layout) as unsigned integers of the same size."""
    size = tensor.element_size()
    return tensor.detach().view(_TORCH_BITS[size]).numpy().view(_NUMPY_UBITS[size])


def array_bits(array: np.ndarray) -> np.ndarray:
    """The array's elements as unsigned integers of the same size."""
    return array.view(_NUMPY_UBITS[array.dtype.itemsize])


def assert_same_tensor(array: np.ndarray, tensor: torch.Tensor, name: str = "") -> None:
    """dtype, shape, strides and every bit agree between a loaded array and torch's tensor."""
    assert isinstance(array, np.ndarray), name
    assert array.dtype == TORCH_TO_NUMPY[tensor.dtype], name
    assert array.shape == tuple(tensor.shape), name
    if tensor.numel() > 0:
        # An empty array views no memory, so only a non-empty one has meaningful strides.
        assert array.strides == tuple(s * tensor.element_size() for s in tensor.stride()), name
    expected = tensor_bits(tensor)
    got = array_bits(array)
    assert got.shape == expected.shape, name
    assert np.array_equal(got, expected), name


def flatten_torch(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """What torch.load returned, flattened to dotted keys the way torch2mlx names tensors."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items: Iterator[tuple[Any, Any]]
    if isinstance(obj, Mapping):
        items = iter(obj.items())
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {}
    flat: dict[str, torch.Tensor] = {}
    for key, value in items:
        flat.update(flatten_torch(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class SmallCNN(torch.nn.Module):
    """Conv + BatchNorm + Linear: parameters, buffers and an int64 0-d num_batches_tracked."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 4, 3, stride=2),
            torch.nn.BatchNorm2d(4),
        )
        self.head = torch.nn.Linear(4 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def trained_cnn() -> torch.nn.Module:
    """A SmallCNN after two training steps, so BatchNorm statistics are not their defaults."""
    torch.manual_seed(0)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
    return model


def torch_save(obj: Any, path: Path, **kwargs: Any) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def rewrite_zip(
    source: Path, destination: Path, change: Callable[[str, bytes], bytes | None]
) -> Path:
    """Copies a torch.save zip entry by entry (stored, not deflated), in the same order.

    `change(name, data)` returns the entry's new bytes, or None to drop the entry.
    """
    with (
        zipfile.ZipFile(source) as old,
        zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as new,
    ):
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(zipfile.ZipInfo(info.filename), data, compress_type=zipfile.ZIP_STORED)
    return destination


def replace_data_pkl(source: Path, destination: Path, program: bytes) -> Path:
    """A copy of a torch.save archive whose data.pkl is `program`; storages stay in place."""
    return rewrite_zip(
        source, destination, lambda name, data: program if name.endswith("/data.pkl") else data
    )


def reduce_ops(module: str, name: str, *args: Any) -> bytes:
    """Pickle opcodes that call module.name(*args): GLOBAL, MARK, the args, TUPLE, REDUCE.

    Strings are pushed as BINUNICODE, ints as BININT, lists as EMPTY_LIST + APPENDS.
    """

    def push(value: Any) -> bytes:
        if isinstance(value, str):
            encoded = value.encode()
            return b"X" + struct.pack("<I", len(encoded)) + encoded
        if isinstance(value, list):
            return b"](" + b"".join(push(item) for item in value) + b"e"
        if isinstance(value, int):
            return b"J" + struct.pack("<i", value)
        raise TypeError(value)

    return b"c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(map(push, args)) + b"tR"


def write_safetensors_by_hand(path: Path, header: dict[str, Any], data: bytes) -> Path:
    """A safetensors file from a header dict and a data buffer, no library involved."""
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ from the generated code instead of comparing with it",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "model_args: convert Hugging Face models with ModelArgs probing on, as users get it",
    )


@pytest.fixture(autouse=True)
def _model_args_where_tested(request, monkeypatch) -> None:
    """ModelArgs captures a Hugging Face model once more per config field, a second or two
    each. It runs, as it does for users, in the tests marked ``model_args``
    (tests/test_model_args.py, the float32 zoo and its golden files, part of the public
    zoo); the other tests convert as with ``model_args=False``, to keep the suite's time."""
    if request.node.get_closest_marker("model_args") is None:
        monkeypatch.setattr("torch2mlx.model_args.is_configured", lambda model: False)
